"""How long a job waits before its next attempt, by the reason it has to wait.

* A transient failure that outlasted the in-call retries: exponential backoff with equal jitter,
  ``base * 2**(attempt-1)`` capped at ``SENDCLOUD_RETRY_MAX_DELAY``, half fixed and half random
  (so workers that failed together do not come back together, yet none comes back at once).
* 496 (too many messages to one number within a minute): at least 60 s, plus up to 30 s jitter.
* 498 (too many in a day): SendCloud's daily counters follow China's calendar day, so the job
  waits until the next midnight in Asia/Shanghai, plus up to 10 min jitter so deferred jobs do
  not all arrive at 00:00:00.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from worker.settings import Settings

#: China has used UTC+8 without daylight saving since 1991: a fixed offset is exact and needs
#: no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
MINUTE_LIMIT_DELAY = 60.0
MINUTE_LIMIT_JITTER = 30.0
DAILY_LIMIT_JITTER = 600.0

Jitter = Callable[[], float]


def backoff(attempts: int, settings: Settings, jitter: Jitter) -> float:
    """Seconds before the attempt after ``attempts`` failed ones (1-based)."""
    exponent = min(max(attempts - 1, 0), 32)
    step = min(settings.retry_max_delay, settings.retry_base_delay * 2**exponent)
    return step / 2 + step / 2 * jitter()


def minute_limit_delay(jitter: Jitter) -> float:
    return MINUTE_LIMIT_DELAY + MINUTE_LIMIT_JITTER * jitter()


def next_shanghai_midnight(now: float) -> float:
    """Epoch seconds of the next 00:00 in Asia/Shanghai strictly after ``now``."""
    local = datetime.fromtimestamp(now, SHANGHAI)
    midnight = datetime(local.year, local.month, local.day, tzinfo=SHANGHAI) + timedelta(days=1)
    return midnight.timestamp()


def daily_limit_delay(now: float, jitter: Jitter) -> float:
    return next_shanghai_midnight(now) - now + DAILY_LIMIT_JITTER * jitter()
