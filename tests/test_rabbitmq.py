"""The queues on a real RabbitMQ (a vhost of this module's own), records and results in Redis:
one final record per job, retries, long waits parked in Redis, dead letters, queue depths."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis

from producers import Producer, ProducerValidationError
from producers.brokers import is_rabbitmq
from producers.contract import CODES_QUEUE, SMS_QUEUE
from producers.idempotency import record_key
from simulator import Simulator
from tests.jobs_harness import (
    TEMPLATE_ID,
    Stack,
    mainland,
    request_id,
    stack_factory,
    stop_worker,
    wait_until,
)
from tests.rabbitmq_server import RabbitVhost
from worker.broker import dead_letters as dlq
from worker.broker import make_broker
from worker.broker import rabbitmq as rabbit
from worker.cli import main
from worker.jobs.reconciler import Reconciler
from worker.metrics import RABBITMQ_UP, QueueDepthCollector
from worker.sendcloud.errors import InvalidRequestError
from worker.settings import ConfigurationError, Settings


class Clock:
    """The runner's and the simulator's clock: real time shifted by ``offset`` seconds."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.sim: Simulator | None = None

    def __call__(self) -> float:
        return time.time() + self.offset

    def simulator(self) -> Simulator:
        self.sim = Simulator(clock=self)
        self.travel(self.offset)
        return self.sim

    def travel(self, offset: float) -> None:
        self.offset = offset
        if self.sim is not None:
            # Requests carry this host's real time: the simulator's 461 check allows for it.
            self.sim.clock_offset_ms = int(-offset * 1000)


@pytest.fixture
def make(redis_url: str, rabbitmq: RabbitVhost) -> Iterator[Any]:
    with stack_factory(redis_url, broker_url=rabbitmq.url) as factory:
        yield factory


def reconcile(stack: Stack) -> Reconciler:
    return Reconciler(stack.redis, stack.broker, grace=0.0, queued_after=600, interval=1)


def test_the_broker_url_chooses_rabbitmq_for_workers_and_producers(
    rabbitmq: RabbitVhost, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({"SENDCLOUD_BROKER_URL": rabbitmq.url, "REDIS_URL": redis_url})
    broker = make_broker(settings.redis_url, settings=settings)
    assert is_rabbitmq(broker) and broker.confirm_delivery  # type: ignore[attr-defined]
    assert "guest:guest" not in repr(settings) and "guest" in settings.secrets
    broker.close()
    monkeypatch.setenv("SENDCLOUD_BROKER_URL", rabbitmq.url)
    producer = Producer(redis_url=redis_url)
    assert is_rabbitmq(producer.broker) and producer.broker.confirm_delivery  # type: ignore[attr-defined]
    producer.close()


def test_a_broker_url_that_is_not_amqp_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="SENDCLOUD_BROKER_URL: must start with amqp://"):
        Settings.from_env({"SENDCLOUD_BROKER_URL": "redis://127.0.0.1/0"})
    monkeypatch.setenv("SENDCLOUD_BROKER_URL", "http://rabbit:5672")
    with pytest.raises(ProducerValidationError, match="SENDCLOUD_BROKER_URL"):
        Producer(redis_url=redis_url)


def test_jobs_run_once_each_with_one_final_record(make: Any, rabbitmq: RabbitVhost) -> None:
    stack: Stack = make()
    code = stack.producer.send_code(mainland(1), "123456", sign_id=1)
    sms = stack.producer.send_sms(TEMPLATE_ID, [mainland(2), mainland(3)])
    again = stack.producer.send_code(mainland(1), "123456", sign_id=1, idempotency_key=code)
    assert again == code
    with stack.running():
        records = stack.wait_for_records([code, sms])
        time.sleep(0.3)  # a straggling copy (the second send_code) would show up by now
        records = stack.job_records()
    assert sorted(r["key"] for r in records) == sorted([code, sms])
    assert {r["outcome"] for r in records} == {"sent"}
    assert stack.ledger_by_request() == {
        (request_id(stack.redis, code), mainland(1)): 1,
        (request_id(stack.redis, sms), mainland(2)): 1,
        (request_id(stack.redis, sms), mainland(3)): 1,
    }
    # The second send_code found the job still queued and published a copy: it ran as a
    # copy of a busy or final job, never as a second send.
    assert rabbitmq.counts()[SMS_QUEUE] == (0, 0)


