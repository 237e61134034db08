"""The reconciler: every job a producer accepted reaches a final record, whatever was lost.

Messages can be lost where no retry sees it: a Redis restart while calls are in flight (the
finish, the release and the retry's enqueue all fail, and Dramatiq acks the message), retries
stranded in a live worker's ack set of a delay queue after a reconnect, a dead worker whose
messages wait for a broker sweep that runs by chance. The record survives all of these (it is
written with the same persistence as the queues), so the reconciler drives jobs from it.

Every job not yet final is in the sorted set ``sendcloud:reconcile``, scored by when it should
have moved on, in Redis time: the producer enters it (``created_at`` + queued_after), a claim
moves it to the end of its lease, a release to when its retry is due, and the finish removes
it. Each pass (``SENDCLOUD_RECONCILE_INTERVAL``) takes the jobs more than
``SENDCLOUD_RECONCILE_GRACE`` past due and, for each:

* final, or no record: dropped from the set;
* ``in_flight`` past its lease: its attempt died or stalled. A fresh message is enqueued; its
  claim takes the job over as an attempt whose outcome is unknown, and the stale attempt, if it
  wakes, is fenced off by its token (:mod:`worker.jobs.idempotency`);
* ``queued`` and parked (a long wait kept in the record, not in a queue: see
  :mod:`worker.jobs.runner`): its retry is due, and a fresh message is enqueued at once;
* ``queued``: while its queue has a backlog (its ready or delay list is not empty) the message
  may be waiting in it, and the job is looked at again a pass later, for at most
  ``SENDCLOUD_RECONCILE_QUEUED_AFTER``. Otherwise (the message is gone, or held in an ack set
  past its time), or once that is up, a fresh message is enqueued.

A fresh message is a copy of the job from its record, under a new message id. Duplicates are
harmless by design (the claim decides, and a final job acknowledges a copy without a call), so
the reconciler never needs to prove the old message gone, and the 1-hour rule holds for the
copy as for any retry. Passes take a short Redis lock, so one process reconciles at a time.

The bound: after a worker dies or Redis returns, a job is driven again within its lease (or
retry delay) + grace + interval; a stranded job behind a backlog that never empties, within
``SENDCLOUD_RECONCILE_QUEUED_AFTER`` more. Then its copy waits its turn in the queue.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import ConnectionClosed

from producers.brokers import is_rabbitmq, rabbitmq_depths
from producers.contract import KEY_PREFIX, RECONCILE_KEY
from producers.idempotency import FINAL_STATES, record_key
from worker import metrics
from worker.jobs.idempotency import FINAL_LUA_SET

log = structlog.get_logger("worker.jobs.reconciler")

LOCK_KEY = f"{KEY_PREFIX}reconcile:lock"
BATCH = 500

# KEYS: record, index. ARGV: job JSON, next due, member. The job's copy is replaced only while
# its record exists and is not final (a job that finished meanwhile needs nothing).
_REDRIVE_LUA = "local final = " + FINAL_LUA_SET + """
local state = redis.call('HGET', KEYS[1], 'state')
if (not state) or final[state] then
    redis.call('ZREM', KEYS[2], ARGV[3])
    return 0
end
redis.call('HSET', KEYS[1], 'job', ARGV[1])
redis.call('HDEL', KEYS[1], 'reconcile_waiting_since', 'parked')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class ReconcileSummary:
    looked_at: int = 0
    redriven: list[str] = field(default_factory=list)
    waiting: int = 0
    dropped: int = 0
    #: Jobs with no copy of their message to send again (records from before the copy).
    orphaned: list[str] = field(default_factory=list)
    locked_out: bool = False


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


