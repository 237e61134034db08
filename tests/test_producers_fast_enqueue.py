"""A one-message job is reserved and enqueued by one script, dated by Redis's clock."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from producers import IdempotencyConflict, Producer
from producers.brokers import BROKER_NAMESPACE
from producers.contract import CODES_QUEUE, SEND_CODE_ACTOR, SEND_SMS_ACTOR, SMS_QUEUE
from producers.idempotency import payload_hash, record_key


@pytest.fixture
def producer(redis_url: str) -> Producer:
    made = Producer(broker=RedisBroker(url=redis_url, namespace=BROKER_NAMESPACE))
    yield made  # type: ignore[misc]
    made.broker.close()


def queued(client: redis.Redis) -> list[dict[str, object]]:
    return [json.loads(raw)["args"][0] for raw in client.hvals("dramatiq:sendcloud.codes.msgs")]


def test_one_round_trip_with_redis_time_in_the_message(
    producer: Producer, redis_client: redis.Redis
) -> None:
    producer.send_code("13800000009", "1234", sign_id=1)  # loads the script
    seconds, micros = redis_client.time()
    before = float(seconds) + micros / 1e6
    redis_client.config_resetstat()
    key = producer.send_code("13800000001", "1234", sign_id=1, expires_in=90)
    stats = redis_client.info("commandstats")
    calls = {name: int(v["calls"]) for name, v in stats.items()}
    # One client command: the script; its inner commands show up on their own.
    assert calls.get("cmdstat_evalsha") == 1 and calls.get("cmdstat_rpush") == 1
    calls.pop("cmdstat_config|resetstat", None)
    assert set(calls) <= {"cmdstat_evalsha", "cmdstat_time", "cmdstat_hmget", "cmdstat_hset",
                          "cmdstat_zadd", "cmdstat_expire", "cmdstat_rpush"}

    [payload] = [p for p in queued(redis_client) if p["key"] == key]
    seconds, micros = redis_client.time()
    after = float(seconds) + micros / 1e6
    assert isinstance(payload["enqueued_at"], float)
    assert before <= payload["enqueued_at"] <= after  # Redis's clock, read in the script
    assert payload["expires_at"] == pytest.approx(payload["enqueued_at"] + 90, abs=1e-5)
    assert redis_client.lrange("dramatiq:sendcloud.codes", 0, -1) != []
    job = json.loads(redis_client.hget(record_key(key), "job"))
    assert job["payload"]["enqueued_at"] == 0.0  # the copy the reconciler re-dates
    assert redis_client.zscore("sendcloud:reconcile", key) is not None


def test_the_same_key_is_refused_for_another_payload(producer: Producer) -> None:
    producer.send_code("13800000002", "1234", sign_id=1, idempotency_key="k")
    assert producer.send_code("13800000002", "1234", sign_id=1, idempotency_key="k") == "k"
    with pytest.raises(IdempotencyConflict):
        producer.send_code("13800000002", "9999", sign_id=1, idempotency_key="k")


def test_text_that_looks_like_a_placeholder_is_left_alone(
    producer: Producer, redis_client: redis.Redis
) -> None:
    name = "@@sendcloud-enqueued-at-00000000000000000000000000000000@@"
    producer.send_code("13800000003", "1234", sign_name=name)
    [payload] = queued(redis_client)
    assert payload["sign_name"] == name
    assert isinstance(payload["enqueued_at"], float)


def _queued_message(
    client: redis.Redis, queue: str, key: str
) -> tuple[bytes, dramatiq.Message[Any]]:
    for raw in client.hvals(f"dramatiq:{queue}.msgs"):
        message = dramatiq.Message.decode(raw)
        if message.args[0]["key"] == key:
            return raw, message
    raise AssertionError(f"no message for {key} on {queue}")


@pytest.mark.parametrize("kind", ["code", "sms"])
def test_the_message_and_the_job_copy_read_as_dramatiq_would_write_them(
    producer: Producer, redis_client: redis.Redis, kind: str
) -> None:
    if kind == "code":
        queue, actor = CODES_QUEUE, SEND_CODE_ACTOR
        key = producer.send_code("13800000004", "1234", sign_name="云片签名", expires_in=90)
        fields = {"phone": "13800000004", "code": "1234", "sign_id": None,
                  "sign_name": "云片签名", "msg_type": 0, "expires_in": 90.0}  # fmt: skip
    else:
        queue, actor = SMS_QUEUE, SEND_SMS_ACTOR
        key = producer.send_sms(7, ["13800000005"], {"name": "张三"}, tag={"t": 1})
        fields = {"template_id": 7, "phones": ["13800000005"], "vars": {"name": "张三"},
                  "msg_type": 0, "tag": {"t": "1"}}  # fmt: skip
    raw, message = _queued_message(redis_client, queue, key)
    payload = message.args[0]
    stamped = {"enqueued_at": payload["enqueued_at"]}
    if kind == "code":
        stamped["expires_at"] = payload["expires_at"]
    assert payload == {"key": key, **fields, **stamped}
    # Field for field what RedisBroker.enqueue would have stored for the same message.
    expected = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=(payload,), kwargs={},
        options={"redis_message_id": message.options["redis_message_id"]},
        message_id=message.message_id, message_timestamp=message.message_timestamp,
    )  # fmt: skip
    assert json.loads(raw) == json.loads(expected.encode())
    assert redis_client.lrange(f"dramatiq:{queue}", 0, -1) == [
        message.options["redis_message_id"].encode()
    ]
    # The record: the job copy the reconciler sends again, and the hash the slow path computes.
    record = redis_client.hgetall(record_key(key))
    undated = {**payload, **dict.fromkeys(stamped, 0.0)}
    assert json.loads(record[b"job"]) == {"actor": actor, "queue": queue,
                                          "message_id": message.message_id, "payload": undated}
    assert record[b"hash"].decode() == payload_hash(payload)
