"""ResultReader over a real Redis stream, with and without a consumer group, and the
documented shape of each record kind it returns."""

from __future__ import annotations

import json

import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from producers import (
    EMAIL_STATUS_STREAM,
    MEMBERS_RESULTS_STREAM,
    SMS_RESULTS_STREAM,
    Producer,
    ResultReader,
    ResultRecord,
)
from producers.results import StreamNotFound
from worker.jobs.results import create_result_streams


def add_result(client: redis.Redis, stream: str, key: str, **extra: str) -> str:
    """An entry of no known kind (no ``kind``): every field kept, JSON text decoded."""
    fields = {
        "key": key,
        "outcome": "partial",
        "success_count": "1",
        "sms_ids": json.dumps(["1458113381893_15_3_11_1ainnq$13812345678"]),
        "failures": json.dumps([{"phone": "1312222", "message": "手机号格式错误"}]),
        **extra,
    }
    entry_id = client.xadd(stream, fields)  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def test_plain_reader_decodes_and_continues_after_the_last_entry(
    redis_client: redis.Redis,
) -> None:
    first = add_result(redis_client, SMS_RESULTS_STREAM, "k1", note="[not json")
    reader = ResultReader(redis_client)
    (record,) = reader.read()
    assert record == ResultRecord(
        id=first,
        fields={
            "key": "k1",
            "outcome": "partial",
            "success_count": "1",
            "sms_ids": ["1458113381893_15_3_11_1ainnq$13812345678"],
            "failures": [{"phone": "1312222", "message": "手机号格式错误"}],
            "note": "[not json",
        },
    )
    assert record["key"] == "k1" and record.get("missing", 0) == 0
    assert reader.read() == []
    second = add_result(redis_client, SMS_RESULTS_STREAM, "k2")
    assert [r.id for r in reader.read(block_ms=10)] == [second]


def test_reader_respects_count_and_start(redis_client: redis.Redis) -> None:
    ids = [add_result(redis_client, MEMBERS_RESULTS_STREAM, f"k{i}") for i in range(5)]
    reader = ResultReader(redis_client, MEMBERS_RESULTS_STREAM)
    assert [r.id for r in reader.read(count=2)] == ids[:2]
    assert [r.id for r in reader.read(count=10)] == ids[2:]
    late = ResultReader(redis_client, MEMBERS_RESULTS_STREAM, start_id="$")
    assert late.read() == []


def test_group_reader_shares_work_and_tracks_acknowledgements(
    redis_client: redis.Redis,
) -> None:
    create_result_streams(redis_client)
    a = ResultReader(redis_client, group="billing", consumer="a")
    b = ResultReader(redis_client, group="billing", consumer="b")
    assert a.ensure_group() is True
    assert b.ensure_group() is False
    ids = [add_result(redis_client, SMS_RESULTS_STREAM, f"k{i}") for i in range(3)]
    got_a = a.read(count=2)
    got_b = b.read(count=10)
    assert [r.id for r in got_a + got_b] == ids
    assert got_a[0]["sms_ids"] == ["1458113381893_15_3_11_1ainnq$13812345678"]

    assert [r.id for r in a.read_pending()] == ids[:2]
    assert a.ack(got_a[:1]) == 1
    assert a.ack([ids[1]]) == 1
    assert a.ack([]) == 0
    assert a.read_pending() == []
    assert [r.id for r in b.read_pending()] == ids[2:]


def test_group_reader_creates_a_missing_group_on_first_read(
    redis_client: redis.Redis,
) -> None:
    reader = ResultReader(redis_client, group="audit")
    assert reader.consumer  # a host-pid name by default
    with pytest.raises(StreamNotFound):  # no worker ever started on this Redis
        reader.read()
    assert not redis_client.exists(SMS_RESULTS_STREAM)
    create_result_streams(redis_client)  # as a worker does at start
    assert create_result_streams(redis_client) == 0  # and never again over existing streams
    assert reader.read() == []  # group created, starting at the beginning
    entry = add_result(redis_client, SMS_RESULTS_STREAM, "k1")
    assert [r.id for r in reader.read()] == [entry]


