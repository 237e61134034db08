"""A call budget shared by every process that talks to one SendCloud endpoint.

SendCloud limits emailStatus to 3000 calls per minute per account and answers 50000 beyond it.
Every worker and poller draws from one limiter kept in Redis, so the budget holds however many
processes run.

The algorithm is GCRA (the "generic cell rate algorithm"): one key holds the theoretical
arrival time (TAT) of the next call. A call is allowed when ``now >= TAT - tolerance``, and each
allowed call pushes the TAT forward by one emission interval. The tolerance lets a burst of
``burst`` calls through after idle time; the interval is ``60 / (per_minute - burst + 1)`` so
that the burst comes out of the budget: in any 60-second window at most ``per_minute`` calls
pass (2500 with the defaults, inside SendCloud's 3000). The interval is stretched by
``INTERVAL_SLACK`` so that a window measured by a caller's clock, a few milliseconds off the
grants, still holds no more than the budget. The check and the update run in one Lua
script, so concurrent callers never both take the last slot, and the clock is the Redis
server's, so workers on machines with skewed clocks still share one timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import structlog

from producers.contract import KEY_PREFIX

log = structlog.get_logger(__name__)

EMAIL_STATUS_LIMIT_KEY = f"{KEY_PREFIX}ratelimit:email_status"
INTERVAL_SLACK = 1.001

# Returns "0" when the call may go ahead, else the seconds to wait (as a string: Lua numbers
# returned to Redis are truncated to integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return string.format('%.6f', wait) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', new_tat),
           'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""

# Pushes the TAT so that nobody may call for ARGV[1] seconds (never pulls it back).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_tat = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_tat then
  tat = until_tat
  redis.call('SET', KEYS[1], string.format('%.6f', tat),
             'PX', math.ceil((tat - now) * 1000) + 1000)
end
return string.format('%.6f', tat - tonumber(ARGV[2]) - now)
"""


def default_burst(per_minute: int) -> int:
    """About one second's worth of calls, at least 1 and at most 50 (never over the budget)."""
    return max(1, min(50, per_minute // 60, per_minute))


class RateLimiter:
    """``per_minute`` calls per minute across every process sharing ``key``."""

    def __init__(
        self,
        redis_client: redis.Redis,
        per_minute: int,
        *,
        key: str = EMAIL_STATUS_LIMIT_KEY,
        burst: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute: must be at least 1, got {per_minute}")
        burst = default_burst(per_minute) if burst is None else burst
        if not 1 <= burst <= per_minute:
            raise ValueError(f"burst: must be from 1 to per_minute ({per_minute}), got {burst}")
        self.per_minute = per_minute
        self.burst = burst
        self.key = key
        self._interval = 60.0 / (per_minute - burst + 1) * INTERVAL_SLACK
        self._tolerance = self._interval * (burst - 1)
        self._sleep = sleep
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._penalize = redis_client.register_script(_PENALIZE)

    def try_acquire(self) -> float:
        """Take one call if the budget allows: 0.0, else the seconds to wait before retrying."""
        reply = self._acquire(keys=[self.key], args=[repr(self._interval), repr(self._tolerance)])
        return float(reply)

    def acquire(self) -> float:
        """Block until one call is allowed; returns the seconds spent waiting."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait <= 0.0:
                return waited
            self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> float:
        """Hold every caller back for ``seconds`` (after SendCloud said we went too fast).

        Returns how long the limiter now holds callers back, which may be longer when another
        process already pushed it further.
        """
        reply = self._penalize(keys=[self.key], args=[repr(seconds), repr(self._tolerance)])
        log.warning("rate_limit_penalized", key=self.key, seconds=round(seconds, 3))
        return float(reply)
