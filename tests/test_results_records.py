"""Per-recipient outcomes built from SendCloud's replies, and one shape per record kind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
import redis

import producers
from producers import set_default_producer, start_campaign
from producers.campaign import campaign_key
from producers.campaign_report import campaign_status
from producers.chunk_results import compact
from producers.contract import MEMBERS_RESULTS_STREAM, SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash
from producers.results import (
    CAMPAIGN_FINISHED_FIELDS,
    ISO_TIME_LUA,
    RECORD_FIELDS,
    ResultReader,
    decode_fields,
    iso_utc,
    record_type,
    shape_record,
)
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, stack_factory
from worker.jobs import JOB_TYPES
from worker.jobs.results import (
    Ending,
    alert_record,
    flatten,
    members_record,
    recipient,
    recipients_of_result,
    sms_record,
)
from worker.jobs.runner import JobType, PermanentJobFailure
from worker.sendcloud.models import FailedRecipient, SmsResult


def reply(sms_ids: list[str], failed: list[FailedRecipient] | None = None) -> SmsResult:
    failed = failed or []
    return SmsResult(status_code=311 if failed else 200, message="ok", sms_ids=sms_ids,
                     success_count=len(sms_ids), failed_count=len(failed), failed=failed)


def test_sms_ids_are_matched_by_their_phone_tail_in_any_order() -> None:
    phones = ["13800000001", "13800000002", "+447700900123"]
    ids = ["1_2_3$447700900123", "1_2_4$13800000002", "1_2_5$13800000001"]
    out = recipients_of_result(phones, reply(ids))
    assert [(r["phone"], r["sms_id"]) for r in out] == [
        ("13800000001", "1_2_5$13800000001"),
        ("13800000002", "1_2_4$13800000002"),
        ("+447700900123", "1_2_3$447700900123"),
    ]


def test_a_tail_with_a_country_prefix_still_matches() -> None:
    out = recipients_of_result(["13800000001"], reply(["9_9$8613800000001"]))
    assert out[0]["sms_id"] == "9_9$8613800000001"


def test_refused_phones_carry_the_reason_and_unmatched_ids_fill_in_order() -> None:
    phones = ["13800000001", "13800000002", "13800000003"]
    refused = [FailedRecipient(phone="13800000002", message="手机号格式错误", vars={})]
    out = recipients_of_result(phones, reply(["no-tail-a", "1$13800000003"], refused))
    assert [(r["phone"], r["outcome"], r["sms_id"]) for r in out] == [
        ("13800000001", "sent", "no-tail-a"),
        ("13800000002", "failed", None),
        ("13800000003", "sent", "1$13800000003"),
    ]
    assert out[1]["message"] == "手机号格式错误"


def test_a_full_chunk_is_matched_exactly() -> None:
    phones = [f"138{i:08d}" for i in range(2000)]
    ids = [f"id{i}${p}" for i, p in reversed(list(enumerate(phones)))]
    out = recipients_of_result(phones, reply(ids))
    assert all(r["sms_id"] == f"id{i}${r['phone']}" for i, r in enumerate(out))


# -- one shape per record, wherever it is read ----------------------------------------------
#
# Real Redis, the real runner and the in-process simulator: a job is run the way its actor
# runs it, then its record is read through get_result (the idempotency record's ``result``),
# producers.get_result, and ResultReader (the stream entry written by the same script).


T0 = datetime(2024, 11, 22, 10, 0, tzinfo=UTC).timestamp()
JOBS = {job.actor_name: job for job in JOB_TYPES}
SMS, CODE, VOICE, MEMBERS = (JOBS[n] for n in (
    "sendcloud_send_sms", "sendcloud_send_code", "sendcloud_send_voice_code", "sendcloud_members"))
ADDRESS = "news@lists.example.com"


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    with stack_factory(redis_url, clock=lambda: T0) as make:
        yield make()


def run(stack: Stack, job: JobType, payload: dict[str, Any]) -> Any:
    IdempotencyStore(stack.redis).reserve(payload["key"], payload_hash(payload), job.kind(payload))
    return stack.runner.run(job, payload, f"m-{payload['key']}")


def is_iso_utc(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parsed = datetime.fromisoformat(value)
    return parsed.utcoffset() == timedelta(0) and value.endswith("+00:00")


def assert_documented(fields: dict[str, Any]) -> None:
    """Only the kind's documented fields, each of its documented type."""
    kind = record_type(fields)
    assert kind is not None, fields
    schema = RECORD_FIELDS[kind]
    assert set(fields) <= set(schema), set(fields) - set(schema)
    for name, value in fields.items():
        expected = schema[name]
        if expected == "int":
            assert type(value) is int or (name == "status_code" and value is None), (name, value)
        elif expected == "float":
            assert type(value) is float, (name, value)
        elif expected == "bool":
            assert type(value) is bool, (name, value)
        elif expected == "list":
            assert type(value) is list, (name, value)
        elif expected == "time":
            assert is_iso_utc(value), (name, value)
        else:
            assert type(value) is str, (name, value)


