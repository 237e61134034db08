"""The broker the workers (and producers, in tests and the demo) use, with its middleware:
Dramatiq's RedisBroker, or its RabbitmqBroker when ``SENDCLOUD_BROKER_URL`` is set (see
:mod:`worker.broker.rabbitmq`).

Middleware, in order:

1. ``JobContext``: every log line of a job carries its key, message id and actor.
2. ``TimeLimit`` (``SENDCLOUD_JOB_LEASE``): an attempt stuck longer than its claim's lease is
   interrupted and retried; the retry takes its own claim over as an attempt whose outcome is
   unknown (:mod:`worker.jobs.idempotency`), as another copy could once the lease ran out.
3. ``ReconciledRetries``: retries only what :mod:`worker.jobs` tells it to (see there); a
   retry that cannot be enqueued while Redis is away is left to the reconciler.
4. ``CurrentMessage``: actors read their Dramatiq message id, the owner of the job's claim.
5. ``DeadLetterReasons``: a dead-lettered message keeps why it died.

``ShutdownNotifications`` is left out on purpose: on SIGTERM a worker finishes the calls it has
in flight instead of interrupting them halfway, which would leave their outcome unknown.

A job's finish acknowledges its message in the same Lua script as its final record
(:class:`FinishAckingRedisBroker`): one round trip fewer a job, a tenth of a worker's
throughput. The consumer skips its own ack of such a message; every other message, and every
message not found where Dramatiq keeps it, is acked or nacked by Dramatiq as usual.

Redelivery after a crash: the RedisBroker gives the messages of a worker that stopped
heartbeating for ``SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT`` seconds to the others, during "queue
maintenance", which runs on ``SENDCLOUD_BROKER_MAINTENANCE_CHANCE`` out of a million Redis
commands. Workers poll often, so that is a few seconds after the timeout in practice.

Holds the broker factory (here), ``job_context`` (log context middleware), ``retries``,
``rabbitmq_acks`` (acks bound to the channel that delivered the message), ``rabbitmq``,
``dead_letters`` (reasons, listing and replay) and ``redis_checks``. May import the process
plumbing and ``producers``; nothing of jobs or SendCloud.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq import Broker
from dramatiq.broker import Consumer
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import CurrentMessage, Middleware, TimeLimit

from producers.brokers import BROKER_NAMESPACE, rabbitmq_broker
from worker.broker.dead_letters import DeadLetterReasons
from worker.broker.job_context import JobContext
from worker.broker.retries import ReconciledRetries
from worker.settings import Settings


def broker_middleware(
    settings: Settings, redis_client: redis.Redis | None = None
) -> list[Middleware]:
    return [
        JobContext(),
        TimeLimit(time_limit=int(settings.job_lease * 1000)),
        ReconciledRetries(
            max_retries=settings.job_max_attempts,
            min_backoff=int(settings.retry_base_delay * 1000),
            max_backoff=int(settings.retry_max_delay * 1000),
        ),
        CurrentMessage(),
        DeadLetterReasons(redis_client),
    ]


class RedisUnreachable(BrokerConnectionError, redis.ConnectionError):
    """Redis went away during a broker command: Dramatiq's connection error and redis-py's."""


class ReconnectingRedisBroker(RedisBroker):
    """The RedisBroker, whose commands fail with :class:`RedisUnreachable` while Redis is away.

    Dramatiq's consumer threads reconnect on its own BrokerConnectionError but treat redis-py's
    ConnectionError from an enqueue (a delayed message coming due) as unexpected, and then
    requeue their held messages: that raises again, uncaught, and the thread dies; the worker
    lives on without consuming that queue. Raised as both, the error takes Dramatiq's reconnect
    path, and every handler written for redis-py's error still catches it.
    """

    def __getattr__(self, name: str) -> Callable[..., Any]:
        command = super().__getattr__(name)

        def call(*args: Any) -> Any:
            try:
                return command(*args)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise RedisUnreachable(str(exc)) from exc

        return call


class FinishAckingRedisBroker(ReconnectingRedisBroker):
    """A job's finish script acknowledges its message too, one round trip fewer a job.

    :meth:`ack_in_finish` says where Dramatiq's dispatch script keeps a fetched message: the
    worker's ack set ``<namespace>:__acks__.<broker id>.<queue>`` and the queue's message hash
    ``<namespace>:<queue>.msgs``. The finish removes the message from both only if it finds it
    in both, and says so; the consumer then skips its own ack of that message. Where it does not
    (a message from another queue, a Dramatiq that keeps its messages elsewhere) the consumer
    acks as usual, so the guess is checked on every job and never costs a message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Messages whose finish acknowledged them, until their consumer's ack (or nack) call,
        #: by queue and Redis id: Dramatiq's message id is shared by a delayed message and the
        #: copy it becomes, and by a retry and its original.
        self.acked_in_finish: set[tuple[str, str]] = set()

    @property
    def consumer_class(self) -> Any:
        return _finish_acked_consumer(super().consumer_class)

    def ack_in_finish(self, message: Any) -> FinishAck | None:
        """Where ``message`` waits for its ack, for the job's finish
        (``worker.jobs.idempotency.BrokerAck``); None without its Redis id."""
        if not message.options.get("redis_message_id"):
            return None
        queue, redis_id = mark = _mark(message)
        return FinishAck(f"{self.namespace}:__acks__.{self.broker_id}.{queue}",
                         f"{self.namespace}:{queue}.msgs", redis_id, self.acked_in_finish, mark)


