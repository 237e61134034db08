"""Producers enqueue the right message on the right queue, and nothing at all on bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

import producers
from producers.contract import (
    CODES_QUEUE,
    MEMBERS_ACTOR,
    MEMBERS_QUEUE,
    SEND_CODE_ACTOR,
    SEND_SMS_ACTOR,
    SEND_VOICE_CODE_ACTOR,
    SMS_QUEUE,
)
from producers.errors import ProducerValidationError
from producers.idempotency import record_key

ProducerFactory = Callable[..., producers.Producer]
PHONES = ["13812345678", "+86 139-1234-5678"]


@pytest.fixture
def make_producer(redis_url: str) -> Iterator[ProducerFactory]:
    """Producers on a real RedisBroker (default) or a StubBroker, closed after the test."""
    made: list[producers.Producer] = []

    def make(broker: Any = None, **kwargs: Any) -> producers.Producer:
        if broker is None:
            kwargs.setdefault("redis_url", redis_url)
        elif not isinstance(broker, RedisBroker):
            kwargs.setdefault("redis", redis.Redis.from_url(redis_url))
        producer = producers.Producer(broker, **kwargs)
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close()


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Messages waiting on a RedisBroker queue, in order, decoded."""
    ids = client.lrange(f"dramatiq:{queue}", 0, -1)
    bodies = client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
    return [json.loads(body) for body in bodies if body is not None]


def all_queued(client: redis.Redis) -> list[dict[str, Any]]:
    return [m for queue in (SMS_QUEUE, CODES_QUEUE, MEMBERS_QUEUE) for m in queued(client, queue)]


def only_message(client: redis.Redis, queue: str) -> dict[str, Any]:
    messages = queued(client, queue)
    assert len(messages) == 1
    assert all_queued(client) == messages
    return messages[0]