def test_resp3_replies_are_read_too(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, protocol=3, decode_responses=True)
    try:
        entry_id = str(client.xadd(SMS_RESULTS_STREAM, {"key": "k1", "ids": '["a"]'}))
        (record,) = ResultReader(client).read()
        assert record == ResultRecord(id=entry_id, fields={"key": "k1", "ids": ["a"]})
        (grouped,) = ResultReader(client, group="g", consumer="c").read()
        assert grouped.id == entry_id
    finally:
        client.close()


def test_consumer_without_group_is_refused(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="consumer needs a group"):
        ResultReader(redis_client, consumer="c")
    with pytest.raises(ValueError, match="no group"):
        ResultReader(redis_client).ack(["1-0"])


# -- the documented shape of each record kind -------------------------------------------------


def read_one(client: redis.Redis, stream: str, fields: dict[str, str]) -> dict[str, object]:
    client.xadd(stream, fields)  # type: ignore[arg-type]
    (record,) = ResultReader(client, stream).read()
    return record.fields


def test_an_sms_entry_reads_typed_and_without_undocumented_fields(
    redis_client: redis.Redis,
) -> None:
    fields = read_one(redis_client, SMS_RESULTS_STREAM, {
        "key": "order-42", "kind": "sms", "outcome": "needs_review", "status_code": "",
        "message": "check", "sms_ids": "[]",
        "recipients": '[{"phone":"13800000000","outcome":"needs_review","sms_id":null,'
                      '"status_code":null,"message":""}]',
        "attempts": "3", "finished_at": "2024-11-22T10:00:00+00:00",
        "owner": "m1:3", "lease_until": "1732269600.000000",
    })  # fmt: skip
    assert fields == {
        "key": "order-42", "kind": "sms", "outcome": "needs_review", "status_code": None,
        "message": "check", "sms_ids": [],
        "recipients": [{"phone": "13800000000", "outcome": "needs_review", "sms_id": None,
                        "status_code": None, "message": ""}],
        "attempts": 3, "finished_at": "2024-11-22T10:00:00+00:00",
    }  # fmt: skip


def test_a_campaign_chunk_entry_is_a_summary(redis_client: redis.Redis) -> None:
    fields = read_one(redis_client, SMS_RESULTS_STREAM, {
        "key": "campaign:c:2", "kind": "sms", "outcome": "partial", "status_code": "311",
        "message": "partial", "campaign_id": "c", "chunk_index": "2", "accepted": "1999",
        "failed": "1", "cancelled": "0", "review": "0",
        "failures": '[{"phone":"1380000","outcome":"failed","status_code":311,"message":"bad"}]',
        "attempts": "1", "finished_at": "2024-11-22T10:00:00+00:00", "sms_ids_packed": "eJw=",
    })  # fmt: skip
    assert fields == {
        "key": "campaign:c:2", "kind": "sms", "outcome": "partial", "status_code": 311,
        "message": "partial", "campaign_id": "c", "chunk_index": 2, "accepted": 1999,
        "failed": 1, "cancelled": 0, "review": 0,
        "failures": [{"phone": "1380000", "outcome": "failed", "status_code": 311,
                      "message": "bad"}],
        "attempts": 1, "finished_at": "2024-11-22T10:00:00+00:00",
    }  # fmt: skip


def test_a_members_entry_reads_typed(redis_client: redis.Redis) -> None:
    fields = read_one(redis_client, MEMBERS_RESULTS_STREAM, {
        "key": "m:part0", "kind": "members_add", "outcome": "done", "status_code": "200",
        "message": "", "count": "2", "invalid": '[{"address":"x","reason":"bad"}]',
        "attempts": "1", "finished_at": "2024-11-22T10:00:00+00:00", "part": "0", "parts": "2",
    })  # fmt: skip
    assert (fields["status_code"], fields["count"], fields["part"], fields["parts"]) == (
        200, 2, 0, 2)
    assert fields["invalid"] == [{"address": "x", "reason": "bad"}]