def test_a_failed_attempt_is_retried_through_rabbitmqs_delay_queue(make: Any) -> None:
    stack: Stack = make(retry_base_delay=0.2, retry_max_delay=0.5, job_max_attempts=20)
    stack.runner.sleep = lambda _s: None
    stack.sim.faults.set("/smsapi/sendCode", server_error_rate=1.0)
    key = stack.producer.send_code(mainland(4), "654321", sign_id=1)
    with stack.running():
        assert stack.wait_until(lambda: stack.redis.hget(record_key(key), "last_error"))
        stack.sim.faults.clear()
        [record] = stack.wait_for_records([key])
    assert record["outcome"] == "sent" and int(record["attempts"]) >= 2
    assert stack.ledger_by_request() == {(request_id(stack.redis, key), mainland(4)): 1}


def deferred(stack: Stack, clock: Clock) -> str:
    """Send to a phone that had its one message of the day, by ``clock``: a 498."""
    stack.sim.set_phone_limits(per_minute=None, per_day=1)
    first = stack.producer.send_sms(TEMPLATE_ID, [mainland(5)])
    assert stack.wait_for_records([first])
    key = stack.producer.send_sms(TEMPLATE_ID, [mainland(5)])
    assert stack.wait_until(lambda: stack.redis.hget(record_key(key), "due_at") is not None)
    return key


def test_a_long_deferral_is_parked_in_redis_and_sent_once_when_due(
    make: Any, rabbitmq: RabbitVhost
) -> None:
    # Two days back: the 498 defers the job to a Shanghai midnight that is already behind
    # Redis's clock, so the reconciler finds it due at once; no one waits for a day to pass.
    clock = Clock(offset=-2 * 86400)
    stack: Stack = make(clock=clock, sim=clock.simulator())
    with stack.running():
        key = deferred(stack, clock)
        record = stack.runner.ledger.get(key)
        assert record["state"] == "queued" and record.get("parked") == "1"
        assert "498" in record["last_error"]
        assert float(record["due_at"]) - clock() > stack.settings.park_after
        time.sleep(0.3)  # a delayed message, had one been made, would be held by now
        counts = rabbitmq.counts()
        assert counts and all(c == (0, 0) for c in counts.values()), counts
        assert stack.job_records() and len(stack.job_records()) == 1

        clock.travel(0.0)  # a new day for the simulator's daily limit
        summary = reconcile(stack).run_once()
        assert summary.redriven == [key]
        [_, record_2] = stack.wait_for_records([key])
        time.sleep(0.3)
        assert len(stack.job_records()) == 2
    assert record_2["key"] == key and record_2["outcome"] == "sent"
    assert stack.ledger_by_request()[(request_id(stack.redis, key), mainland(5))] == 1
    assert reconcile(stack).run_once().redriven == []


def test_without_parking_rabbitmq_holds_the_deferral_unacknowledged(
    make: Any, rabbitmq: RabbitVhost
) -> None:
    """What parking avoids: a long deferral as a delayed message sits unacknowledged in the
    worker, where RabbitMQ's consumer_timeout would requeue it."""
    clock = Clock(offset=-2 * 86400)
    stack: Stack = make(clock=clock, sim=clock.simulator(), park_after=10 * 86400)
    with stack.running():
        key = deferred(stack, clock)
        assert stack.runner.ledger.get(key).get("parked") is None
        assert stack.wait_until(
            lambda: rabbitmq.counts().get(f"{SMS_QUEUE}.DQ", (0, 0))[1] == 1, 10
        ), rabbitmq.counts()


def dead_letter(broker: dramatiq.Broker, client: redis.Redis, vhost: RabbitVhost,
                key: str) -> str:
    """A real worker runs an actor that fails for good until RabbitMQ dead-letters it; the
    message id."""

    def fails(job: dict[str, object]) -> None:
        raise InvalidRequestError("template does not exist", code=431, endpoint="smsapi/send")

    actor = broker.actors.get("fails") or dramatiq.actor(
        fails, broker=broker, queue_name=SMS_QUEUE, actor_name="fails", max_retries=0)
    dead = vhost.counts().get(f"{SMS_QUEUE}.XQ", (0, 0))[0]
    message = actor.send({"key": key, "phones": ["13800000000"]})
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        assert wait_until(lambda: vhost.counts().get(f"{SMS_QUEUE}.XQ", (0, 0))[0] == dead + 1
                          and client.exists(dlq.reason_key(message.message_id)), 20)
    finally:
        stop_worker(worker)
    return message.message_id


