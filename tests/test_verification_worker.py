"""Verifications through real workers and the simulator: the code that arrives is the one that
checks, a worker without the secret sends nothing, and a pumping bot is cut off."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator

import pytest

from producers import VerificationRefused, Verifier, VerifySettings
from tests.jobs_harness import Stack, stack_factory
from worker.logs import configure_logging

SECRET = "test-verify-secret-0123456789"


@pytest.fixture
def make(redis_url: str) -> Iterator[Callable[..., Stack]]:
    with stack_factory(redis_url) as factory:
        yield factory


def delivered(stack: Stack, phone: str) -> list[tuple[str, str]]:
    """(kind, code) of what the simulator delivered to ``phone``."""
    return [(e.kind, e.text) for e in stack.sim.ledger.entries() if e.phone == phone]


def test_the_code_a_phone_receives_is_the_one_that_checks(
    make: Callable[..., Stack], capfd: pytest.CaptureFixture[str]
) -> None:
    stack = make(verify_secret=SECRET, log_level="DEBUG")
    configure_logging(stack.settings)
    verifier = Verifier(stack.producer, VerifySettings(secret=SECRET, sign_id=1, cooldown=0))
    first = verifier.start("13800000071")
    voice = verifier.start("13800000071", channel="voice")  # the SMS is late: call instead

    with stack.running():
        records = stack.wait_for_records([first.send_key, voice.send_key])
    assert {r["key"]: r["outcome"] for r in records} == {
        first.send_key: "sent", voice.send_key: "sent"}
    # The two jobs run concurrently: either may reach the simulator first.
    received = dict(delivered(stack, "13800000071"))
    assert set(received) == {"code", "voice"}
    code = received["code"]
    assert received["voice"] == code
    assert verifier.check("13800000071", code).approved
    # Neither the records nor a log line (at debug level) carries the code or the secret.
    values = [str(v) for r in records for v in r.values()]
    values += [str(v) for r in records for p in r["recipients"] for v in p.values()]
    assert code not in values
    logs = capfd.readouterr()
    assert "verify-" in logs.out + logs.err  # the jobs did log, under their keys
    assert SECRET not in logs.out + logs.err
    assert f"={code}" not in logs.out + logs.err and f"'{code}'" not in logs.out + logs.err
    assert stack.redis.hget("sendcloud:verify:counts", "sms:sent") == b"1"
    assert stack.redis.hget("sendcloud:verify:counts", "voice:sent") == b"1"


def test_a_worker_without_the_secret_sends_nothing(make: Callable[..., Stack]) -> None:
    stack = make(job_max_attempts=2)  # no verify_secret
    verifier = Verifier(stack.producer, VerifySettings(secret=SECRET, sign_id=1))
    started = verifier.start("13800000072")

    with stack.running():
        [record] = stack.wait_for_records([started.send_key])
    assert record["outcome"] == "failed"  # nothing went out: the app may start again
    assert "SENDCLOUD_VERIFY_SECRET" in record["message"]
    assert delivered(stack, "13800000072") == []


def test_a_pumping_bot_is_cut_off_and_a_real_user_is_not(make: Callable[..., Stack]) -> None:
    """10,000 requests for 1,000 numbers of one range from 50 client ids, with the default
    limits: the range's hourly cap (50) bounds what SendCloud is asked to send. Meanwhile
    users on other ranges start and approve verifications, and none of them is refused."""
    stack = make(verify_secret=SECRET)
    settings = VerifySettings(secret=SECRET, sign_id=1)
    verifier = Verifier(stack.producer, settings)
    rng = random.Random(7)
    bot_sent = refused = 0
    users = [f"1{3 + i % 7}{i:09d}" for i in range(1, 21)]  # 20 people on 20 other ranges
    for request in range(10_000):
        phone = f"1391234{rng.randrange(1000):04d}"
        try:
            verifier.start(phone, client_id=f"bot-{rng.randrange(50)}")
            bot_sent += 1
        except VerificationRefused:
            refused += 1
        if request % 500 == 499:
            user = users[request // 500]
            verifier.start(user, client_id=f"browser-{user}")  # raises if refused
    assert 0 < bot_sent <= settings.range_per_hour
    assert bot_sent + refused == 10_000

    with stack.running(threads=8):
        stack.wait_until(lambda: len(stack.sim.ledger.entries()) == bot_sent + len(users), 60)
    entries = stack.sim.ledger.entries()
    assert sum(e.phone.startswith("1391234") for e in entries) == bot_sent
    for user in users:
        [(_, code)] = delivered(stack, user)
        assert verifier.check(user, code).approved
    assert dataclasses.asdict(settings)["range_per_hour"] == 50
