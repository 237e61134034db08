"""The shared GCRA limiter against a real Redis."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from worker.email_status.ratelimit import (
    EMAIL_STATUS_LIMIT_KEY,
    INTERVAL_SLACK,
    RateLimiter,
    default_burst,
)

LimiterFactory = Callable[..., RateLimiter]


@pytest.fixture
def make_limiter(redis_url: str) -> Iterator[LimiterFactory]:
    clients: list[redis.Redis] = []

    def make(per_minute: int, **kwargs: Any) -> RateLimiter:
        # A client of its own, as each worker process would have.
        clients.append(redis.Redis.from_url(redis_url))
        return RateLimiter(clients[-1], per_minute, **kwargs)

    yield make
    for client in clients:
        client.close()


def test_a_burst_passes_then_callers_must_wait_one_interval(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(5, burst=5)
    waits = [limiter.try_acquire() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    # The burst used the whole minute's budget: the next slot is a minute after it began.
    assert all(55.0 < w <= 60.0 * INTERVAL_SLACK for w in waits[5:])


def test_the_burst_comes_out_of_the_budget(make_limiter: LimiterFactory) -> None:
    # 12 a minute with a burst of 3: 3 at once, then one every 6 s (10 a minute), so no
    # 60-second window holds more than 12 calls.
    limiter = make_limiter(12, burst=3)
    waits = [limiter.try_acquire() for _ in range(4)]
    assert waits[:3] == [0.0] * 3 and 5.9 < waits[3] <= 6.0 * INTERVAL_SLACK


def test_concurrent_callers_in_many_clients_never_overdraw_the_budget(
    make_limiter: LimiterFactory,
) -> None:
    limiters = [make_limiter(10, burst=10) for _ in range(8)]
    granted: list[int] = []
    lock = threading.Lock()

    def hammer(limiter: RateLimiter) -> None:
        mine = sum(1 for _ in range(50) if limiter.try_acquire() == 0.0)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 10


def test_acquire_sleeps_until_the_next_slot(make_limiter: LimiterFactory) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    limiter = make_limiter(6000, burst=1, sleep=sleep)  # one call per 10 ms
    waited = [limiter.acquire() for _ in range(5)]
    assert waited[0] == 0.0
    assert slept, "back-to-back calls at 10 ms spacing must wait"
    assert all(0.0 < s <= 0.01 for s in slept)
    assert sum(waited) == pytest.approx(sum(slept))


def test_penalize_holds_every_caller_back_and_never_pulls_back(
    make_limiter: LimiterFactory,
) -> None:
    first, second = make_limiter(2500), make_limiter(2500)
    assert first.try_acquire() == 0.0
    held = first.penalize(30.0)
    assert 29.0 < held <= 30.0
    assert 29.0 < second.try_acquire() <= 30.0
    # A shorter penalty from another process leaves the longer one in place.
    assert 29.0 < second.penalize(1.0) <= 30.0


def test_the_key_expires_once_idle(make_limiter: LimiterFactory, redis_client: redis.Redis) -> None:
    limiter = make_limiter(60, burst=1)
    limiter.try_acquire()
    ttl_ms = redis_client.pttl(EMAIL_STATUS_LIMIT_KEY)
    # Set to one (slackened) interval past now plus 1 s, rounded up; it only falls from there.
    assert 0 < ttl_ms <= math.ceil(60 / 60 * INTERVAL_SLACK * 1000) + 1000


def test_default_burst_is_about_one_second_of_budget() -> None:
    assert default_burst(2500) == 41
    assert default_burst(30) == 1
    assert default_burst(100_000) == 50


@pytest.mark.parametrize(
    ("per_minute", "burst", "field"),
    [(0, None, "per_minute"), (10, 0, "burst"), (10, 11, "burst")],
)
def test_bad_budgets_are_refused_by_name(
    redis_client: redis.Redis, per_minute: int, burst: int | None, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be "):
        RateLimiter(redis_client, per_minute, burst=burst)
