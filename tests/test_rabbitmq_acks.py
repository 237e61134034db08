"""Acks bound to their channel (worker.broker.rabbitmq_acks), on a real RabbitMQ.

After RabbitMQ closes a worker's connection, Dramatiq's worker settles a job that was running
on the old channel through the consumer it holds now. Delivery tags restart at 1 on every
channel, so the old tag names a delivery of the new channel: here, the copy of the same
message that RabbitMQ gave back. These tests settle the old delivery as the worker would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis

from producers.brokers import rabbitmq_broker
from tests.rabbitmq_server import RabbitVhost
from worker.broker import make_broker
from worker.settings import Settings

QUEUE = "sendcloud-acks"


def _next(consumer: Any) -> Any:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            return message
    raise AssertionError("no message delivered within 20 s")


def _eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _settle_across_a_cut(broker: dramatiq.Broker, vhost: RabbitVhost) -> tuple[Any, Any]:
    """A delivery on a channel RabbitMQ then closed, acked and nacked through the new one."""
    broker.declare_queue(QUEUE)
    broker.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="job", args=(), kwargs={},
                                    options={}))
    old = broker.consume(QUEUE, prefetch=1, timeout=500)
    first = _next(old)
    assert vhost.close_connections() > 0  # RabbitMQ requeues what the old channel held
    new = broker.consume(QUEUE, prefetch=1, timeout=500)
    again = _next(new)
    assert (again.message_id, again._tag) == (first.message_id, first._tag)
    new.ack(first)
    new.nack(first)
    new.close()  # the copy on the new channel was never settled by its own worker
    return first, again


def _queue_holds_one_ready(vhost: RabbitVhost) -> bool:
    counts = vhost.counts()
    return counts.get(QUEUE) == (1, 0) and counts.get(f"{QUEUE}.XQ", (0, 0)) == (0, 0)


def test_a_delivery_of_a_closed_channel_is_not_settled_on_the_new_one(
    rabbitmq: RabbitVhost, redis_client: redis.Redis
) -> None:
    settings = Settings.from_env({"SENDCLOUD_BROKER_URL": rabbitmq.url})
    broker = make_broker(None, redis_client=redis_client, settings=settings)
    try:
        _settle_across_a_cut(broker, rabbitmq)
        # Nothing was acked or dead-lettered: RabbitMQ gives the message back once more.
        assert _eventually(lambda: _queue_holds_one_ready(rabbitmq)), rabbitmq.counts()
    finally:
        broker.close()


def test_without_the_binding_the_old_tag_settles_another_delivery(rabbitmq: RabbitVhost) -> None:
    """The hazard is real: Dramatiq's own consumer acks the requeued copy, which is lost."""
    broker = rabbitmq_broker(rabbitmq.url)
    try:
        _settle_across_a_cut(broker, rabbitmq)
        assert _eventually(lambda: rabbitmq.counts().get(QUEUE) == (0, 0)), rabbitmq.counts()
    finally:
        broker.close()
