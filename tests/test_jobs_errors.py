"""What each SendCloud answer does to a job, one delivery at a time, with an injected clock.

The runner is called the way the actor calls it; ``dramatiq.Retry`` is what Dramatiq would
receive, so the chosen delay is checked without waiting for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest

from producers.contract import SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, request_id, stack_factory
from worker.jobs import JOB_TYPES
from worker.jobs.policy import next_shanghai_midnight
from worker.jobs.runner import JobType, PermanentJobFailure

# 2024-11-22 10:00 UTC = 18:00 in Shanghai.
T0 = datetime(2024, 11, 22, 10, 0, tzinfo=UTC).timestamp()
JOBS = {job.actor_name: job for job in JOB_TYPES}
SMS, CODE, VOICE, MEMBERS = (JOBS[n] for n in (
    "sendcloud_send_sms", "sendcloud_send_code", "sendcloud_send_voice_code", "sendcloud_members"))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(name="stack_factory")
def stack_factory_fixture(redis_url: str, clock: Clock) -> Iterator[Any]:
    with stack_factory(redis_url, clock=clock) as make:
        yield make


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    stack: Stack = stack_factory()
    return stack


def code(key: str, phone: str, *, expires_at: float | None = None) -> dict[str, Any]:
    return {"key": key, "phone": phone, "code": "123456", "sign_id": 1, "sign_name": None,
            "msg_type": 0, "enqueued_at": T0, "expires_at": expires_at or T0 + 600}


def sms(key: str, phones: list[str]) -> dict[str, Any]:
    return {"key": key, "template_id": TEMPLATE_ID, "phones": phones, "vars": None,
            "msg_type": 0, "tag": None, "enqueued_at": T0}


def run(stack: Stack, job: JobType, payload: dict[str, Any], message_id: str = "m1") -> Any:
    # As the producer does before enqueueing; a record missing at claim time means it expired.
    IdempotencyStore(stack.redis).reserve(payload["key"], payload_hash(payload), job.kind(payload))
    return stack.runner.run(job, payload, message_id)


def retry_delay(stack: Stack, job: JobType, payload: dict[str, Any], message_id: str = "m1"
                ) -> int:
    with pytest.raises(dramatiq.Retry) as caught:
        run(stack, job, payload, message_id)
    assert caught.value.delay is not None
    return caught.value.delay


def only_record(stack: Stack, key: str) -> dict[str, Any]:
    records = [r for r in stack.job_records() if r["key"] == key]
    assert len(records) == 1, records
    return records[0]


def test_success_writes_sent_with_sms_ids_and_one_ledger_entry(stack: Stack) -> None:
    assert run(stack, CODE, code("c1", mainland(1))) == "sent"
    record = only_record(stack, "c1")
    assert record["kind"] == "code" and record["status_code"] == 200
    assert record["attempts"] == 1
    assert record["finished_at"] == "2024-11-22T10:00:00+00:00"
    [recipient] = record["recipients"]
    assert recipient["phone"] == mainland(1) and recipient["outcome"] == "sent"
    assert recipient["sms_id"] == record["sms_ids"][0]
    sent_ids = [e.send_request_id for e in stack.sim.ledger.entries()]
    assert sent_ids == [request_id(stack.redis, "c1")]
    # Another delivery of a finished job calls nothing and writes nothing.
    assert run(stack, CODE, code("c1", mainland(1)), "m2") is None
    assert len(stack.sim.ledger.entries()) == 1 and len(stack.job_records()) == 1


def test_voice_code_is_sent_once(stack: Stack) -> None:
    payload = {"key": "v1", "phone": mainland(2), "code": "4321", "enqueued_at": T0,
               "expires_at": T0 + 600}
    assert run(stack, VOICE, payload) == "sent"
    assert [e.kind for e in stack.sim.ledger.entries()] == ["voice"]
    assert only_record(stack, "v1")["kind"] == "voice_code"


def test_partial_success_records_each_recipient_and_resends_nothing(stack: Stack) -> None:
    phones = [mainland(1), "12345", mainland(2)]
    assert run(stack, SMS, sms("s1", phones)) == "partial"
    record = only_record(stack, "s1")
    assert record["status_code"] == 311 and len(record["sms_ids"]) == 2
    by_phone = {r["phone"]: r for r in record["recipients"]}
    assert by_phone["12345"]["outcome"] == "failed"
    assert by_phone["12345"]["message"] == "手机号格式错误"
    for phone in (mainland(1), mainland(2)):
        assert by_phone[phone]["outcome"] == "sent"
        assert by_phone[phone]["sms_id"].endswith(phone)
    assert run(stack, SMS, sms("s1", phones), "m2") is None
    assert sorted(e.phone for e in stack.sim.ledger.entries()) == [mainland(1), mainland(2)]


def test_all_recipients_refused_fails_with_a_reason_per_phone(stack: Stack) -> None:
    with pytest.raises(PermanentJobFailure) as caught:
        run(stack, SMS, sms("s1", ["12345", "67890"]))
    assert caught.value.status_code == 312
    record = only_record(stack, "s1")
    assert record["outcome"] == "failed" and record["status_code"] == 312
    assert [r["message"] for r in record["recipients"]] == ["手机号格式错误"] * 2
    assert stack.redis.hget("sendcloud:idem:s1", "state") == b"failed"


def test_permanent_error_fails_at_once(stack: Stack) -> None:
    payload = sms("s1", [mainland(1)]) | {"template_id": 999999}
    with pytest.raises(PermanentJobFailure):
        run(stack, SMS, payload)
    record = only_record(stack, "s1")
    assert (record["outcome"], record["status_code"], record["attempts"]) == ("failed", 431, 1)
    assert record["message"]
    assert stack.sim.ledger.entries() == []


def test_minute_limit_retries_after_at_least_a_minute(stack: Stack) -> None:
    stack.sim.set_phone_limits(per_minute=1, per_day=None)
    run(stack, CODE, code("c1", mainland(1)))
    delay = retry_delay(stack, CODE, code("c2", mainland(1)))
    assert 60_000 <= delay <= 90_000
    stored = stack.runner.ledger.get("c2")
    assert stored["state"] == "queued" and "496" in stored["last_error"]
    assert len(stack.sim.ledger.entries()) == 1


def test_daily_limit_defers_to_the_next_shanghai_midnight(stack: Stack) -> None:
    stack.sim.set_phone_limits(per_minute=None, per_day=1)
    run(stack, CODE, code("c1", mainland(1), expires_at=T0 + 86400 * 2))
    delay = retry_delay(stack, CODE, code("c2", mainland(1), expires_at=T0 + 86400 * 2))
    midnight = next_shanghai_midnight(T0)
    assert datetime.fromtimestamp(midnight, UTC) == datetime(2024, 11, 22, 16, 0, tzinfo=UTC)
    assert (midnight - T0) * 1000 <= delay <= (midnight - T0 + 600) * 1000


def test_daily_limit_fails_when_configured_to(stack_factory: Any) -> None:
    stack = stack_factory(daily_limit_action="fail")
    stack.sim.set_phone_limits(per_minute=None, per_day=1)
    run(stack, CODE, code("c1", mainland(1)))
    with pytest.raises(PermanentJobFailure):
        run(stack, CODE, code("c2", mainland(1)))
    assert only_record(stack, "c2")["status_code"] == 498


def test_a_code_that_would_retry_after_its_expiry_ends_expired(stack: Stack) -> None:
    stack.sim.set_phone_limits(per_minute=1, per_day=None)
    run(stack, CODE, code("c1", mainland(1)))
    assert run(stack, CODE, code("c2", mainland(1), expires_at=T0 + 30)) == "expired"
    record = only_record(stack, "c2")
    assert record["status_code"] == 496 and record["recipients"][0]["outcome"] == "expired"


def test_a_code_past_its_expiry_is_never_sent(stack: Stack, clock: Clock) -> None:
    clock.now = T0 + 601
    assert run(stack, CODE, code("c1", mainland(1), expires_at=T0 + 600)) == "expired"
    assert stack.sim.ledger.entries() == []
    assert stack.redis.hget("sendcloud:idem:c1", "state") == b"expired"


def test_no_balance_pauses_the_account_with_one_alert_and_keeps_the_jobs(
    stack: Stack, clock: Clock
) -> None:
    stack.sim.set_balance(0)
    first = retry_delay(stack, CODE, code("c1", mainland(1)))
    # Sending works again at SendCloud, yet the pause holds: later jobs must not even call.
    stack.sim.set_balance(None)
    later = [retry_delay(stack, CODE, code(f"c{i}", mainland(i))) for i in (2, 3)]
    later.append(retry_delay(stack, SMS, sms("s1", [mainland(4)])))
    assert stack.sim.ledger.entries() == []
    pause = stack.settings.pause_seconds
    for delay in [first, *later]:
        assert (pause - 1) * 1000 <= delay <= (pause + 1) * 1000
    alerts = [r for r in stack.records() if r["kind"] == "alert"]
    assert len(alerts) == 1
    assert alerts[0]["outcome"] == "paused" and alerts[0]["status_code"] == 499
    assert alerts[0]["key"] == "sendcloud:pause:sim_sms_user"
    assert stack.job_records() == []
    # The pause costs no attempts.
    assert stack.runner.ledger.get("c1")["attempts"] == "0"
    assert stack.runner.ledger.get("c2")["state"] == "queued"

    stack.runner.pause.lift()
    assert run(stack, CODE, code("c1", mainland(1)), "m2") == "sent"
    assert only_record(stack, "c1")["attempts"] == 1


def test_a_duplicate_reply_with_nothing_possibly_sent_needs_review(stack: Stack) -> None:
    # SendCloud knows the id, but no attempt of this job can have been accepted: something
    # else used it, so "already sent" would be a guess.
    key = "c1"
    stack.runtime.client().send_code(mainland(1), "123456", sign_id=1,
                                     send_request_id=request_id(stack.redis, key))
    assert run(stack, CODE, code(key, mainland(1))) == "needs_review"
    record = only_record(stack, key)
    assert record["status_code"] == 400 and "duplicate request" in record["message"]
    assert len(stack.sim.ledger.entries()) == 1


def test_a_late_copy_of_an_expired_job_within_the_hour_resends_and_reads_duplicate(
    stack: Stack, clock: Clock
) -> None:
    key = "c1"
    payload = code(key, mainland(1), expires_at=T0 + 3600)
    assert run(stack, CODE, payload) == "sent"
    stack.redis.delete(f"sendcloud:idem:{key}")  # the record's TTL ran out
    clock.now = T0 + 600
    assert stack.runner.run(CODE, payload, "m2") == "duplicate"
    assert len(stack.sim.ledger.entries()) == 1


def test_a_late_copy_of_an_expired_job_after_the_hour_is_never_sent(
    stack: Stack, clock: Clock
) -> None:
    key = "s1"
    payload = sms(key, [mainland(1)])
    assert run(stack, SMS, payload) == "sent"
    stack.redis.delete(f"sendcloud:idem:{key}")
    clock.now = T0 + 2 * 3600  # SendCloud no longer remembers the id
    assert stack.runner.run(SMS, payload, "m2") == "needs_review"
    assert len(stack.sim.ledger.entries()) == 1


def test_a_replayed_success_reads_as_sent(stack: Stack) -> None:
    stack.sim.duplicate_mode = "replay"
    stack.runtime.client().send_code(mainland(1), "123456", sign_id=1,
                                     send_request_id=request_id(stack.redis, "c1"))
    assert run(stack, CODE, code("c1", mainland(1))) == "sent"
    assert len(stack.sim.ledger.entries()) == 1


def test_transient_errors_retry_then_fail_without_dead_lettering(stack_factory: Any) -> None:
    stack = stack_factory(job_max_attempts=2)
    stack.sim.faults.set("/smsapi/sendCode", server_error_rate=1.0)
    delay = retry_delay(stack, CODE, code("c1", mainland(1)))
    assert 0 < delay <= stack.settings.retry_max_delay * 1000 + 1
    assert run(stack, CODE, code("c1", mainland(1))) == "failed"  # no PermanentJobFailure
    record = only_record(stack, "c1")
    assert record["status_code"] == 501 and "gave up after 2 attempts" in record["message"]


def crash_mid_call(stack: Stack, key: str, at: float) -> None:
    """An attempt claimed the job at ``at`` and its worker died before finishing."""
    stack.runner.ledger.claim(key, "m1", at, kind="code")


def test_redelivery_within_the_hour_resends_and_sendcloud_deduplicates(
    stack: Stack, clock: Clock
) -> None:
    crash_mid_call(stack, "c1", T0)
    # The crashed attempt did reach SendCloud.
    stack.runtime.client().send_code(mainland(1), "123456", sign_id=1,
                                     send_request_id=request_id(stack.redis, "c1"))
    clock.now = T0 + 120
    assert run(stack, CODE, code("c1", mainland(1), expires_at=T0 + 3600)) == "duplicate"
    assert len(stack.sim.ledger.entries()) == 1
    assert stack.runner.ledger.get("c1")["takeovers"] == "1"


def test_redelivery_beyond_the_hour_is_never_sent_and_needs_review(
    stack: Stack, clock: Clock
) -> None:
    crash_mid_call(stack, "s1", T0)
    clock.now = T0 + 3600 - stack.settings.dedup_safety_margin + 1
    assert run(stack, SMS, sms("s1", [mainland(1)])) == "needs_review"
    assert stack.sim.ledger.entries() == []
    record = only_record(stack, "s1")
    assert record["recipients"][0]["outcome"] == "needs_review"
    assert "1-hour" in record["message"]
    assert stack.redis.hget("sendcloud:idem:s1", "state") == b"needs_review"


def test_no_reply_retries_are_kept_inside_the_dedup_window(
    stack_factory: Any, clock: Clock
) -> None:
    stack = stack_factory(retry_base_delay=900.0, retry_max_delay=900.0)
    stack.sim.faults.set("/smsapi/send", reset_rate=1.0)
    crash_mid_call(stack, "s1", T0)
    clock.now = T0 + 3200
    delay = retry_delay(stack, SMS, sms("s1", [mainland(1)]))
    left = T0 + 3600 - stack.settings.dedup_safety_margin - clock.now
    # Well inside what is left, so the retry still arrives within the window.
    assert delay == pytest.approx((left - min(60.0, left / 2)) * 1000, abs=1)
    assert float(stack.runner.ledger.get("s1")["uncertain_since"]) == T0


def test_a_no_reply_attempt_starts_the_window(stack_factory: Any, clock: Clock) -> None:
    stack = stack_factory(retry_base_delay=900.0, retry_max_delay=900.0)
    stack.sim.faults.set("/smsapi/sendCode", drop_after_accept_rate=1.0)
    retry_delay(stack, CODE, code("c1", mainland(1), expires_at=T0 + 7200))
    assert float(stack.runner.ledger.get("c1")["uncertain_since"]) == T0
    stack.sim.faults.clear()
    clock.now = T0 + 900
    assert run(stack, CODE, code("c1", mainland(1), expires_at=T0 + 7200)) == "duplicate"
    assert len(stack.sim.ledger.entries()) == 1


def test_a_deferral_that_cannot_fit_in_the_window_needs_review(
    stack: Stack, clock: Clock
) -> None:
    stack.sim.set_phone_limits(per_minute=1, per_day=None)
    run(stack, SMS, sms("s0", [mainland(1)]))
    crash_mid_call(stack, "s1", T0)
    clock.now = T0 + 3600 - stack.settings.dedup_safety_margin - 30  # 30 s left < 60 s
    assert run(stack, SMS, sms("s1", [mainland(1)])) == "needs_review"
    assert only_record(stack, "s1")["status_code"] == 496


def test_members_add_update_delete(stack: Stack) -> None:
    client = stack.runtime.client()
    client.add_address_list("news@lists.example.com", "News")
    base = {"address": "news@lists.example.com", "new_members": None, "names": None,
            "vars": None, "enqueued_at": T0}
    add = base | {"key": "a1", "op": "add", "members": ["a@example.com", "b@example.com"],
                  "names": ["A", "B"]}
    assert run(stack, MEMBERS, add) == "done"
    update = base | {"key": "u1", "op": "update", "members": ["a@example.com"],
                     "new_members": ["c@example.com"]}
    assert run(stack, MEMBERS, update) == "done"
    delete = base | {"key": "d1", "op": "delete", "members": ["b@example.com"]}
    assert run(stack, MEMBERS, delete) == "done"
    records = {r["key"]: r for r in stack.job_records("sendcloud:results:members")}
    assert records["a1"]["kind"] == "members_add" and records["a1"]["count"] == 2
    assert records["u1"]["count"] == 1 and records["d1"]["count"] == 1
    members = stack.sim.address_lists["news@lists.example.com"].members
    assert [m.member for m in members] == ["c@example.com"]
    assert stack.redis.xlen(SMS_RESULTS_STREAM) == 0


def test_giving_up_after_lost_replies_needs_review_not_failed(stack_factory: Any) -> None:
    stack = stack_factory(job_max_attempts=2)
    stack.sim.faults.set("/smsapi/sendCode", drop_after_accept_rate=1.0)
    retry_delay(stack, CODE, code("c1", mainland(1)))
    assert run(stack, CODE, code("c1", mainland(1))) == "needs_review"
    record = only_record(stack, "c1")
    assert "may have been accepted" in record["message"]
    assert stack.redis.hget("sendcloud:idem:c1", "state") == b"needs_review"
    # SendCloud took the first request; the job must not invite a resend.
    assert len(stack.sim.ledger.entries()) == 1


def test_giving_up_after_definite_errors_is_failed(stack_factory: Any) -> None:
    stack = stack_factory(job_max_attempts=2)
    stack.sim.faults.set("/smsapi/sendCode", server_error_rate=1.0)
    retry_delay(stack, CODE, code("c2", mainland(2)))
    assert run(stack, CODE, code("c2", mainland(2))) == "failed"
    assert stack.sim.ledger.entries() == []


def test_a_lost_reply_is_remembered_across_the_tries_of_one_attempt(stack_factory: Any) -> None:
    # Try 1 reaches SendCloud but its reply is lost; tries 2 and 3 meet a gateway's HTTP 502.
    stack = stack_factory(job_max_attempts=1, call_attempts=3)
    stack.sim.faults.set("/smsapi/sendCode", drop_after_accept_rate=1.0)
    stack.runner.sleep = lambda _s: stack.sim.faults.set("/smsapi/sendCode",
                                                         gateway_error_rate=1.0)
    assert run(stack, CODE, code("c1", mainland(1))) == "needs_review"
    assert len(stack.sim.ledger.entries()) == 1


def test_a_retry_kept_inside_the_window_does_send_when_it_arrives(
    stack_factory: Any, clock: Clock
) -> None:
    stack = stack_factory(retry_base_delay=900.0, retry_max_delay=900.0)
    stack.sim.faults.set("/smsapi/sendCode", reset_rate=1.0)
    crash_mid_call(stack, "c1", T0)
    clock.now = T0 + 3200
    payload = code("c1", mainland(1), expires_at=T0 + 7200)
    delay = retry_delay(stack, CODE, payload)
    stack.sim.faults.clear()
    clock.now += delay / 1000 + 1  # Dramatiq delivers the retry a little late
    assert run(stack, CODE, payload) == "sent"
    assert len(stack.sim.ledger.entries()) == 1


def test_an_invalid_request_after_a_lost_reply_still_fails(stack_factory: Any) -> None:
    # The identical earlier try was just as invalid, so nothing can have gone out.
    stack = stack_factory(call_attempts=2)
    stack.sim.faults.set("/smsapi/send", drop_after_accept_rate=1.0)
    stack.runner.sleep = lambda _s: stack.sim.faults.clear()
    payload = sms("s1", [mainland(1)]) | {"template_id": 999_999}
    with pytest.raises(PermanentJobFailure):
        run(stack, SMS, payload)
    assert only_record(stack, "s1")["outcome"] == "failed"


def test_an_auth_error_after_a_lost_reply_needs_review(stack_factory: Any) -> None:
    stack = stack_factory(call_attempts=2)
    stack.sim.faults.set("/smsapi/sendCode", drop_after_accept_rate=1.0)

    def keys_rotated(_s: float) -> None:
        stack.sim.faults.clear()
        stack.sim.sms.sms_user = "renamed"  # our smsUser is unknown from now on: 471

    stack.runner.sleep = keys_rotated
    assert run(stack, CODE, code("c1", mainland(1))) == "needs_review"
    assert len(stack.sim.ledger.entries()) == 1
