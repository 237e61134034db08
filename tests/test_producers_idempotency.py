"""Idempotency: the shared record, repeat calls, conflicts, crashes, and split member calls."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from producers.contract import CODES_QUEUE, MEMBERS_QUEUE, SMS_QUEUE
from producers.errors import IdempotencyConflict
from producers.idempotency import (
    IdempotencyStore,
    Reservation,
    payload_hash,
    record_key,
)
from tests import test_producers_enqueue
from tests.test_producers_enqueue import ADDRESS, ProducerFactory, all_queued, queued

make_producer = test_producers_enqueue.make_producer  # the shared fixture

PHONES = ["13812345678"]


@pytest.fixture
def store(redis_client: redis.Redis) -> IdempotencyStore:
    return IdempotencyStore(redis_client)


def test_reserve_creates_a_queued_record_with_the_documented_layout(
    store: IdempotencyStore, redis_client: redis.Redis
) -> None:
    assert store.reserve("k1", "h1", "sms", ttl=600) == Reservation(created=True, state="queued")
    raw = redis_client.hgetall("sendcloud:idem:k1")
    assert set(raw) == {b"hash", b"kind", b"state", b"created_at", b"updated_at", b"reservers"}
    assert (raw[b"hash"], raw[b"kind"], raw[b"state"]) == (b"h1", b"sms", b"queued")
    assert raw[b"created_at"] == raw[b"updated_at"]
    assert 0 < redis_client.ttl("sendcloud:idem:k1") <= 600


def test_an_undo_keeps_a_record_another_call_reserved_meanwhile(
    store: IdempotencyStore, redis_client: redis.Redis
) -> None:
    """A reservation whose WAIT failed is taken back, unless another call reserved the same
    record before the undo ran: that call may have enqueued on the strength of it."""
    from producers.contract import RECONCILE_KEY

    def undo(key: str) -> None:  # as reserve_many does after too few replicas acknowledged
        store._undo(keys=[RECONCILE_KEY, record_key(key)], args=["h1"])

    store.reserve("raced", "h1", "sms")
    assert store.reserve("raced", "h1", "sms").should_enqueue  # another caller, same job
    undo("raced")
    assert redis_client.hget(record_key("raced"), "reservers") == b"1"
    assert store.get("raced") is not None
    store.reserve("alone", "h1", "sms")
    undo("alone")
    assert not redis_client.exists(record_key("alone"))


def test_reserve_again_returns_the_current_state_and_keeps_the_ttl(
    store: IdempotencyStore, redis_client: redis.Redis
) -> None:
    store.reserve("k1", "h1", "sms", ttl=600)
    redis_client.hset(record_key("k1"), mapping={"state": "in_flight", "updated_at": "2.5"})
    redis_client.expire(record_key("k1"), 100)
    again = store.reserve("k1", "h1", "sms", ttl=600)
    assert again == Reservation(created=False, state="in_flight")
    assert not again.should_enqueue
    assert redis_client.ttl(record_key("k1")) <= 100


def test_reserve_with_another_payload_conflicts(store: IdempotencyStore) -> None:
    store.reserve("k1", "h1", "sms")
    with pytest.raises(IdempotencyConflict) as info:
        store.reserve("k1", "h2", "sms")
    assert isinstance(info.value, ValueError)
    assert info.value.key == "k1"


def test_reserve_many_is_all_or_nothing(
    store: IdempotencyStore, redis_client: redis.Redis
) -> None:
    store.reserve("b", "hb", "members_add")
    with pytest.raises(IdempotencyConflict) as info:
        store.reserve_many([("a", "ha"), ("b", "other"), ("c", "hc")], "members_add")
    assert info.value.key == "b"
    assert redis_client.exists(record_key("a"), record_key("c")) == 0
    reservations = store.reserve_many([("a", "ha"), ("b", "hb")], "members_add")
    assert [r.created for r in reservations] == [True, False]


def test_a_record_without_hash_is_adopted(
    store: IdempotencyStore, redis_client: redis.Redis
) -> None:
    redis_client.hset(record_key("k1"), mapping={"state": "in_flight", "kind": "sms"})
    assert store.reserve("k1", "h1", "sms") == Reservation(created=False, state="in_flight")
    assert redis_client.hget(record_key("k1"), "hash") == b"h1"


def test_get_decodes_the_record(store: IdempotencyStore, redis_client: redis.Redis) -> None:
    assert store.get("missing") is None
    store.reserve("k1", "h1", "code")
    result = {"outcome": "sent", "sms_ids": ["1$13812345678"]}
    redis_client.hset(record_key("k1"), mapping={"state": "done", "result": json.dumps(result)})
    record = store.get("k1")
    assert record is not None
    assert (record["state"], record["kind"], record["result"]) == ("done", "code", result)
    assert isinstance(record["created_at"], float)
    assert store.get_result("k1") == result


def test_hash_ignores_key_and_timestamps() -> None:
    base = {"key": "a", "phone": "13812345678", "enqueued_at": 1.0, "expires_at": 2.0}
    moved = {**base, "key": "b", "enqueued_at": 5.0, "expires_at": 9.0}
    assert payload_hash(base) == payload_hash(moved)
    assert payload_hash(base) != payload_hash({**base, "phone": "13912345678"})


def test_same_key_and_payload_returns_the_key_without_a_second_reservation(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    producer = make_producer()
    key = producer.send_sms(3, PHONES, {"a": "1"}, idempotency_key="same")
    first = producer.get_record(key)
    assert producer.send_sms(3, PHONES, {"a": "1"}, idempotency_key="same") == key
    assert producer.get_record(key) == first  # created_at unchanged: no second reservation
    # Still queued: enqueued again in case the first attempt died before enqueueing.
    assert len(queued(redis_client, SMS_QUEUE)) == 2


@pytest.mark.parametrize("state", ["in_flight", "done", "failed", "expired", "needs_review"])
def test_repeat_after_the_worker_took_the_job_does_not_enqueue(
    make_producer: ProducerFactory, redis_client: redis.Redis, state: str
) -> None:
    producer = make_producer()
    key = producer.send_code("13812345678", "1234", sign_id=1, idempotency_key="c1")
    redis_client.hset(record_key(key), "state", state)
    producer.send_code("13812345678", "1234", sign_id=1, idempotency_key="c1")
    assert len(queued(redis_client, CODES_QUEUE)) == 1


def test_same_key_with_another_payload_conflicts_and_enqueues_nothing(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    producer = make_producer()
    producer.send_sms(3, PHONES, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        producer.send_sms(4, PHONES, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        producer.send_code("13812345678", "1234", sign_id=1, idempotency_key="k")
    assert len(all_queued(redis_client)) == 1
    assert queued(redis_client, SMS_QUEUE)[0]["args"][0]["template_id"] == 3


class FlakyBroker(StubBroker):
    """Fails the first enqueue as if the process died between reserving and enqueueing."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker went away")
        return super().enqueue(message, delay=delay)


