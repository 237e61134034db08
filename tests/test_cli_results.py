from __future__ import annotations

import json
import threading

import pytest
import redis

from producers.contract import MEMBERS_RESULTS_STREAM, SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash
from producers.producer import Producer
from producers.results import JOB_STATUS_FIELDS
from worker.cli import main
from worker.cli.results import tail
from worker.jobs.idempotency import JobLedger
from worker.jobs.results import Ending, flatten, recipient, sms_record

T0 = 1732269600.25  # 2024-11-22T10:00:00.250000+00:00


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def add_results(client: redis.Redis, stream: str, count: int) -> list[str]:
    """Entries as the workers write them (flat fields, lists as JSON text)."""
    ids = []
    for i in range(count):
        record = sms_record(
            {"key": f"k-{i}"}, Ending("sms", "sent", 200, "ok", 1, T0),
            recipients=[recipient("13800000000", "sent", sms_id="a$13800000000",
                                  status_code=200)],
            sms_ids=["a$13800000000"],
        )
        ids.append(client.xadd(stream, flatten(record)).decode())  # type: ignore[arg-type]
    return ids


def test_tail_prints_the_last_entries_oldest_first(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = add_results(redis_client, SMS_RESULTS_STREAM, 5)

    assert main(["results", "tail", "--count", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ids[3:]
    assert "  kind=sms outcome=sent key=k-4 attempts=1 " in lines[1]
    assert lines[1].endswith(' sms_ids=["a$13800000000"] status_code=200')


def test_tail_json_and_named_streams(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    [entry_id] = add_results(redis_client, MEMBERS_RESULTS_STREAM, 1)

    assert main(["results", "tail", "--stream", "members", "--json"]) == 0

    record = json.loads(capsys.readouterr().out)
    assert record == {
        "id": entry_id, "key": "k-0", "kind": "sms", "outcome": "sent", "status_code": 200,
        "message": "ok", "sms_ids": ["a$13800000000"],
        "recipients": [{"phone": "13800000000", "outcome": "sent", "sms_id": "a$13800000000",
                        "status_code": 200, "message": ""}],
        "attempts": 1, "finished_at": "2024-11-22T10:00:00.250000+00:00",
    }  # fmt: skip


def test_follow_prints_entries_added_later(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_results(redis_client, SMS_RESULTS_STREAM, 3)
    later = threading.Timer(0.2, add_results, (redis_client, SMS_RESULTS_STREAM, 1))
    later.start()

    printed = tail(redis_client, SMS_RESULTS_STREAM, count=0, follow=True, max_batches=1)

    later.join()
    assert printed == 1
    assert capsys.readouterr().out.count("\n") == 1


def test_group_reads_and_acknowledges_only_with_ack(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_results(redis_client, SMS_RESULTS_STREAM, 3)
    base = ["results", "tail", "--group", "ops", "--consumer", "me", "--count", "2"]

    assert main(base) == 0
    assert redis_client.xpending(SMS_RESULTS_STREAM, "ops")["pending"] == 2
    assert main([*base, "--ack"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[4] for line in lines] == ["key=k-0", "key=k-1", "key=k-2"]
    assert redis_client.xpending(SMS_RESULTS_STREAM, "ops")["pending"] == 2  # k-2 acked


def test_usage_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "tail", "--ack"]) == 2
    assert capsys.readouterr().err == "sendcloud-jobs: error: --ack: needs --group\n"


# -- results get ---------------------------------------------------------------------------

#: Fields of the idempotency record that ``results get`` must never print.
INTERNAL = ("owner", "fence", "lease_until", "hash", "job", "due_at", "created_at", "request_id",
            "attempt_started_at", "reconcile_waiting_since", "recreated_at")


def get_output(capsys: pytest.CaptureFixture[str], key: str) -> tuple[str, dict[str, object]]:
    assert main(["results", "get", key]) == 0
    out = capsys.readouterr().out
    return out, json.loads(out)


def assert_no_internal_field(status: dict[str, object]) -> None:
    assert list(status) == list(JOB_STATUS_FIELDS)
    assert not set(INTERNAL) & set(status)


def test_get_of_a_queued_code_prints_no_internal_field_and_never_the_code(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(redis_url=redis_url)
    try:
        key = producer.send_code("13812345678", "908172", sign_id=1, idempotency_key="c-1")
    finally:
        producer.close()

    out, status = get_output(capsys, key)

    assert "908172" not in out  # the record's job copy holds it in clear
    assert_no_internal_field(status)
    assert status["key"] == "c-1" and status["kind"] == "code" and status["state"] == "queued"
    assert status["attempts"] == 0 and status["takeovers"] == 0
    assert isinstance(status["enqueued_at"], str) and status["enqueued_at"].endswith("+00:00")
    assert status["enqueued_at"] == status["updated_at"]
    assert (status["first_attempt_at"], status["finished_at"], status["result"]) == (
        None, None, None)
    assert (status["last_error"], status["send_request_id"]) == ("", "")


def test_get_of_a_retried_then_finished_job_has_typed_fields_and_the_documented_result(
    redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    IdempotencyStore(redis_client).reserve("s-1", payload_hash({"a": 1}), "sms")
    ledger = JobLedger(redis_client, lease=60, ttl=86400, maxlen=1000, namespace="ns")
    first = ledger.claim("s-1", "m1", T0, kind="sms")
    assert ledger.release("s-1", first.token, T0 + 1, uncertain=True, error="no reply",
                          delay=30)

    _, retrying = get_output(capsys, "s-1")
    assert_no_internal_field(retrying)
    assert (retrying["state"], retrying["attempts"], retrying["last_error"]) == (
        "queued", 1, "no reply")
    assert retrying["retry_due_at"] == "2024-11-22T10:00:31.250000+00:00"
    assert retrying["uncertain_since"] == "2024-11-22T10:00:00.250000+00:00"
    assert retrying["send_request_id"] == "ns:s-1"

    second = ledger.claim("s-1", "m2", T0 + 40, kind="sms")
    record = sms_record({"key": "s-1"}, Ending("sms", "duplicate", 400, "duplicate request", 2,
                                               T0 + 41),
                        recipients=[recipient("13800000000", "duplicate", status_code=400)])
    assert ledger.finish("s-1", second.token, T0 + 41, outcome="duplicate",
                         stream=SMS_RESULTS_STREAM, record=record) is not None

    _, final = get_output(capsys, "s-1")
    assert_no_internal_field(final)
    assert (final["state"], final["attempts"], final["retry_due_at"]) == ("done", 2, None)
    assert final["first_attempt_at"] == "2024-11-22T10:00:00.250000+00:00"
    assert final["finished_at"] == "2024-11-22T10:00:41.250000+00:00"
    producer = Producer(redis_url=redis_url)
    try:
        assert final["result"] == producer.get_result("s-1") == record
        assert producer.get_record("s-1") == final
    finally:
        producer.close()


def test_get_of_an_unknown_key_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "get", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "sendcloud-jobs: no job with key 'nope' (unknown or expired)\n"
