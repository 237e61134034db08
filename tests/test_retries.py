"""Short retries: only transient errors, exact jittered delays, the last error raised as is."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tenacity

from worker.sendcloud import errors
from worker.sendcloud.retries import RetryPolicy, call_with_retries


class Flaky:
    """Raises the queued errors one per call, then returns ``value``."""

    def __init__(self, *failures: BaseException, value: str = "done") -> None:
        self.failures = list(failures)
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


@pytest.fixture
def sleeps() -> list[float]:
    return []


def run(fn: Callable[[], str], sleeps: list[float], jitter: float = 0.5, **kw: float) -> str:
    return call_with_retries(fn, sleep=sleeps.append, jitter=lambda: jitter, **kw)  # type: ignore[arg-type]


def transient_errors() -> list[errors.SendCloudError]:
    return [
        errors.NetworkError("reset", endpoint="/smsapi/send"),
        errors.RequestTimeout("timed out", endpoint="/smsapi/send"),
        errors.ServerError("HTTP 502", endpoint="/smsapi/send", http_status=502),
        errors.ServerError("sever exception", code=501, endpoint="/smsapi/send"),
        errors.ThrottledError("limited", code=50000, endpoint="/apiv2/data/emailStatus"),
        errors.ThrottledError("536 Frequency limited", code=50001, endpoint="/apiv2/x"),
    ]


@pytest.mark.parametrize("failure", transient_errors(), ids=lambda e: f"{type(e).__name__}")
def test_a_transient_error_is_retried(failure: errors.SendCloudError, sleeps: list[float]) -> None:
    flaky = Flaky(failure)
    assert run(flaky, sleeps) == "done"
    assert flaky.calls == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    "failure",
    [
        errors.InvalidRequestError("bad phone", code=412, endpoint="/smsapi/send"),
        errors.DuplicateRequestError("duplicate request", code=400, endpoint="/smsapi/send"),
        errors.AuthError("auth", code=40005, endpoint="/apiv2/x"),
        errors.ClockSkewError("clock", code=461, endpoint="/smsapi/send"),
        errors.PhoneMinuteLimitError("minute", code=496, endpoint="/smsapi/send"),
        errors.QuotaError("balance", code=499, endpoint="/smsapi/send"),
        ValueError("not a SendCloud error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_raised_at_once_unchanged(
    failure: Exception, sleeps: list[float]
) -> None:
    flaky = Flaky(failure)
    with pytest.raises(type(failure)) as info:
        run(flaky, sleeps)
    assert info.value is failure
    assert flaky.calls == 1 and sleeps == []


def test_the_last_error_is_raised_when_attempts_run_out(sleeps: list[float]) -> None:
    first, second, last = transient_errors()[:3]
    flaky = Flaky(first, second, last)
    with pytest.raises(errors.ServerError) as info:
        run(flaky, sleeps)
    assert info.value is last
    assert not isinstance(info.value, tenacity.RetryError)
    assert flaky.calls == 3 and len(sleeps) == 2


def test_delays_grow_exponentially_with_equal_jitter(sleeps: list[float]) -> None:
    flaky = Flaky(*[errors.NetworkError("x") for _ in range(6)])
    with pytest.raises(errors.NetworkError):
        run(flaky, sleeps, jitter=0.5, attempts=6, base_delay=0.2, max_delay=1.0)
    # step = min(max, base * 2**(n-1)); delay = step/2 + step/2 * jitter
    assert sleeps == pytest.approx([0.15, 0.3, 0.6, 0.75, 0.75])


@pytest.mark.parametrize(("jitter", "delay"), [(0.0, 0.1), (0.999, 0.1999)])
def test_jitter_spans_half_to_all_of_the_step(
    jitter: float, delay: float, sleeps: list[float]
) -> None:
    run(Flaky(errors.NetworkError("x")), sleeps, jitter=jitter)
    assert sleeps == pytest.approx([delay])


def test_one_attempt_means_no_retry(sleeps: list[float]) -> None:
    flaky = Flaky(errors.NetworkError("x"))
    with pytest.raises(errors.NetworkError):
        run(flaky, sleeps, attempts=1)
    assert flaky.calls == 1 and sleeps == []


def test_policy_object_gives_the_same_schedule() -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=0.1, max_delay=0.3, sleep=slept.append,
                         jitter=lambda: 1.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.3])
    flaky = Flaky(errors.RequestTimeout("t"), errors.RequestTimeout("t"))
    assert policy.call(flaky) == "done"
    assert slept == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"base_delay": -1.0}, {"base_delay": 3.0, "max_delay": 2.0}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_default_jitter_stays_within_bounds(sleeps: list[float]) -> None:
    flaky = Flaky(*[errors.NetworkError("x") for _ in range(2)])
    call_with_retries(flaky, sleep=sleeps.append)
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4


@pytest.mark.parametrize(("jitter", "delay"), [(-3.0, 0.1), (7.5, 0.2)])
def test_a_jitter_outside_zero_to_one_is_clamped(
    jitter: float, delay: float, sleeps: list[float]
) -> None:
    run(Flaky(errors.NetworkError("x")), sleeps, jitter=jitter)
    assert sleeps == pytest.approx([delay])
