"""``DeadLetterQueues``: the dead letters of whichever broker holds the queues, behind one face.

``sendcloud-jobs dlq`` and the dashboard's dead-letter page both list, replay and purge through
it, so neither decides on its own whether the letters live in Redis (``dramatiq:<q>.XQ``,
:mod:`worker.broker.dead_letters`) or RabbitMQ (``<q>.XQ``, :mod:`worker.broker.rabbitmq`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

import redis
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker

from worker.broker import dead_letters as dlq
from worker.broker import make_broker
from worker.broker import rabbitmq as rabbit
from worker.settings import Settings


class DeadLetterQueues:
    """Dead letters on ``client``'s Redis, or in RabbitMQ when ``settings.broker_url`` is set.

    The broker a replay enqueues on is made on first use and closed by :meth:`close`.
    """

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self._broker: Broker | None = None
        self._lock = threading.Lock()  # the dashboard calls from several threads

    def broker(self) -> Broker:
        with self._lock:
            if self._broker is None:
                self._broker = make_broker(None, redis_client=self.client,
                                           settings=self.settings)
            return self._broker

    def list(self, *, queue: str | None = None, ids: Sequence[str] | None = None,
             limit: int | None = None) -> list[dlq.DeadLetter]:
        """Oldest first, each with its reason and its job's state."""
        if self.settings.rabbitmq:
            letters = rabbit.list_dead_letters(self.broker(), self.client, queue=queue,
                                               limit=limit)
        else:
            letters = dlq.list_dead_letters(self.client, namespace=dlq.NAMESPACE, queue=queue,
                                            limit=limit)
        return [x for x in letters if dlq.chosen(x, ids or None)]

    def replay(self, *, queue: str | None = None,
               ids: Sequence[str] | None = None) -> dlq.ReplayReport:
        """Re-enqueue the chosen letters whose job has not ended; keep the others."""
        broker = self.broker()
        if self.settings.rabbitmq:
            return rabbit.replay(broker, self.client, queue=queue, ids=ids or None)
        assert isinstance(broker, RedisBroker)
        return dlq.replay(broker, queue=queue, ids=ids or None)

    def purge(self, *, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
        """Delete the chosen letters for good; how many were removed."""
        if self.settings.rabbitmq:
            return rabbit.purge(self.broker(), self.client, queue=queue, ids=ids or None)
        return dlq.purge(self.client, namespace=dlq.NAMESPACE, queue=queue, ids=ids or None)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None

    def __enter__(self) -> DeadLetterQueues:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