def _mark(message: Any) -> tuple[str, str]:
    return message.queue_name, str(message.options.get("redis_message_id"))


@dataclass(frozen=True)
class FinishAck:
    acks_key: str
    messages_key: str
    message_id: str
    acked: set[tuple[str, str]]
    mark: tuple[str, str]

    def done(self) -> None:
        self.acked.add(self.mark)


_finish_acked_consumers: dict[type[Consumer], type[Consumer]] = {}


def _finish_acked_consumer(base: type[Consumer]) -> type[Consumer]:
    """Dramatiq's Redis consumer, skipping its ack of a message its finish acknowledged."""
    made = _finish_acked_consumers.get(base)
    if made is not None:
        return made

    def ack(self: Any, message: Any) -> None:
        mark, acked = _mark(message), self.broker.acked_in_finish
        if mark in acked:
            acked.discard(mark)
            outstanding = getattr(self, "queued_message_ids", None)
            if outstanding is not None:
                outstanding.discard(message.message_id)  # what Dramatiq's ack does besides Redis
                return
        base.ack(self, message)  # a no-op in Redis for a message the finish acknowledged

    def nack(self: Any, message: Any) -> None:
        self.broker.acked_in_finish.discard(_mark(message))
        base.nack(self, message)

    made = _finish_acked_consumers[base] = type(f"FinishAcked{base.__name__}", (base,),
                                                 {"ack": ack, "nack": nack})
    return made


def make_broker(
    redis_url: str | None,
    *,
    redis_client: redis.Redis | None = None,
    settings: Settings | None = None,
    namespace: str = BROKER_NAMESPACE,
) -> Broker:
    """The queues' broker: a RabbitmqBroker when ``settings.broker_url`` is set
    (:mod:`worker.broker.rabbitmq`), else a RedisBroker on ``redis_client`` if given, else on
    ``redis_url``.

    ``namespace`` prefixes the Redis broker's keys: workers serve ``dramatiq`` only, so a broker
    in another namespace (the demo's) is served by no deployed worker. On RabbitMQ the Redis
    client (or URL) is where dead letters' reasons are kept. Under Redis Sentinel the client is
    required (``worker.connections.redis_client``): a URL names one fixed server.
    """
    if redis_client is None and not redis_url:
        raise ValueError("make_broker needs a redis_url or a redis_client")
    settings = settings or Settings.from_env()
    if redis_client is None and settings.redis_sentinels:
        raise ValueError("under Redis Sentinel make_broker needs the redis_client that "
                         "worker.connections makes, which follows the master")
    if settings.rabbitmq:
        from worker.broker.rabbitmq_acks import ChannelBoundRabbitmqBroker

        client = redis_client or redis.Redis.from_url(str(redis_url))
        return rabbitmq_broker(settings.broker_url, middleware=broker_middleware(settings, client),
                               broker_class=ChannelBoundRabbitmqBroker)
    return FinishAckingRedisBroker(
        url=None if redis_client is not None else redis_url,
        client=redis_client,
        middleware=broker_middleware(settings),
        heartbeat_timeout=int(settings.broker_heartbeat_timeout * 1000),
        maintenance_chance=settings.broker_maintenance_chance,
        namespace=namespace,
    )
