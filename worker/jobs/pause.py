"""Pausing SMS sending for an account whose balance ran out (statusCode 499).

A 499 means every further send fails until someone tops the account up, so the first job to
see one sets ``sendcloud:pause:<smsUser>`` with a TTL (``SENDCLOUD_PAUSE_SECONDS``) and, in the
same Lua script, appends one alert record (``kind=alert``, ``outcome=paused``) to the SMS result
stream: one alert per pause, however many workers hit the 499 at once.

While the flag exists, SMS and code jobs are put back with a delay of the time left, without
calling SendCloud and without using up an attempt: messages wait, they are not failed. When the
TTL ends the next job tries again; if the balance is still empty, that 499 starts a new pause and
a new alert. An operator who topped up can lift the pause at once with :meth:`AccountPause.lift`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from producers.contract import KEY_PREFIX
from worker.jobs.results import alert_record, flatten

PAUSE_PREFIX = f"{KEY_PREFIX}pause:"

# KEYS: pause flag, stream. ARGV: ttl ms, value, maxlen, then field/value pairs.
_TRIP_LUA = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then
    return 0
end
local fields = {}
for i = 4, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
return 1
"""


def pause_key(account: str) -> str:
    return PAUSE_PREFIX + account


class AccountPause:
    def __init__(self, client: redis.Redis, account: str, *, seconds: float, stream: str,
                 maxlen: int) -> None:
        self.client = client
        self.account = account
        self.key = pause_key(account)
        self.seconds = seconds
        self.stream = stream
        self.maxlen = maxlen
        self._trip = client.register_script(_TRIP_LUA)

    def remaining(self) -> float:
        """Seconds the pause still lasts; 0 when sending is allowed."""
        ms = int(self.client.pttl(self.key))
        return ms / 1000 if ms > 0 else 0.0

    def trip(self, *, status_code: int | None, message: str, now: float) -> bool:
        """Start a pause unless one is running; True when this call started it (and alerted)."""
        record: Mapping[str, Any] = alert_record(
            self.key, account=self.account, status_code=status_code, message=message,
            seconds=self.seconds, now=now,
        )
        args: list[str | int] = [int(self.seconds * 1000), repr(now), self.maxlen]
        for name, value in flatten(record).items():
            args += [name, value]
        return bool(self._trip(keys=[self.key, self.stream], args=args))

    def lift(self) -> bool:
        return bool(self.client.delete(self.key))