def stream_record(stack: Stack, stream: str, key: str) -> dict[str, Any]:
    records = [r.fields for r in ResultReader(stack.redis, stream).read(count=1000)
               if r.fields.get("key") == key]
    assert len(records) == 1, records
    return records[0]


def test_a_record_reads_the_same_through_get_result_and_the_stream(stack: Stack) -> None:
    client = stack.runtime.client()
    client.add_address_list(ADDRESS, "News")
    base = {"template_id": TEMPLATE_ID, "vars": None, "msg_type": 0, "tag": None,
            "enqueued_at": T0}
    code = {"phone": mainland(2), "code": "123456", "sign_id": 1, "sign_name": None,
            "msg_type": 0, "enqueued_at": T0, "expires_at": T0 + 600}
    members = {"address": ADDRESS, "new_members": None, "names": None, "vars": None,
               "enqueued_at": T0}
    jobs: list[tuple[JobType, dict[str, Any], str, str]] = [
        (SMS, base | {"key": "s-sent", "phones": [mainland(1)]}, "sent", SMS_RESULTS_STREAM),
        (SMS, base | {"key": "s-partial", "phones": [mainland(3), "12345"]}, "partial",
         SMS_RESULTS_STREAM),
        (SMS, base | {"key": "s-failed", "template_id": 999_999, "phones": [mainland(4)]},
         "failed", SMS_RESULTS_STREAM),
        (SMS, base | {"key": "campaign:x:3", "phones": [mainland(5)], "campaign_id": "x",
                      "chunk_index": 3}, "sent", SMS_RESULTS_STREAM),
        (CODE, code | {"key": "c-sent"}, "sent", SMS_RESULTS_STREAM),
        (CODE, code | {"key": "c-expired", "expires_at": T0 - 1}, "expired",
         SMS_RESULTS_STREAM),
        (VOICE, {"key": "v-sent", "phone": mainland(6), "code": "4321", "enqueued_at": T0,
                 "expires_at": T0 + 600}, "sent", SMS_RESULTS_STREAM),
        (MEMBERS, members | {"key": "m:part1", "op": "add", "members": ["a@example.com"],
                             "part": 1, "parts": 2}, "done", MEMBERS_RESULTS_STREAM),
        (MEMBERS, members | {"key": "m-missing", "op": "delete", "address": "no@example.com",
                             "members": ["a@example.com"]}, "failed", MEMBERS_RESULTS_STREAM),
    ]
    previous = set_default_producer(stack.producer)
    try:
        for job, payload, outcome, stream in jobs:
            with contextlib.suppress(PermanentJobFailure):
                assert run(stack, job, payload) == outcome
            key = payload["key"]
            from_result = stack.producer.get_result(key)
            assert from_result is not None
            assert from_result == stream_record(stack, stream, key) == producers.get_result(key)
            assert_documented(from_result)
            assert from_result["outcome"] == outcome and from_result["attempts"] == 1
            assert from_result["finished_at"] == "2024-11-22T10:00:00+00:00"
    finally:
        set_default_producer(previous)

    partial = stack.producer.get_result("s-partial")
    assert partial is not None and partial["status_code"] == 311
    assert [r["status_code"] for r in partial["recipients"]] == [311, 311]
    assert stack.producer.get_result("c-expired")["status_code"] is None  # type: ignore[index]
    chunk = stack.producer.get_result("campaign:x:3")
    assert chunk is not None and (chunk["campaign_id"], chunk["chunk_index"]) == ("x", 3)
    part = stack.producer.get_result("m:part1")
    assert part is not None and (part["count"], part["part"], part["parts"]) == (1, 1, 2)
    assert stack.producer.get_result("s-sent")["status_code"] == 200  # type: ignore[index]


def test_the_builders_make_records_in_their_documented_shape() -> None:
    end = Ending("sms", "sent", None, "", 2, T0 + 0.5)
    sms = sms_record({"key": "k"}, end,
                     recipients=[recipient("13800000001", "sent", sms_id="a$1")], sms_ids=["a$1"])
    chunk_full = sms_record({"key": "k", "campaign_id": "c", "chunk_index": 0}, end, recipients=[
        recipient("13800000001", "sent", sms_id="a$13800000001"),
        recipient("13800000002", "failed", status_code=311, message="bad number")])
    _, chunk = compact(chunk_full, ["13800000001", "13800000002"])
    members = members_record({"key": "k:part0", "part": 0, "parts": 2},
                             Ending("members_add", "failed", 404, "no", 1, T0))
    alert = alert_record("sendcloud:pause:u", account="u", status_code=499, message="no money",
                         seconds=30, now=T0)
    for record in (sms, chunk, members, alert):
        assert_documented(record)
        assert shape_record(record) == record
        assert decode_fields(flatten(record)) == record  # the stream entry reads back the same
    assert sms["finished_at"] == "2024-11-22T10:00:00.500000+00:00"
    assert (chunk["accepted"], chunk["failed"]) == (1, 1)
    assert chunk["failures"] == [{"phone": "13800000002", "outcome": "failed",
                                  "status_code": 311, "message": "bad number"}]
    assert flatten(alert)["paused_seconds"] == "30.0"


