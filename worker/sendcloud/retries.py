"""Short retries of transient SendCloud failures, inside one job attempt.

Only errors whose class says ``transient`` (no reply, HTTP 5xx, statusCode 501, the 50000/50001
frequency limits, "failed to ..." with no cause) are retried, a few times within about a second
or two. Everything else, and the last transient error once attempts run out, is raised unchanged
(never tenacity's ``RetryError``) so the job layer sees the real class and code.

The delay is exponential with "equal jitter": half the step is fixed, half is random, so
workers that failed together do not retry together, yet no retry comes back instantly. The
random source is a parameter so tests get exact delays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
import tenacity

from worker.sendcloud.errors import SendCloudError

T = TypeVar("T")

log = structlog.get_logger("worker.sendcloud.retries")


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, SendCloudError) and exc.transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    #: Returns a float in [0, 1); random.random unless a test needs exact delays.
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts: must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("base_delay, max_delay: need 0 <= base_delay <= max_delay")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        step = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        # Clamped, so a jitter source outside [0, 1] cannot push a delay past max_delay.
        return step / 2 + step / 2 * min(max(self.jitter(), 0.0), 1.0)

    def call(self, fn: Callable[[], T]) -> T:
        # The first try runs bare: building tenacity's machinery for every call cost a worker
        # about 56 us a job (py-spy), and almost every call succeeds at once.
        try:
            return fn()
        except Exception as exc:
            if self.attempts == 1 or not is_transient(exc):
                raise
            _log_retry(1, self.delay(1), exc, self.sleep)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts - 1),
            wait=lambda state: self.delay(state.attempt_number + 1),
            retry=tenacity.retry_if_exception(is_transient),
            sleep=self.sleep,
            before_sleep=_log_tenacity_retry,
            reraise=True,
        )
        return retrying(fn)


def _log_tenacity_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    _log_retry(state.attempt_number + 1, state.upcoming_sleep, exc, None)


def _log_retry(attempt: int, delay: float, exc: BaseException | None,
               sleep: Callable[[float], None] | None) -> None:
    log.info(
        "sendcloud.retry",
        attempt=attempt,
        delay_s=round(delay, 3),
        error=type(exc).__name__,
        status_code=getattr(exc, "code", None),
        endpoint=getattr(exc, "endpoint", None),
    )
    if sleep is not None:
        sleep(delay)


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 3,
    base_delay: float = 0.2,
    max_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """``fn()``, retried on transient SendCloud errors; the last error is raised as is."""
    policy = RetryPolicy(attempts, base_delay, max_delay, sleep=sleep, jitter=jitter)
    return policy.call(fn)