def test_send_sms_lands_on_the_sms_queue(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    producer = make_producer()
    before = time.time()
    key = producer.send_sms(
        42, PHONES, {"name": "lucy", "money": 100}, msg_type=1, tag={"c": "spring"},
        idempotency_key="order-1",
    )
    assert key == "order-1"
    message = only_message(redis_client, SMS_QUEUE)
    assert (message["queue_name"], message["actor_name"]) == (SMS_QUEUE, SEND_SMS_ACTOR)
    assert message["kwargs"] == {}
    (payload,) = message["args"]
    assert before <= payload.pop("enqueued_at") <= time.time()
    assert payload == {
        "key": "order-1",
        "template_id": 42,
        "phones": ["13812345678", "13912345678"],
        "vars": {"name": "lucy", "money": "100"},
        "msg_type": 1,
        "tag": {"c": "spring"},
    }
    record = producer.get_record(key)
    assert record is not None
    assert (record["kind"], record["state"]) == ("sms", "queued")


def test_send_code_lands_on_the_codes_queue(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    producer = make_producer(code_expiry=300)
    before = time.time()
    key = producer.send_code("+8613812345678", "123456", sign_id=7, sign_name="ignored")
    assert key.startswith("code-")
    message = only_message(redis_client, CODES_QUEUE)
    assert message["actor_name"] == SEND_CODE_ACTOR
    (payload,) = message["args"]
    # Dated by Redis's clock (the same host's here): enqueued_at is the reservation's time.
    assert before + 300 <= payload.pop("expires_at") <= time.time() + 300
    assert payload.pop("expires_in") == 300
    payload.pop("enqueued_at")
    assert payload == {
        "key": key,
        "phone": "13812345678",
        "code": "123456",
        "sign_id": 7,
        "sign_name": None,  # SendCloud skips signName when signId is given
        "msg_type": 0,
    }


def test_international_code_with_sign_name_and_expiry(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    producer = make_producer()
    before = time.time()
    producer.send_code("+44 7911 123456", "1234", sign_name="Acme", msg_type=2, expires_in=30)
    (payload,) = only_message(redis_client, CODES_QUEUE)["args"]
    assert (payload["phone"], payload["sign_name"], payload["sign_id"]) == (
        "+447911123456", "Acme", None,
    )
    assert before + 30 <= payload["expires_at"] <= time.time() + 30


def test_send_voice_code(make_producer: ProducerFactory, redis_client: redis.Redis) -> None:
    producer = make_producer()
    key = producer.send_voice_code("13812345678", "8765", idempotency_key="voice-1")
    message = only_message(redis_client, CODES_QUEUE)
    assert message["actor_name"] == SEND_VOICE_CODE_ACTOR
    (payload,) = message["args"]
    assert (payload["key"], payload["phone"], payload["code"]) == (key, "13812345678", "8765")
    assert payload["expires_at"] > payload["enqueued_at"]


@pytest.mark.parametrize("op", ["add", "update", "delete"])
def test_member_calls_land_on_the_members_queue(
    make_producer: ProducerFactory, redis_client: redis.Redis, op: str
) -> None:
    producer = make_producer()
    address = "news@maillist.sendcloud.org"
    members = ["a@x.org", "b@x.org"]
    if op == "add":
        key = producer.add_members(address, members, names=["A", "B"], vars=[{"m": "1"}, {}])
    elif op == "update":
        key = producer.update_members(address, members, new_members=["c@x.org", "d@x.org"])
    else:
        key = producer.delete_members(address, members)
    assert key.startswith(f"members_{op}-")
    message = only_message(redis_client, MEMBERS_QUEUE)
    assert message["actor_name"] == MEMBERS_ACTOR
    (payload,) = message["args"]
    assert (payload["op"], payload["address"], payload["members"]) == (op, address, members)
    assert "part" not in payload and "parts" not in payload
    expected = {
        "add": (None, ["A", "B"], [{"m": "1"}, {}]),
        "update": (["c@x.org", "d@x.org"], None, None),
        "delete": (None, None, None),
    }[op]
    assert (payload["new_members"], payload["names"], payload["vars"]) == expected


def test_stub_broker(make_producer: ProducerFactory) -> None:
    broker = StubBroker()
    producer = make_producer(broker)
    key = producer.send_sms(1, ["13812345678"], idempotency_key="stub-1")
    assert broker.queues[SMS_QUEUE].qsize() == 1
    assert all(broker.queues[q].qsize() == 0 for q in (CODES_QUEUE, MEMBERS_QUEUE))
    message = json.loads(broker.queues[SMS_QUEUE].get())
    assert message["actor_name"] == SEND_SMS_ACTOR
    assert message["args"][0]["key"] == key == "stub-1"
    assert producer.store.get(key) is not None


def test_redis_broker_client_is_reused_for_idempotency(
    make_producer: ProducerFactory, redis_url: str
) -> None:
    broker = RedisBroker(url=redis_url)
    try:
        producer = make_producer(broker)
        assert producer.redis is broker.client
    finally:
        broker.close()


def test_module_level_functions_use_the_default_producer(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    previous = producers.set_default_producer(None)
    try:
        key = producers.send_sms(5, ["13812345678"])
        producers.send_code("13812345678", "1234", sign_name="Acme")
        producers.send_voice_code("13812345678", "1234")
        producers.add_members("l@maillist.sendcloud.org", ["a@x.org"])
        producers.update_members("l@maillist.sendcloud.org", ["a@x.org"], names=["A"])
        producers.delete_members("l@maillist.sendcloud.org", ["a@x.org"])
        default = producers.default_producer()
        assert isinstance(default.broker, RedisBroker)
        assert default.broker.namespace == "dramatiq"
        assert [len(queued(redis_client, q)) for q in (SMS_QUEUE, CODES_QUEUE, MEMBERS_QUEUE)] == [
            1, 2, 3,
        ]
        assert producers.get_result(key) is None
        redis_client.hset(record_key(key), "result", json.dumps({"outcome": "sent"}))
        assert producers.get_result(key) == {"outcome": "sent"}
    finally:
        created = producers.set_default_producer(previous)
        if created is not None:
            created.close()


ADDRESS = "l@maillist.sendcloud.org"
BAD_CALLS: list[tuple[str, dict[str, Any], str, str]] = [
    ("send_sms", {"template_id": 0, "phones": PHONES}, "template_id", "must be a positive integer"),
    ("send_sms", {"template_id": 1, "phones": []}, "phones", "must not be empty"),
    ("send_sms", {"template_id": 1, "phones": ["1381234567"]}, "phones[0]", "must be a mainland"),
    ("send_sms", {"template_id": 1, "phones": PHONES * 2}, "phones[2]", "duplicate of phones[0]"),
    ("send_sms", {"template_id": 1, "phones": PHONES, "msg_type": 2}, "msg_type", "must be 0 or 1"),
    ("send_sms", {"template_id": 1, "phones": PHONES, "vars": {"v": "x" * 33}}, "vars['v']",
     "must be at most 32 characters"),
    ("send_sms", {"template_id": 1, "phones": PHONES, "vars": {"v": "www.x.cn"}}, "vars['v']",
     "must not contain links"),
    ("send_sms", {"template_id": 1, "phones": PHONES, "tag": {"t": "x" * 130}}, "tag",
     "must be at most 128 characters as JSON"),
    ("send_sms", {"template_id": 1, "phones": PHONES, "idempotency_key": "a b"}, "idempotency_key",
     "must be 1-100 printable ASCII"),
    ("send_code", {"phone": "13812345678", "code": "123"}, "code",
     "must be a string of 4-6 digits"),
    ("send_code", {"phone": "13812345678", "code": "1234"}, "sign_id", "sign_id or sign_name"),
    ("send_code", {"phone": "13812345678", "code": "1234", "sign_id": -1}, "sign_id",
     "must be a positive integer"),
    ("send_code", {"phone": "13812345678", "code": "1234", "sign_name": " "}, "sign_name",
     "must be a non-empty string"),
    ("send_code", {"phone": "13812345678", "code": "1234", "sign_id": 1, "msg_type": 1},
     "msg_type", "must be 0 or 2"),
    ("send_code", {"phone": "13812345678", "code": "1234", "sign_id": 1, "msg_type": 2},
     "phone", "must be an international number"),
    ("send_code", {"phone": "13812345678", "code": "1234", "sign_id": 1, "expires_in": 0},
     "expires_in", "must be a number of seconds"),
    ("send_voice_code", {"phone": "+447911123456", "code": "1234"}, "phone", "must be a mainland"),
    ("add_members", {"address": "nope", "members": ["a@x.org"]}, "address",
     "must be an e-mail address"),
    ("add_members", {"address": ADDRESS, "members": ["a@x.org", "bad"]}, "members[1]",
     "must be an e-mail address"),
    ("add_members", {"address": ADDRESS, "members": ["a@x.org"], "names": ["A", "B"]}, "names",
     "must hold one entry per member (1), got 2"),
    ("add_members", {"address": ADDRESS, "members": ["a@x.org"], "vars": [{"name": "A"}]},
     "vars[0]", "must not use the key 'name'"),
    ("update_members", {"address": ADDRESS, "members": ["a@x.org"], "new_members": []},
     "new_members", "must not be empty"),
    ("update_members", {"address": ADDRESS, "members": ["a@x.org"],
                        "new_members": ["b@x.org", "c@x.org"]}, "new_members",
     "must hold one entry per member (1), got 2"),
    ("delete_members", {"address": ADDRESS, "members": ["a@x.org", "A@x.org"]}, "members[1]",
     "duplicate of members[0]"),
]


@pytest.mark.parametrize(("method", "kwargs", "field", "rule"), BAD_CALLS)
def test_bad_input_names_field_and_rule_and_enqueues_nothing(
    make_producer: ProducerFactory,
    redis_client: redis.Redis,
    method: str,
    kwargs: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    producer = make_producer()
    with pytest.raises(ProducerValidationError) as info:
        getattr(producer, method)(**kwargs)
    assert info.value.field == field
    assert info.value.rule.startswith(rule)
    assert str(info.value).startswith(f"{field}: {rule}")
    assert redis_client.keys("*") == []  # no message, no idempotency record


def test_invalid_member_deep_in_a_large_call_enqueues_no_part(
    make_producer: ProducerFactory, redis_client: redis.Redis
) -> None:
    members = [f"user{i}@x.org" for i in range(2000)]
    members[1499] = "user1499@@x.org"
    with pytest.raises(ProducerValidationError) as info:
        make_producer().add_members(ADDRESS, members, idempotency_key="big")
    assert info.value.field == "members[1499]"
    assert redis_client.keys("*") == []


def test_the_default_producer_reads_the_workers_ttl_and_expiry_variables(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SENDCLOUD_IDEMPOTENCY_TTL", "7200")
    monkeypatch.setenv("SENDCLOUD_CODE_EXPIRY", "120")
    previous = producers.set_default_producer(None)
    try:
        key = producers.send_code("13812345678", "1234", sign_id=1)
        assert 7000 < redis_client.ttl(record_key(key)) <= 7200
        [raw] = queued(redis_client, CODES_QUEUE)
        payload = raw["args"][0]
        assert payload["expires_at"] - payload["enqueued_at"] == pytest.approx(120)
    finally:
        created = producers.set_default_producer(previous)
        if created is not None:
            created.close()


def test_a_malformed_ttl_variable_is_named(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SENDCLOUD_IDEMPOTENCY_TTL", "a day")
    previous = producers.set_default_producer(None)
    try:
        with pytest.raises(ValueError, match="SENDCLOUD_IDEMPOTENCY_TTL"):
            producers.send_code("13812345678", "1234", sign_id=1)
    finally:
        producers.set_default_producer(previous)