def test_an_alert_is_documented_and_typed(stack: Stack) -> None:
    stack.sim.set_balance(0)
    payload = {"key": "c1", "phone": mainland(1), "code": "123456", "sign_id": 1,
               "sign_name": None, "msg_type": 0, "enqueued_at": T0, "expires_at": T0 + 600}
    with pytest.raises(dramatiq.Retry):
        run(stack, CODE, payload)
    [alert] = [r.fields for r in ResultReader(stack.redis).read()]
    assert_documented(alert)
    assert alert == {
        "key": "sendcloud:pause:sim_sms_user", "kind": "alert", "outcome": "paused",
        "status_code": 499, "message": alert["message"], "account": "sim_sms_user",
        "paused_seconds": stack.settings.pause_seconds, "finished_at": "2024-11-22T10:00:00+00:00",
    }  # fmt: skip


def finished_record(client: redis.Redis) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """The one campaign_finished record, as ResultReader reads it and as the stream holds it."""
    records = [r for r in ResultReader(client).read(count=1000)
               if r.fields["outcome"] == "campaign_finished"]
    assert len(records) == 1
    [(_, raw)] = client.xrange(SMS_RESULTS_STREAM, records[0].id, records[0].id)
    return records[0].fields, raw


def test_campaign_finished_by_the_seal_has_iso_finished_at_and_documented_fields(
    redis_url: str,
) -> None:
    with stack_factory(redis_url) as make:
        stack = make()

        def numbers_then_wait() -> Iterator[str]:
            yield from ["12345", mainland(1), *(mainland(i) for i in range(2000))]
            # The chunk is enqueued: let the worker count it before the producer seals, so
            # that the seal script writes the record.
            assert stack.wait_until(
                lambda: campaign_status("early", producer=stack.producer).chunks_done == 1)

        with stack.running(threads=2):
            start_campaign("early", TEMPLATE_ID, numbers_then_wait(), producer=stack.producer)
        done, raw = finished_record(stack.redis)
        finished_at = float(stack.redis.hget(campaign_key("early"), "finished_at") or 0)
    assert set(done) == set(CAMPAIGN_FINISHED_FIELDS)
    assert_documented(done)
    assert done == {
        "key": "campaign:early", "kind": "campaign", "outcome": "campaign_finished",
        "campaign_id": "early", "input": 2002, "valid": 2000, "invalid": 1, "duplicates": 1,
        "chunks": 1, "accepted": 2000, "failed": 0, "cancelled": 0, "needs_review": 0,
        "cancel_requested": False, "finished_at": iso_utc(finished_at),
    }  # fmt: skip
    # On the stream itself too, for readers in other languages: ISO text, not epoch seconds.
    assert raw[b"finished_at"].decode() == iso_utc(finished_at)


def test_campaign_finished_by_the_last_chunk_has_iso_finished_at_and_documented_fields(
    redis_url: str,
) -> None:
    with stack_factory(redis_url) as make:
        stack = make()
        numbers = [mainland(i) for i in range(3)] + [mainland(0)]
        start_campaign("small", TEMPLATE_ID, numbers, producer=stack.producer)
        with stack.running(threads=2):
            assert stack.wait_until(
                lambda: campaign_status("small", producer=stack.producer).finished, 30)
        done, raw = finished_record(stack.redis)
        finished_at = float(stack.redis.hget(campaign_key("small"), "finished_at") or 0)
    assert set(done) == set(CAMPAIGN_FINISHED_FIELDS)
    assert_documented(done)
    assert (done["input"], done["valid"], done["duplicates"], done["chunks"]) == (4, 3, 1, 1)
    assert (done["accepted"], done["cancel_requested"]) == (3, False)
    assert done["finished_at"] == iso_utc(finished_at)
    assert raw[b"finished_at"].decode() == done["finished_at"]
    assert raw[b"accepted"] == b"3" and raw[b"cancel_requested"] == b"0"


def test_the_lua_iso_time_is_the_python_one(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(ISO_TIME_LUA + "return sendcloud_iso_utc(ARGV[1])")
    for seconds in (0.0, 86399.5, 951782400.0, 951868800.25, 1709164800.000001, T0,
                    1732300000.123456, 4102444799.999999):
        text = f"{seconds:.6f}"
        assert script(args=[text]).decode() == iso_utc(float(text)), text