@pytest.fixture
def broker(redis_client: redis.Redis, rabbitmq: RabbitVhost) -> Iterator[dramatiq.Broker]:
    settings = Settings.from_env({"SENDCLOUD_BROKER_URL": rabbitmq.url})
    made = make_broker(None, redis_client=redis_client, settings=settings)
    yield made
    made.close()


REASON = "InvalidRequestError: template does not exist (statusCode 431 from smsapi/send)"


def test_dead_letters_are_listed_with_reason_and_kept_in_their_queue(
    broker: dramatiq.Broker, redis_client: redis.Redis, rabbitmq: RabbitVhost
) -> None:
    before = time.time()
    message_id = dead_letter(broker, redis_client, rabbitmq, "k-1")
    for _ in range(2):  # listing gives every letter back
        [letter] = rabbit.list_dead_letters(broker, redis_client)
        assert (letter.queue, letter.actor, letter.key) == (SMS_QUEUE, "fails", "k-1")
        assert letter.message_id == message_id and letter.reason == REASON
        assert before - 5 <= letter.dead_at <= time.time() + 5  # RabbitMQ's x-death time
    assert rabbitmq.counts()[f"{SMS_QUEUE}.XQ"] == (1, 0)


def test_replay_publishes_a_fresh_copy_and_keeps_letters_of_final_jobs(
    broker: dramatiq.Broker, redis_client: redis.Redis, rabbitmq: RabbitVhost
) -> None:
    open_id = dead_letter(broker, redis_client, rabbitmq, "k-open")
    redis_client.hset(record_key("k-done"), mapping={"state": "failed"})
    dead_letter(broker, redis_client, rabbitmq, "k-done")
    report = rabbit.replay(broker, redis_client, queue=SMS_QUEUE)
    assert [x.message_id for x in report.replayed] == [open_id]
    assert [x.key for x in report.final] == ["k-done"]
    counts = rabbitmq.counts()
    assert counts[SMS_QUEUE] == (1, 0) and counts[f"{SMS_QUEUE}.XQ"] == (1, 0)
    assert not redis_client.exists(dlq.reason_key(open_id))
    assert rabbit.purge(broker, redis_client, ids=["no-such-id"]) == 0
    assert rabbit.purge(broker, redis_client) == 1
    assert rabbitmq.counts()[f"{SMS_QUEUE}.XQ"] == (0, 0)


def test_the_dlq_command_on_rabbitmq(
    broker: dramatiq.Broker, redis_client: redis.Redis, redis_url: str, rabbitmq: RabbitVhost,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    message_id = dead_letter(broker, redis_client, rabbitmq, "cli-1")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SENDCLOUD_BROKER_URL", rabbitmq.url)
    assert main(["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["message_id"], listed["key"], listed["reason"]) == (message_id, "cli-1", REASON)
    assert main(["dlq", "replay", message_id]) == 0
    assert "1 message(s) replayed, 0 kept" in capsys.readouterr().out
    assert rabbitmq.counts()[SMS_QUEUE] == (1, 0)
    assert main(["dlq", "purge", "--yes"]) == 0
    assert "0 dead letter(s) purged" in capsys.readouterr().out


def depths(collector: QueueDepthCollector) -> dict[str, float]:
    return {f"{m.name}{s.labels.get('queue', '')}": s.value
            for m in collector.collect() for s in m.samples}


def test_queue_depths_are_read_from_rabbitmq(
    broker: dramatiq.Broker, redis_client: redis.Redis, rabbitmq: RabbitVhost
) -> None:
    dead_letter(broker, redis_client, rabbitmq, "k-x")
    producer = Producer(broker=broker, redis=redis_client)
    for i in range(3):
        producer.send_sms(TEMPLATE_ID, [mainland(10 + i)])
    read = depths(QueueDepthCollector(redis_client, broker=broker))
    assert read[RABBITMQ_UP] == 1
    assert read[f"sendcloud_queue_depth{SMS_QUEUE}"] == 3
    assert read[f"sendcloud_queue_depth{SMS_QUEUE}.XQ"] == 1
    assert read[f"sendcloud_queue_depth{CODES_QUEUE}"] == 0
    gone = make_broker(None, redis_client=redis_client, settings=Settings.from_env(
        {"SENDCLOUD_BROKER_URL": rabbitmq.url.rsplit("/", 1)[0] + "/no-such-vhost"}))
    assert depths(QueueDepthCollector(redis_client, broker=gone)) == {RABBITMQ_UP: 0}
