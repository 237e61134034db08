from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from producers.contract import SMS_QUEUE
from producers.idempotency import record_key
from tests.jobs_harness import stop_worker
from worker.broker import dead_letters as dlq
from worker.sendcloud.errors import InvalidRequestError

BrokerFactory = Callable[[], RedisBroker]


def wait_for(predicate: Callable[[], bool], deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail("condition not reached before the deadline")
        time.sleep(0.02)


@pytest.fixture
def make_broker(redis_url: str) -> Iterator[BrokerFactory]:
    brokers: list[RedisBroker] = []

    def factory() -> RedisBroker:
        broker = RedisBroker(url=redis_url)
        broker.add_middleware(dlq.DeadLetterReasons())
        brokers.append(broker)
        return broker

    yield factory
    for broker in brokers:
        broker.close()


def dead_letter_one(broker: RedisBroker, key: str, calls: list[dict[str, object]]) -> None:
    """Run a real worker on an actor that fails for good, until its message is dead-lettered
    (one more letter than before: callers may dead-letter several)."""

    @dramatiq.actor(broker=broker, queue_name=SMS_QUEUE, actor_name="fails", max_retries=0)
    def fails(job: dict[str, object]) -> None:
        calls.append(job)
        if len(calls) == 1:
            raise InvalidRequestError("template does not exist", code=431, endpoint="smsapi/send")

    before = dlq.count_dead_letters(broker.client, broker.namespace, SMS_QUEUE)
    fails.send({"key": key, "phones": ["13800000000"]})
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: dlq.count_dead_letters(broker.client, broker.namespace, SMS_QUEUE)
                 == before + 1)
    finally:
        stop_worker(worker)


def test_list_shows_actor_key_and_reason_of_the_final_attempt(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    dead_letter_one(broker, "k-1", [])

    [letter] = dlq.list_dead_letters(broker.client)
    assert letter.queue == SMS_QUEUE
    assert letter.actor == "fails"
    assert letter.key == "k-1"
    assert letter.reason == (
        "InvalidRequestError: template does not exist (statusCode 431 from smsapi/send)"
    )
    assert letter.dead_at == pytest.approx(time.time(), abs=60)


def test_replay_reenqueues_and_empties_the_dlq(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    calls: list[dict[str, object]] = []
    dead_letter_one(broker, "k-2", calls)

    report = dlq.replay(broker, queue=SMS_QUEUE)

    assert [x.key for x in report.replayed] == ["k-2"]
    assert dlq.list_dead_letters(broker.client) == []
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: len(calls) == 2)
        broker.join(SMS_QUEUE, timeout=10_000)
    finally:
        stop_worker(worker)
    assert calls[1] == {"key": "k-2", "phones": ["13800000000"]}
    assert dlq.list_dead_letters(broker.client) == []


def test_replayed_message_starts_without_delivery_options(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    dead_letter_one(broker, "k-3", [])
    [letter] = dlq.list_dead_letters(broker.client)
    assert letter.message is not None

    fresh = dlq.fresh_message(letter.message)

    assert fresh.message_id == letter.message_id
    assert fresh.queue_name == SMS_QUEUE
    assert not set(fresh.options) & {"retries", "traceback", "redis_message_id", "eta"}
    assert dlq.REASON_OPTION not in fresh.options


def test_replay_puts_the_letter_back_when_the_enqueue_fails(
    make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make_broker()
    dead_letter_one(broker, "k-4", [])

    def refuse(message: object, *, delay: int | None = None) -> None:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(broker, "enqueue", refuse)
    with pytest.raises(redis.ConnectionError):
        dlq.replay(broker)

    assert [x.key for x in dlq.list_dead_letters(broker.client)] == ["k-4"]


def test_purge_selected_ids_only(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    dead_letter_one(broker, "k-5", [])
    extra = dramatiq.Message(
        queue_name=SMS_QUEUE, actor_name="fails", args=({"key": "k-6"},), kwargs={},
        options={"redis_message_id": "r-6"},
    )  # fmt: skip
    zset, msgs = dlq.dead_letter_keys(broker.namespace, SMS_QUEUE)
    broker.client.hset(msgs, "r-6", extra.encode())
    broker.client.zadd(zset, {"r-6": time.time() * 1000})
    assert {x.key for x in dlq.list_dead_letters(broker.client)} == {"k-5", "k-6"}

    assert dlq.purge(broker.client, ids=[extra.message_id]) == 1
    [left] = dlq.list_dead_letters(broker.client)
    assert left.key == "k-5"
    assert left.reason.startswith("InvalidRequestError")
    assert dlq.purge(broker.client, queue=SMS_QUEUE) == 1
    assert dlq.list_dead_letters(broker.client) == []


def test_undecodable_entry_is_listed_not_hidden(redis_client: redis.Redis) -> None:
    zset, msgs = dlq.dead_letter_keys("dramatiq", SMS_QUEUE)
    redis_client.hset(msgs, "bad", b"not json")
    redis_client.zadd(zset, {"bad": 1000.0})

    [letter] = dlq.list_dead_letters(redis_client)

    assert letter.reason.startswith("undecodable message")
    assert letter.message is None


def test_replay_keeps_letters_whose_job_already_ended(
    make_broker: BrokerFactory, redis_client: redis.Redis
) -> None:
    broker = make_broker()
    dead_letter_one(broker, "k-7", [])
    redis_client.hset(record_key("k-7"), mapping={"state": "failed", "kind": "sms"})

    report = dlq.replay(broker)

    assert report.replayed == []
    assert [(x.key, x.job_state, x.job_final) for x in report.final] == [("k-7", "failed", True)]
    assert [x.key for x in dlq.list_dead_letters(redis_client)] == ["k-7"]
    assert redis_client.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 0