def test_a_crash_between_reserve_and_enqueue_is_recovered_by_a_retry(
    make_producer: ProducerFactory,
) -> None:
    broker = FlakyBroker()
    producer = make_producer(broker)
    with pytest.raises(ConnectionError):
        producer.send_voice_code("13812345678", "1234", idempotency_key="v1")
    record = producer.get_record("v1")
    assert record is not None and record["state"] == "queued"
    assert broker.queues[CODES_QUEUE].qsize() == 0
    assert producer.send_voice_code("13812345678", "1234", idempotency_key="v1") == "v1"
    assert broker.queues[CODES_QUEUE].qsize() == 1


def member_payloads(client: redis.Redis) -> list[dict[str, Any]]:
    return [message["args"][0] for message in queued(client, MEMBERS_QUEUE)]


def test_more_than_1000_members_are_split_into_parts(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    members = [f"user{i}@x.org" for i in range(2500)]
    names = [f"User {i}" for i in range(2500)]
    variables: list[dict[str, str | int]] = [{"n": i} for i in range(2500)]
    producer = make_producer()
    key = producer.add_members(ADDRESS, members, names=names, vars=variables,
                               idempotency_key="import")
    assert key == "import"
    payloads = member_payloads(redis_client)
    assert [p["key"] for p in payloads] == ["import:part0", "import:part1", "import:part2"]
    assert [(p["part"], p["parts"]) for p in payloads] == [(0, 3), (1, 3), (2, 3)]
    assert [len(p["members"]) for p in payloads] == [1000, 1000, 500]
    assert [m for p in payloads for m in p["members"]] == members
    assert [n for p in payloads for n in p["names"]] == names
    assert payloads[2]["vars"][0] == {"n": "2000"}
    assert producer.get_record("import") is None
    for part in range(3):
        record = producer.get_record(f"import:part{part}")
        assert record is not None and record["kind"] == "members_add"

    # The same call again reserves nothing new; parts still queued are enqueued again.
    redis_client.hset(record_key("import:part1"), "state", "done")
    producer.add_members(ADDRESS, members, names=names, vars=variables, idempotency_key="import")
    assert [p["key"] for p in member_payloads(redis_client)][3:] == [
        "import:part0", "import:part2",
    ]


def test_update_split_keeps_new_members_aligned(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    old = [f"old{i}@x.org" for i in range(1001)]
    new = [f"new{i}@x.org" for i in range(1001)]
    make_producer().update_members(ADDRESS, old, new_members=new)
    payloads = member_payloads(redis_client)
    assert [(p["members"][-1], p["new_members"][-1]) for p in payloads] == [
        ("old999@x.org", "new999@x.org"),
        ("old1000@x.org", "new1000@x.org"),
    ]


def test_exactly_1000_members_is_one_unsplit_job(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    key = make_producer().delete_members(ADDRESS, [f"u{i}@x.org" for i in range(1000)])
    (payload,) = member_payloads(redis_client)
    assert payload["key"] == key and "part" not in payload


def test_a_split_call_with_a_changed_part_conflicts_and_enqueues_nothing(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    members = [f"user{i}@x.org" for i in range(1500)]
    producer = make_producer()
    producer.delete_members(ADDRESS, members, idempotency_key="d")
    changed = [*members[:-1], "someone.else@x.org"]
    with pytest.raises(IdempotencyConflict) as info:
        producer.delete_members(ADDRESS, changed, idempotency_key="d")
    assert info.value.key == "d:part1"
    assert len(member_payloads(redis_client)) == 2


def test_the_producer_dates_the_reconcilers_look_by_the_deployments_setting(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producers import Producer

    monkeypatch.setenv("SENDCLOUD_RECONCILE_QUEUED_AFTER", "7")
    producer = Producer(redis_url=redis_url)
    before = int(redis_client.time()[0])
    try:
        key = producer.send_code("13800000001", "1234", sign_id=1)
    finally:
        producer.close()
    score = redis_client.zscore("sendcloud:reconcile", key)
    after = int(redis_client.time()[0])
    # Whole seconds of Redis's clock at the reservation, plus the setting.
    assert score is not None and before + 7 <= score <= after + 7
