"""ResultReader over a real Redis stream, with and without a consumer group."""

from __future__ import annotations

import json

import pytest
import redis

from producers import MEMBERS_RESULTS_STREAM, SMS_RESULTS_STREAM, ResultReader, ResultRecord


def add_result(client: redis.Redis, stream: str, key: str, **extra: str) -> str:
    """An entry as workers write it: scalars as text, lists and dicts as JSON text."""
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
    assert reader.read() == []  # stream and group created, starting at the beginning
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