def test_an_older_campaign_finished_entry_reads_with_an_iso_finished_at(
    redis_client: redis.Redis,
) -> None:
    fields = read_one(redis_client, SMS_RESULTS_STREAM, {
        "key": "campaign:c", "kind": "campaign", "outcome": "campaign_finished",
        "campaign_id": "c", "input": "5", "valid": "4", "invalid": "1", "duplicates": "0",
        "chunks": "1", "accepted": "4", "failed": "0", "cancelled": "0", "needs_review": "0",
        "cancel_requested": "1", "finished_at": "1732269600.500000",
    })  # fmt: skip
    assert fields["finished_at"] == "2024-11-22T10:00:00.500000+00:00"
    assert (fields["input"], fields["accepted"], fields["cancel_requested"]) == (5, 4, True)


def test_email_status_entries_keep_their_text_and_a_gap_counts_days(
    redis_client: redis.Redis,
) -> None:
    status = {"event": "status", "email_id": "e1", "recipient": "a@example.com",
              "api_user": "u", "status": "invalid", "status_raw": "无效邮件", "sub_status": "406",
              "sub_status_desc": "invalid email - address does not exist", "send_log": "",
              "request_time": "2024-11-22T18:00:00+08:00",
              "modified_time": "2024-11-22T18:00:05+08:00",
              "polled_at": "2024-11-22T18:10:00+08:00"}
    assert read_one(redis_client, EMAIL_STATUS_STREAM, status) == status
    gap = read_one(redis_client, "sendcloud:results:gaps", {
        "event": "gap", "gap_start": "2024-10-01", "gap_end": "2024-10-03", "gap_days": "3",
        "cursor": "", "reason": "older than 30 days", "polled_at": "2024-11-22T18:10:00+08:00",
    })  # fmt: skip
    assert gap["gap_days"] == 3 and gap["cursor"] == ""


def test_get_result_shapes_a_stored_result_like_the_stream(redis_client: redis.Redis) -> None:
    """A result stored with text where numbers belong (or extra fields) is read documented."""
    stored = {"key": "k1", "kind": "code", "outcome": "sent", "status_code": "200",
              "message": "", "sms_ids": ["a$1"], "recipients": [], "attempts": "1",
              "finished_at": 1732269600, "debug": "x"}
    redis_client.hset("sendcloud:idem:k1", mapping={"state": "done",
                                                    "result": json.dumps(stored)})
    producer = Producer(redis=redis_client, broker=StubBroker())
    assert producer.get_result("k1") == {
        "key": "k1", "kind": "code", "outcome": "sent", "status_code": 200, "message": "",
        "sms_ids": ["a$1"], "recipients": [], "attempts": 1,
        "finished_at": "2024-11-22T10:00:00+00:00",
    }  # fmt: skip


def test_a_block_longer_than_the_socket_timeout_waits_it_out(redis_url: str) -> None:
    """redis-py's from_url gives clients a 5 s socket timeout; a reader that blocks longer,
    as the README's loop does, must wait, not fail."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.6)
    default = redis.Redis.from_url(redis_url)  # redis-py's own default: 5 s
    try:
        assert ResultReader(default, SMS_RESULTS_STREAM).read(block_ms=5500) == []
        create_result_streams(client)
        plain = ResultReader(client, SMS_RESULTS_STREAM, start_id="$")
        group = ResultReader(client, SMS_RESULTS_STREAM, group="g", consumer="c")
        group.ensure_group()
        assert plain.read(block_ms=1500) == []
        assert group.read(block_ms=1500) == []
        entry = add_result(client, SMS_RESULTS_STREAM, "k1")
        assert [r.id for r in group.read(block_ms=0)] == [entry]  # 0: until one arrives
    finally:
        client.close()
        default.close()
