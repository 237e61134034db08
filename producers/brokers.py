"""Which broker carries the queues: Redis (the default) or RabbitMQ.

``SENDCLOUD_BROKER_URL`` empty or unset: Dramatiq's ``RedisBroker`` on ``REDIS_URL``, the
queues beside the records. An ``amqp://`` (or ``amqps://``) URL, several joined by ``;`` for
the nodes of a cluster: Dramatiq's ``RabbitmqBroker`` with publisher confirms, so an enqueue
returns only once RabbitMQ has the message (a publish whose confirm never came raises, and is
published again by Dramatiq or, failing that, re-driven by the reconciler from the job's
record). Idempotency records, results, campaigns and limits stay in Redis either way.

RabbitMQ needs ``pika`` (``dramatiq[rabbitmq]``); it is imported only when a URL asks for it,
so a web app on Redis needs nothing more than dramatiq and redis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
from dramatiq.common import dq_name, xq_name

from producers.errors import ProducerValidationError

BROKER_URL_VARIABLE = "SENDCLOUD_BROKER_URL"
BROKER_SCHEMES = ("amqp://", "amqps://")
#: Prefix of the Redis broker's keys; workers serve this namespace only.
BROKER_NAMESPACE = "dramatiq"


def check_broker_url(url: str, variable: str = BROKER_URL_VARIABLE) -> str:
    """``url`` stripped, or a clear error naming ``variable`` when it is no AMQP URL."""
    url = url.strip()
    if url and not all(part.strip().startswith(BROKER_SCHEMES) for part in url.split(";")):
        raise ProducerValidationError(
            variable, f"must start with {', '.join(BROKER_SCHEMES)}, or be empty to keep the "
            "queues in Redis",
        )  # fmt: skip
    return url


def broker_url_from_env() -> str:
    """``$SENDCLOUD_BROKER_URL``, checked; empty when the queues live in Redis."""
    return check_broker_url(os.environ.get(BROKER_URL_VARIABLE, ""))


def rabbitmq_broker(
    url: str, *, middleware: list[dramatiq.Middleware] | None = None,
    broker_class: Callable[..., dramatiq.Broker] | None = None,
) -> dramatiq.Broker:
    """Dramatiq's RabbitmqBroker on ``url``, waiting for RabbitMQ's confirm of every publish.

    ``broker_class``: a subclass of RabbitmqBroker to build instead (the workers' own).
    """
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    parts = [part.strip() for part in check_broker_url(url).split(";") if part.strip()]
    return (broker_class or RabbitmqBroker)(
        url=parts if len(parts) > 1 else parts[0], confirm_delivery=True, middleware=middleware
    )


def is_rabbitmq(broker: dramatiq.Broker) -> bool:
    """Whether ``broker`` is a RabbitmqBroker, without importing pika when it cannot be one."""
    return any(cls.__name__ == "RabbitmqBroker" for cls in type(broker).__mro__)


def rabbitmq_depths(broker: Any, queues: Iterable[str]) -> dict[str, int]:
    """Messages ready in each queue, its ``.DQ`` and its ``.XQ`` on RabbitMQ.

    RabbitMQ counts ready messages only: those a consumer holds unacknowledged (being worked
    on, or a short delayed retry waiting in a worker) are not in these numbers. Declaring is
    idempotent with the broker's own arguments, so a queue no worker declared yet reads 0.
    Raises Dramatiq's ``ConnectionClosed`` when RabbitMQ cannot be reached.
    """
    import pika.exceptions
    from dramatiq.errors import ConnectionClosed

    depths: dict[str, int] = {}
    try:
        for queue in queues:
            ready, delayed, dead = broker.get_queue_message_counts(queue)
            depths.update({queue: ready, dq_name(queue): delayed, xq_name(queue): dead})
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
        del broker.connection  # the next reading opens a fresh one
        raise ConnectionClosed(exc) from None
    return depths
