"""Dead-lettered messages: list them with their reason, replay them, purge them.

Dramatiq's RedisBroker moves a message that failed for good (a ``throws`` error or retries run
out) to a dead-letter queue of its canonical queue::

    <namespace>:<queue>.XQ        sorted set: redis message id, scored by when it died (ms)
    <namespace>:<queue>.XQ.msgs   hash: redis message id -> the encoded message

and drops it after the broker's ``dead_message_ttl`` (7 days by default).

The broker stores the message as it was *enqueued*, so the error of the final attempt is lost:
the ``traceback`` option, when present, is the one of the attempt before. ``DeadLetterReasons``
closes that gap: right after a nack it rewrites the dead-lettered copy with a one-line
``dead_letter_reason`` taken from the exception that killed it. Error messages in this product
never hold secrets (see worker/sendcloud/errors.py), so the reason is safe to store and print.

Replay is safe because every job is idempotent: its payload carries the idempotency key, and
SMS sends carry a stable sendRequestId. The same idempotency means a job whose record is already
final (it failed for good and wrote its result) would not run again, so replay leaves those in
the DLQ and says so; the letters it does replay are those that died before their job ended
(a bug, Redis lost mid-attempt, the poll actor).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from dramatiq import Broker, Middleware
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name
from dramatiq.message import Message

from producers.brokers import BROKER_NAMESPACE as NAMESPACE
from producers.contract import ALL_QUEUES, KEY_PREFIX
from producers.idempotency import FINAL_STATES, record_key
from producers.replies import reply_text

log = structlog.get_logger(__name__)

REASON_OPTION = "dead_letter_reason"
MAX_REASON_CHARS = 500
# Options that belong to one delivery; a replayed message starts afresh without them.
_DELIVERY_OPTIONS = (
    "redis_message_id",
    "eta",
    "retries",
    "traceback",
    "requeue_timestamp",
    REASON_OPTION,
)

# Rewrite the dead-lettered copy only if it is still there: a purge may have raced the nack.
_SET_IF_PRESENT = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
    redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


#: On RabbitMQ, where a dead letter cannot be rewritten, its reason is kept in Redis here, as
#: long as the letter lives (Dramatiq's dead-letter TTL, 7 days).
REASON_PREFIX = f"{KEY_PREFIX}dlq:reason:"
REASON_TTL_MS = 7 * 86_400_000


def reason_key(message_id: str) -> str:
    return f"{REASON_PREFIX}{message_id}"


def dead_letter_keys(namespace: str, queue: str) -> tuple[str, str]:
    """(sorted set, hash) holding the dead letters of ``queue``."""
    base = f"{namespace}:{q_name(queue)}.XQ"
    return base, f"{base}.msgs"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def exception_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason[:MAX_REASON_CHARS]


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    redis_id: str
    message_id: str
    actor: str
    key: str | None  # the job's idempotency key, from its payload
    reason: str
    dead_at: float  # epoch seconds
    retries: int
    message: Message | None  # None when the stored data cannot be decoded
    #: State of the job's idempotency record (None: no record, or not a keyed job).
    job_state: str | None = None

    @property
    def job_final(self) -> bool:
        """The job already has its final result: a replay would not run it again."""
        return self.job_state in FINAL_STATES

    @classmethod
    def parse(cls, queue: str, redis_id: str, data: bytes, score: float) -> DeadLetter:
        try:
            message = Message.decode(data)
        except Exception as exc:  # a foreign or corrupt entry must not hide the others
            return cls(
                queue=queue, redis_id=redis_id, message_id="?", actor="?", key=None,
                reason=f"undecodable message ({type(exc).__name__})", dead_at=score / 1000,
                retries=0, message=None,
            )  # fmt: skip
        options: dict[str, Any] = message.options
        reason = options.get(REASON_OPTION) or last_line(str(options.get("traceback") or ""))
        payload = message.args[0] if message.args else message.kwargs.get("job")
        key = payload.get("key") if isinstance(payload, dict) else None
        return cls(
            queue=queue,
            redis_id=redis_id,
            message_id=message.message_id,
            actor=message.actor_name,
            key=str(key) if key is not None else None,
            reason=reason or "unknown: no error was recorded with the message",
            dead_at=score / 1000,
            retries=int(options.get("retries", 0)),
            message=message,
        )


def _queues(queue: str | None) -> Sequence[str]:
    return ALL_QUEUES if queue is None else (q_name(queue),)


def list_dead_letters(
    client: redis.Redis,
    *,
    namespace: str = NAMESPACE,
    queue: str | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """Dead letters of one queue (or of every product queue), oldest first."""
    letters: list[DeadLetter] = []
    for name in _queues(queue):
        zset, msgs = dead_letter_keys(namespace, name)
        end = -1 if limit is None else limit - 1
        entries: list[Any] = list(client.zrange(zset, 0, end, withscores=True))
        if not entries:
            continue
        datas: list[Any] = list(client.hmget(msgs, [redis_id for redis_id, _ in entries]))
        for (redis_id, score), data in zip(entries, datas, strict=True):
            if data is not None:  # expired between the two reads
                letters.append(DeadLetter.parse(name, reply_text(redis_id), data, float(score)))
    letters.sort(key=lambda letter: letter.dead_at)
    letters = letters if limit is None else letters[:limit]
    return with_job_states(client, letters)


def with_job_states(client: redis.Redis, letters: list[DeadLetter]) -> list[DeadLetter]:
    keyed = [x for x in letters if x.key]
    if not keyed:
        return letters
    pipe = client.pipeline(transaction=False)
    for letter in keyed:
        pipe.hget(record_key(str(letter.key)), "state")
    states = {id(x): s for x, s in zip(keyed, pipe.execute(), strict=True)}
    return [
        dataclasses.replace(x, job_state=reply_text(states[id(x)])) if states.get(id(x)) else x
        for x in letters
    ]


def count_dead_letters(client: redis.Redis, namespace: str, queue: str) -> int:
    return int(client.zcard(dead_letter_keys(namespace, queue)[0]))


def _take(client: redis.Redis, namespace: str, letter: DeadLetter) -> tuple[bytes, float] | None:
    """Atomically remove one dead letter; None if someone else took it first."""
    zset, msgs = dead_letter_keys(namespace, letter.queue)
    pipe = client.pipeline(transaction=True)
    pipe.hget(msgs, letter.redis_id)
    pipe.zscore(zset, letter.redis_id)
    pipe.zrem(zset, letter.redis_id)
    pipe.hdel(msgs, letter.redis_id)
    data, score, _, _ = pipe.execute()
    if data is None:
        return None
    return data, float(score if score is not None else time.time() * 1000)


def _put_back(
    client: redis.Redis, namespace: str, letter: DeadLetter, taken: tuple[bytes, float]
) -> None:
    zset, msgs = dead_letter_keys(namespace, letter.queue)
    pipe = client.pipeline(transaction=True)
    pipe.hset(msgs, letter.redis_id, taken[0])
    pipe.zadd(zset, {letter.redis_id: taken[1]})
    pipe.execute()


def fresh_message(message: Message) -> Message:
    """The message as a producer would have sent it: canonical queue, no delivery options."""
    options = {k: v for k, v in message.options.items() if k not in _DELIVERY_OPTIONS}
    return Message(
        queue_name=q_name(message.queue_name),
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=message.message_id,
        message_timestamp=message.message_timestamp,
    )


def chosen(letter: DeadLetter, ids: Sequence[str] | None) -> bool:
    """Whether ``ids`` (none: every letter) names ``letter`` by message id or broker id."""
    return not ids or letter.message_id in ids or letter.redis_id in ids


def _select(letters: Iterable[DeadLetter], ids: Sequence[str] | None) -> list[DeadLetter]:
    return [x for x in letters if chosen(x, ids)]


@dataclass(frozen=True)
class ReplayReport:
    replayed: list[DeadLetter]
    #: Left in the DLQ: their job has a final result, so the worker would not run them again
    #: (idempotency); enqueue the job again under a new key, then purge these.
    final: list[DeadLetter]


def replay(
    broker: RedisBroker, *, queue: str | None = None, ids: Sequence[str] | None = None
) -> ReplayReport:
    """Re-enqueue dead letters (all of ``queue``, or those whose message id is in ``ids``).

    Each letter is removed from the DLQ before it is enqueued, so two operators replaying at
    once never double it; if the enqueue fails it is put back and the error is raised.
    """
    client, namespace = broker.client, broker.namespace
    replayed: list[DeadLetter] = []
    final: list[DeadLetter] = []
    for letter in _select(list_dead_letters(client, namespace=namespace, queue=queue), ids):
        if letter.message is None:
            continue  # undecodable: only purge can remove it
        if letter.job_final:
            final.append(letter)
            continue
        taken = _take(client, namespace, letter)
        if taken is None:
            continue
        try:
            broker.enqueue(fresh_message(letter.message))
        except BaseException:
            _put_back(client, namespace, letter, taken)
            raise
        log.info("dlq.replayed", queue=letter.queue, message_id=letter.message_id, key=letter.key)
        replayed.append(letter)
    return ReplayReport(replayed, final)


def purge(
    client: redis.Redis,
    *,
    namespace: str = NAMESPACE,
    queue: str | None = None,
    ids: Sequence[str] | None = None,
) -> int:
    """Delete dead letters for good; returns how many were removed."""
    removed = 0
    for letter in _select(list_dead_letters(client, namespace=namespace, queue=queue), ids):
        if _take(client, namespace, letter) is not None:
            removed += 1
    if removed:
        log.info("dlq.purged", queue=queue or "*", count=removed)
    return removed


class DeadLetterReasons(Middleware):
    """Store why a message died: on its dead-lettered copy (RedisBroker), or beside it in
    ``redis_client`` under :func:`reason_key` (RabbitMQ, whose letters cannot be rewritten)."""

    def __init__(self, redis_client: redis.Redis | None = None) -> None:
        self._script: Any = None
        self.redis = redis_client

    def after_nack(self, broker: Broker, message: Any) -> None:
        exc: BaseException | None = getattr(message, "_exception", None)
        if exc is not None:
            reason = exception_reason(exc)
        else:
            reason = last_line(str(message.options.get("traceback") or "")) or "rejected"
        if not isinstance(broker, RedisBroker):
            if self.redis is not None:
                self._keep_beside(message.message_id, reason)
            return
        redis_id = message.options.get("redis_message_id")
        if redis_id is None:
            return
        _, msgs = dead_letter_keys(broker.namespace, message.queue_name)
        data = message._message.copy(options={REASON_OPTION: reason}).encode()
        try:
            if self._script is None:
                self._script = broker.client.register_script(_SET_IF_PRESENT)
            self._script(keys=[msgs], args=[redis_id, data])
        except redis.RedisError as err:
            # The letter is already safe in the DLQ; only its reason is missing.
            log.warning("dlq.reason_not_stored", message_id=message.message_id, error=str(err))

    def _keep_beside(self, message_id: str, reason: str) -> None:
        assert self.redis is not None
        try:
            self.redis.set(reason_key(message_id), reason, px=REASON_TTL_MS)
        except redis.RedisError as err:
            log.warning("dlq.reason_not_stored", message_id=message_id, error=str(err))
