"""A one-message job is reserved and enqueued by one script, dated by Redis's clock."""

from __future__ import annotations

import json

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from producers import IdempotencyConflict, Producer
from producers.brokers import BROKER_NAMESPACE
from producers.idempotency import record_key


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