class Reconciler:
    def __init__(
        self,
        client: redis.Redis,
        broker: dramatiq.Broker,
        *,
        grace: float,
        queued_after: float,
        interval: float,
    ) -> None:
        self.client = client
        self.broker = broker
        self.grace = grace
        self.queued_after = queued_after
        self.interval = interval
        self._unlock = client.register_script(_UNLOCK_LUA)
        self._mark = client.register_script(_REDRIVE_LUA)

    def run_once(self) -> ReconcileSummary:
        """One pass over the jobs past due (under the lock); what it found and did."""
        token = secrets.token_hex(8)
        lock_ms = max(1000, int(self.interval * 2000))
        if not self.client.set(LOCK_KEY, token, nx=True, px=lock_ms):
            return ReconcileSummary(locked_out=True)
        try:
            return self._pass()
        finally:
            self._unlock(keys=[LOCK_KEY], args=[token])

    def _pass(self) -> ReconcileSummary:
        summary = ReconcileSummary()
        now = redis_now(self.client)
        due = self.client.zrangebyscore(RECONCILE_KEY, "-inf", now - self.grace, 0, BATCH)
        for raw_key in due:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            summary.looked_at += 1
            self._reconcile(key, now, summary)
        if summary.redriven or summary.orphaned:
            log.warning("reconcile.pass", looked_at=summary.looked_at,
                        redriven=len(summary.redriven), waiting=summary.waiting,
                        dropped=summary.dropped, orphaned=len(summary.orphaned))
        return summary

    def _reconcile(self, key: str, now: float, summary: ReconcileSummary) -> None:
        state, lease_until, raw_job, created_at, parked = (
            _text(v) for v in self.client.hmget(
                record_key(key), "state", "lease_until", "job", "created_at", "parked"
            )
        )
        if state is None or state in FINAL_STATES:
            self.client.zrem(RECONCILE_KEY, key)
            summary.dropped += 1
            return
        if state == "in_flight" and float(lease_until or 0) > now - self.grace:
            # Claimed again since this pass read the set: the claim moved its due time.
            return
        if raw_job is None:
            log.error("reconcile.no_copy", job_key=key, state=state)
            summary.orphaned.append(key)
            self.client.zadd(RECONCILE_KEY, {key: now + self.queued_after})
            return
        job: dict[str, Any] = json.loads(raw_job)
        # A parked job has no message anywhere: its copy is due now, whatever the backlog.
        if (state == "queued" and not parked and self._waiting(job)
                and not self._waited_too_long(key, now)):
            # Looked at again soon: once the backlog is gone, a stranded job is found.
            summary.waiting += 1
            self.client.zadd(RECONCILE_KEY, {key: now + max(self.grace, self.interval)})
            return
        if self._redrive(key, job, float(created_at or now), now):
            metrics.record_redriven(state)
            summary.redriven.append(key)
        else:
            summary.dropped += 1

    def _waiting(self, job: dict[str, Any]) -> bool:
        """Whether the job's message may still sit in a backlog a worker will reach: its
        queue's ready or delay list is not empty. (The RedisBroker files each enqueue under a
        fresh id, so a message cannot be looked up by its own.) With both lists empty, a job
        still queued past due is held nowhere a worker will look: lost, or stranded in an ack
        set. On RabbitMQ, the messages ready in the queue and its delay queue count (one held
        by a consumer is not: if its worker dies RabbitMQ gives it back, and a copy is harmless
        anyway). On other brokers, never assumed."""
        queue = str(job.get("queue") or "")
        if not queue:
            return False
        if is_rabbitmq(self.broker):
            try:
                depths = rabbitmq_depths(self.broker, [queue])
            except ConnectionClosed:
                return False  # the copy's enqueue will say whether RabbitMQ is back
            return depths[queue] + depths[dramatiq.common.dq_name(queue)] > 0
        if not isinstance(self.broker, RedisBroker):
            return False
        namespace = self.broker.namespace
        with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(f"{namespace}:{queue}")
            pipe.llen(f"{namespace}:{dramatiq.common.dq_name(queue)}")
            return any(pipe.execute())

    def _waited_too_long(self, key: str, now: float) -> bool:
        """A backlog that never empties (a queue always busy, or a delay queue whose consumer
        is gone) must not hide a stranded job for ever: past due and seen waiting for longer
        than ``queued_after``, the job is driven again all the same. The mark is cleared by
        the job's next claim or re-drive."""
        field = "reconcile_waiting_since"
        self.client.hsetnx(record_key(key), field, repr(now))
        since = _text(self.client.hget(record_key(key), field))
        return since is not None and now - float(since) > self.queued_after

    def _redrive(self, key: str, job: dict[str, Any], created_at: float, now: float) -> bool:
        payload = dict(job["payload"])
        # The copy carries the times of the original, by Redis's clock: a code keeps its expiry.
        payload["enqueued_at"] = created_at
        if "expires_in" in payload:
            payload["expires_at"] = created_at + float(payload["expires_in"])
        queue = str(job.get("queue") or "")
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=str(job["actor"]), args=(payload,), kwargs={},
            options={},
        )
        job["message_id"] = message.message_id
        # The copy is recorded before it is sent: if the enqueue fails, the next pass finds the
        # new id nowhere and tries again.
        marked = self._mark(
            keys=[record_key(key), RECONCILE_KEY],
            args=[json.dumps(job, separators=(",", ":")),
                  repr(now + max(self.queued_after, self.grace)), key],
        )
        if not marked:
            return False
        self.broker.enqueue(message)
        log.warning("reconcile.redriven", job_key=key, message_id=message.message_id)
        return True
