"""Verifications: start, check, cancel, resend, and every guardrail at its edge, on real Redis."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from producers import Producer, VerificationRefused, Verifier, VerifySettings
from producers.contract import CODES_QUEUE, SMS_RESULTS_STREAM
from producers.errors import SettingError
from producers.results import decode_fields
from producers.verification import BREAKER_KEY, COUNTS_KEY, unseal

SECRET = "test-verify-secret-0123456789"
# No limit in the way unless a test sets one.
OPEN = VerifySettings(
    secret=SECRET, cooldown=0, phone_per_hour=1000, phone_per_day=1000, client_per_hour=1000,
    client_per_day=1000, range_per_hour=1000, range_per_day=1000, global_per_minute=100_000,
    approval_min_started=1_000_000, sign_id=1,
)  # fmt: skip


@pytest.fixture
def make_verifier(redis_client: redis.Redis) -> Iterator[Callable[..., Verifier]]:
    producers: list[Producer] = []

    def make(**overrides: Any) -> Verifier:
        producer = Producer(broker=StubBroker(), redis=redis_client)
        producers.append(producer)
        return Verifier(producer, dataclasses.replace(OPEN, **overrides))

    yield make
    for producer in producers:
        producer.close()


def redis_now(verifier: Verifier) -> float:
    seconds, micros = verifier.redis.time()
    return float(seconds) + micros / 1e6


def assert_retry_after(refused: VerificationRefused, window: float, elapsed: float) -> None:
    """``window`` less the time since the limiting send, which lies within ``elapsed``
    (Redis time from before that send to after the refusal): no guess at the machine's speed.
    retry_after carries three decimals."""
    assert window - elapsed - 0.001 <= refused.retry_after <= window


def sent(verifier: Verifier) -> list[dict[str, Any]]:
    """The payloads of the send jobs enqueued so far, in order."""
    broker = verifier.producer.broker
    assert isinstance(broker, StubBroker)
    return [json.loads(m.decode())["args"][0] for m in broker.queues[CODES_QUEUE].queue]


def code_of(payload: dict[str, Any]) -> str:
    return unseal(SECRET.encode(), payload["verification_id"], payload["sealed_code"])


def test_a_code_is_sent_sealed_and_approved_once(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier(cooldown=60)
    started = verifier.start("13800000001")

    [payload] = sent(verifier)
    code = code_of(payload)
    assert "code" not in payload and payload["sealed_code"] != code and len(code) == 6
    assert payload["key"] == started.send_key == f"verify-{started.id}-1"
    assert (started.expires_at - started.resend_at).total_seconds() == pytest.approx(540, abs=1)
    wrong = "000000" if code != "000000" else "111111"
    assert verifier.check("13800000001", wrong).status == "wrong_code"
    result = verifier.check("13800000001", code)
    assert (result.status, result.attempts_left, result.verification_id) == (
        "approved", 4, started.id)
    assert verifier.check("13800000001", code).status == "not_found"  # single use


def test_five_wrong_codes_lock_the_verification(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier()
    before = redis_now(verifier)
    verifier.start("13800000002")
    code = code_of(sent(verifier)[0])
    wrong = "0000" if not code.startswith("0000") else "1111"

    lefts = [verifier.check("13800000002", wrong).attempts_left for _ in range(4)]
    assert lefts == [4, 3, 2, 1]
    assert verifier.check("13800000002", wrong).status == "too_many_attempts"
    assert verifier.check("13800000002", code).status == "too_many_attempts"
    with pytest.raises(VerificationRefused) as refused:
        verifier.start("13800000002")  # no fresh guesses until it expires
    assert refused.value.rule == "locked"
    assert_retry_after(refused.value, 600, redis_now(verifier) - before)


def test_an_expired_code_is_refused(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier(ttl=1)
    verifier.start("13800000003")
    code = code_of(sent(verifier)[0])
    time.sleep(1.1)
    assert verifier.check("13800000003", code).status == "expired"


def test_cancel_and_unknown(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier()
    assert verifier.check("13800000004", "123456").status == "not_found"
    started = verifier.start("13800000004")
    code = code_of(sent(verifier)[0])
    assert verifier.cancel("13800000004", verification_id="other") is False
    assert verifier.check("13800000004", code, verification_id="other").status == "not_found"
    assert verifier.cancel("13800000004", verification_id=started.id) is True
    assert verifier.check("13800000004", code).status == "not_found"


def test_a_resend_and_a_voice_fallback_send_the_same_code(
    make_verifier: Callable[..., Verifier],
) -> None:
    verifier = make_verifier()
    first = verifier.start("13800000005")
    again = verifier.start("13800000005")
    voice = verifier.start("13800000005", channel="voice")

    payloads = sent(verifier)
    assert (again.id, voice.id, again.resent, voice.resent) == (first.id, first.id, True, True)
    assert [p["key"] for p in payloads] == [f"verify-{first.id}-{n}" for n in (1, 2, 3)]
    assert {code_of(p) for p in payloads} == {code_of(payloads[0])}
    assert "sign_id" not in payloads[2]  # the voice job: sendVoice takes no signature
    broker = verifier.producer.broker
    assert isinstance(broker, StubBroker)
    actors = [json.loads(m.decode())["actor_name"] for m in broker.queues[CODES_QUEUE].queue]
    assert actors == ["sendcloud_send_code", "sendcloud_send_code", "sendcloud_send_voice_code"]
    assert voice.expires_at == first.expires_at  # a resend buys no time
    assert verifier.check("13800000005", code_of(payloads[0])).status == "approved"


def test_concurrent_checks_approve_exactly_once(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier()
    verifier.start("13800000006")
    code = code_of(sent(verifier)[0])
    barrier = threading.Barrier(16)
    results: list[str] = []

    def check() -> None:
        barrier.wait()
        results.append(verifier.check("13800000006", code).status)

    threads = [threading.Thread(target=check) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["approved"] + ["not_found"] * 15


def refusal(verifier: Verifier, phone: str, **kwargs: Any) -> VerificationRefused:
    with pytest.raises(VerificationRefused) as info:
        verifier.start(phone, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("limits", "phones", "clients", "rule", "window"),
    [
        ({"cooldown": 60}, ["13800000007"] * 2, [None, None], "cooldown", 60),
        ({"phone_per_hour": 3}, ["13800000008"] * 4, [None] * 4, "phone_hour", 3600),
        ({"phone_per_day": 2}, ["13800000009"] * 3, [None] * 3, "phone_day", 86400),
        ({"client_per_hour": 3}, [f"1380000001{i}" for i in range(4)], ["ip-1"] * 4,
         "client_hour", 3600),
        ({"client_per_day": 2}, [f"1380000002{i}" for i in range(3)], ["ip-2"] * 3,
         "client_day", 86400),
        ({"range_per_hour": 3}, [f"1390000000{i}" for i in range(4)], [f"c{i}" for i in range(4)],
         "range_hour", 3600),
        ({"range_per_day": 2}, [f"1370000000{i}" for i in range(3)], [None] * 3,
         "range_day", 86400),
    ],
)  # fmt: skip
def test_each_limit_allows_exactly_its_count(
    make_verifier: Callable[..., Verifier],
    limits: dict[str, int],
    phones: list[str],
    clients: list[str | None],
    rule: str,
    window: int,
) -> None:
    verifier = make_verifier(**limits)
    before = redis_now(verifier)
    for phone, client in zip(phones[:-1], clients[:-1], strict=True):
        verifier.start(phone, client_id=client)
    refused = refusal(verifier, phones[-1], client_id=clients[-1])
    assert refused.rule == rule
    assert_retry_after(refused, window, redis_now(verifier) - before)
    assert len(sent(verifier)) == len(phones) - 1  # nothing enqueued for the refused one
    counts = verifier.redis.hgetall(COUNTS_KEY)
    assert counts[f"refused:sms:{rule}".encode()] == b"1"


def test_a_refused_request_costs_nothing(make_verifier: Callable[..., Verifier]) -> None:
    verifier = make_verifier(cooldown=60, client_per_hour=2)
    verifier.start("13800000030", client_id="ip-9")
    for _ in range(5):  # the cooldown refuses these; the client's count stays at one
        refusal(verifier, "13800000030", client_id="ip-9")
    verifier.start("13800000031", client_id="ip-9")
    assert refusal(verifier, "13800000032", client_id="ip-9").rule == "client_hour"


def breaker_alerts(client: redis.Redis) -> list[dict[str, Any]]:
    entries = [decode_fields(raw) for _, raw in client.xrange(SMS_RESULTS_STREAM)]
    return [e for e in entries if e.get("outcome") == "verifications_refused"]


def test_the_breaker_opens_on_the_send_rate_with_one_alert(
    make_verifier: Callable[..., Verifier], redis_client: redis.Redis
) -> None:
    verifier = make_verifier(global_per_minute=5, breaker_seconds=30)
    before = redis_now(verifier)
    for i in range(5):
        verifier.start(f"1{i + 3}800000040")  # five ranges, five phones
    refused = [refusal(verifier, f"1{i + 3}800000041") for i in range(3)]
    assert [r.rule for r in refused] == ["breaker"] * 3
    assert_retry_after(refused[-1], 30, redis_now(verifier) - before)
    [alert] = breaker_alerts(redis_client)
    assert alert["reason"] == "rate" and alert["kind"] == "alert"
    assert len(sent(verifier)) == 5


def test_the_breaker_opens_on_a_low_approval_share_and_closes_again(
    make_verifier: Callable[..., Verifier], redis_client: redis.Redis
) -> None:
    verifier = make_verifier(approval_min_started=4, approval_floor=0.5, approval_grace=0,
                             breaker_seconds=1)  # fmt: skip
    phones = [f"1{i + 3}900000050" for i in range(4)]
    for phone in phones:
        verifier.start(phone)
    assert refusal(verifier, "13900000051").rule == "breaker"  # 0 of 4 approved
    [alert] = breaker_alerts(redis_client)
    assert alert["reason"] == "approval"
    assert alert["message"] == "only 0 of 4 verifications were approved"
    # The users type their codes; once the breaker's time is over, the share is fine again.
    for payload in sent(verifier):
        assert verifier.check(payload["phone"], code_of(payload)).approved
    time.sleep(1.1)
    verifier.start("13900000051")
    assert redis_client.exists(BREAKER_KEY) == 0


def test_nothing_secret_rests_in_redis(
    make_verifier: Callable[..., Verifier], redis_client: redis.Redis
) -> None:
    verifier = make_verifier()
    verifier.start("13800000060", client_id="203.0.113.7")
    verifier.start("13800000060", channel="voice")
    code = code_of(sent(verifier)[0])
    verifier.check("13800000060", "0" * 6 if code != "0" * 6 else "1" * 6)

    values: list[str] = []
    for key in redis_client.scan_iter():
        kind = redis_client.type(key).decode()
        if kind == "hash":
            values += [v.decode() for v in redis_client.hvals(key)]
        elif kind == "zset":
            values += [m.decode() for m in redis_client.zrange(key, 0, -1)]
        elif kind == "stream":
            values += [v.decode() for _, f in redis_client.xrange(key) for v in f.values()]
        values.append(key.decode())
    for payload in sent(verifier):
        values += [str(v) for v in payload.values()]
    assert code not in values and SECRET not in values
    assert not any("203.0.113.7" in v for v in values)  # the client id is hashed
    assert not any(SECRET in v for v in values)


def test_the_secret_is_required() -> None:
    with pytest.raises(SettingError, match="SENDCLOUD_VERIFY_SECRET: is required"):
        VerifySettings().require_secret()
    with pytest.raises(SettingError, match="SENDCLOUD_VERIFY_COOLDOWN: must be a number"):
        VerifySettings.from_env({"SENDCLOUD_VERIFY_COOLDOWN": "soon"})
    settings = VerifySettings.from_env({"SENDCLOUD_VERIFY_PHONE_PER_DAY": "7",
                                        "SENDCLOUD_VERIFY_APPROVAL_FLOOR": "0.35"})
    assert (settings.phone_per_day, settings.approval_floor) == (7, 0.35)


_phones = iter(range(10**6))


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.booleans(), max_size=9))
def test_the_attempt_counter_follows_its_model(
    make_verifier: Callable[..., Verifier], guesses: list[bool]
) -> None:
    """True: the right code; False: a wrong one. Model: approved once, on the first right
    guess before the fifth wrong one; then not_found; after five wrong, too_many_attempts."""
    verifier = make_verifier()
    phone = f"1360{next(_phones):07d}"
    verifier.start(phone)
    code = code_of(sent(verifier)[-1])
    wrong_code = "1" * 6 if code != "1" * 6 else "2" * 6
    wrong, approved = 0, False
    for right in guesses:
        result = verifier.check(phone, code if right else wrong_code)
        if approved:
            expected: tuple[str, int] = ("not_found", 0)
        elif wrong >= 5:
            expected = ("too_many_attempts", 0)
        elif right:
            approved, expected = True, ("approved", 5 - wrong)
        else:
            wrong += 1
            expected = ("too_many_attempts", 0) if wrong == 5 else ("wrong_code", 5 - wrong)
        assert (result.status, result.attempts_left) == expected


def test_the_metrics_read_the_counters_and_the_approval_share(
    make_verifier: Callable[..., Verifier], redis_client: redis.Redis
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from worker.metrics import VerificationCollector

    verifier = make_verifier(cooldown=60, approval_grace=0)
    for phone in ("13800000090", "13800000091"):
        verifier.start(phone)
    refusal(verifier, "13800000090")
    first = sent(verifier)[0]
    verifier.check(first["phone"], code_of(first))
    registry = CollectorRegistry()
    registry.register(VerificationCollector(redis_client, verifier.settings))

    text = generate_latest(registry).decode()
    assert 'sendcloud_verifications_total{channel="sms",event="started"} 2.0' in text
    assert 'sendcloud_verifications_total{channel="sms",event="approved"} 1.0' in text
    assert 'sendcloud_verifications_refused_total{channel="sms",rule="cooldown"} 1.0' in text
    assert "sendcloud_verification_approval_ratio 0.5" in text
    assert "sendcloud_verification_breaker_open 0.0" in text
