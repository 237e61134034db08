"""The queues on RabbitMQ: Dramatiq's RabbitmqBroker, and its dead letters.

With ``SENDCLOUD_BROKER_URL=amqp://...`` each product queue is a durable RabbitMQ queue, with
Dramatiq's two companions: ``<queue>.DQ`` for delayed messages (a retry; a worker holds it
unacknowledged until its time, then publishes it to ``<queue>`` and acks it) and ``<queue>.XQ``
for dead letters: a message nacked for good is dead-lettered there by RabbitMQ itself
(``x-dead-letter-routing-key``) and expires after Dramatiq's ``dead_message_ttl`` (7 days).
Every publish waits for RabbitMQ's confirm (``confirm_delivery=True``). A worker that dies
holds nothing: RabbitMQ gives its unacknowledged messages back as soon as its connection drops.

A delayed message held by a worker for longer than RabbitMQ's ``consumer_timeout`` (30 minutes
by default) makes RabbitMQ close that worker's channel and requeue everything it held, so long
waits never become delayed messages here: :mod:`worker.jobs.runner` parks them in Redis
(``SENDCLOUD_PARK_AFTER``) and the reconciler drives them when due.

Dead letters: RabbitMQ keeps a dead-lettered message as it was delivered, so the reason of its
final attempt is kept in Redis (``sendcloud:dlq:reason:<message id>``, as long as the letter)
by :class:`~worker.broker.dead_letters.DeadLetterReasons`. Listing a ``.XQ`` takes its
messages without acknowledging them and gives them all back at the end (RabbitMQ puts them
back where they were); replay publishes a fresh copy with a confirm before it acks the letter,
so a replay cut short leaves the letter, never loses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis
import structlog
from dramatiq import Broker
from dramatiq.common import xq_name

from producers.contract import ALL_QUEUES
from worker.broker.dead_letters import (
    DeadLetter,
    ReplayReport,
    chosen,
    fresh_message,
    reason_key,
    with_job_states,
)

log = structlog.get_logger(__name__)

@dataclasses.dataclass(frozen=True)
class _Held:
    letter: DeadLetter
    tag: int


def _dead_at(properties: Any) -> float:
    """When RabbitMQ dead-lettered the message: the newest ``x-death`` entry's time."""
    deaths = (getattr(properties, "headers", None) or {}).get("x-death") or []
    for death in deaths:
        when = death.get("time") if isinstance(death, dict) else None
        if isinstance(when, datetime):
            return when.timestamp()
    return 0.0


@contextmanager
def _taken(broker: Any, queue: str, limit: int | None) -> Iterator[tuple[Any, list[_Held]]]:
    """The dead letters of ``queue``, taken unacknowledged; whatever the block does not ack
    goes back to the queue when it ends."""
    import pika.exceptions

    broker.declare_queue(queue, ensure=True)
    try:
        channel = broker.connection.channel()
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError):
        del broker.connection  # closed by RabbitMQ since its last use: open a fresh one
        channel = broker.connection.channel()
    held: list[_Held] = []
    try:
        while limit is None or len(held) < limit:
            method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
            if method is None:
                break
            letter = DeadLetter.parse(queue, "", body, _dead_at(properties) * 1000)
            held.append(_Held(dataclasses.replace(letter, redis_id=letter.message_id),
                              method.delivery_tag))
        yield channel, held
    finally:
        if channel.is_open:
            channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            channel.close()


def _with_reasons(client: redis.Redis, letters: list[DeadLetter]) -> list[DeadLetter]:
    if not letters:
        return letters
    stored = client.mget([reason_key(x.message_id) for x in letters])
    return [
        dataclasses.replace(x, reason=r.decode() if isinstance(r, bytes) else r) if r else x
        for x, r in zip(letters, stored, strict=True)
    ]


def _queues(queue: str | None) -> Sequence[str]:
    return ALL_QUEUES if queue is None else (queue,)


def list_dead_letters(
    broker: Broker, client: redis.Redis, *, queue: str | None = None, limit: int | None = None
) -> list[DeadLetter]:
    """Dead letters of one queue (or of every product queue), oldest first, with the reason
    and job state Redis keeps for each."""
    letters: list[DeadLetter] = []
    for name in _queues(queue):
        with _taken(broker, name, limit) as (_, held):
            letters += [h.letter for h in held]
    letters.sort(key=lambda letter: letter.dead_at)
    letters = letters if limit is None else letters[:limit]
    return with_job_states(client, _with_reasons(client, letters))


def replay(
    broker: Broker, client: redis.Redis, *, queue: str | None = None,
    ids: Sequence[str] | None = None,
) -> ReplayReport:
    """Publish a fresh copy of each chosen letter whose job has not ended, then ack the letter.
    Letters whose job is final stay, as on Redis (see :mod:`worker.broker.dead_letters`)."""
    replayed: list[DeadLetter] = []
    final: list[DeadLetter] = []
    for name in _queues(queue):
        with _taken(broker, name, None) as (channel, held):
            letters = with_job_states(client, [h.letter for h in held])
            for h, letter in zip(held, letters, strict=True):
                if not chosen(letter, ids) or letter.message is None:
                    continue
                if letter.job_final:
                    final.append(letter)
                    continue
                broker.enqueue(fresh_message(letter.message))  # confirmed before the ack
                channel.basic_ack(h.tag)
                client.delete(reason_key(letter.message_id))
                log.info("dlq.replayed", queue=name, message_id=letter.message_id, key=letter.key)
                replayed.append(letter)
    return ReplayReport(replayed, final)


def purge(
    broker: Broker, client: redis.Redis, *, queue: str | None = None,
    ids: Sequence[str] | None = None,
) -> int:
    """Delete the chosen dead letters for good; how many were removed."""
    removed = 0
    for name in _queues(queue):
        with _taken(broker, name, None) as (channel, held):
            for h in held:
                if chosen(h.letter, ids):
                    channel.basic_ack(h.tag)
                    client.delete(reason_key(h.letter.message_id))
                    removed += 1
    if removed:
        log.info("dlq.purged", queue=queue or "*", count=removed)
    return removed
