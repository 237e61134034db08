"""Idempotency records shared by producers and workers, with Stripe's semantics.

One Redis hash per job, written by the producer when the job is reserved and updated by the
worker as it runs it. The layout (the worker's claim / release / complete use the same one):

* key: ``sendcloud:idem:<idempotency key>`` (:data:`RECORD_PREFIX` + key; see :func:`record_key`).
  A member call split at 1000 members has one record per part, keyed ``<key>:part<i>``.
* fields (all strings, as Redis stores them):

  ``hash``        sha256 hex of the canonical JSON payload (:func:`payload_hash`): sorted keys,
                  ``separators=(",", ":")``, ``ensure_ascii=False``, UTF-8, without the fields in
                  :data:`HASH_EXCLUDED_FIELDS` (``key``, ``enqueued_at``, ``expires_at``,
                  ``expires_in``).
  ``kind``        one of ``contract.Kind``: sms, code, voice_code, members_add, ...
  ``state``       ``queued`` (set here) → ``in_flight`` → ``done`` | ``failed`` | ``expired`` |
                  ``needs_review`` (set by the worker).
  ``created_at``  epoch seconds as decimal text, e.g. ``1732300000.123456``.
  ``updated_at``  same format; the producer sets it equal to ``created_at``.
  ``result``      JSON text of the final result, written by the worker; absent until then.
  ``reservers``   reservations made while the record was ``queued`` (1 at creation): a
                  reservation WAIT did not cover is taken back only if no other call has
                  reserved the record since (see :data:`_UNDO_LUA`).

* TTL: set once, at creation, to the producer's ``idempotency_ttl`` (default 24 h); a
  re-reservation does not extend it.

:meth:`IdempotencyStore.reserve` is a single Lua script: absent → created as ``queued``;
present with another hash → :class:`~producers.errors.IdempotencyConflict`; present with the same
hash → the current state. A record without a ``hash`` field (written by a worker that found no
record) is adopted: it takes the caller's hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis

from producers.contract import DEFAULT_QUEUED_AFTER, KEY_PREFIX, RECONCILE_KEY
from producers.errors import IdempotencyConflict
from producers.redis_client import DEFAULT_WAIT_TIMEOUT_MS
from producers.replication import NotReplicated, run_replicated
from producers.replies import reply_text

RECORD_PREFIX = f"{KEY_PREFIX}idem:"
HASH_EXCLUDED_FIELDS = frozenset({"key", "enqueued_at", "expires_at", "expires_in"})

FIELD_HASH = "hash"
FIELD_KIND = "kind"
FIELD_STATE = "state"
FIELD_CREATED_AT = "created_at"
FIELD_UPDATED_AT = "updated_at"
FIELD_RESULT = "result"

STATE_QUEUED = "queued"
STATE_IN_FLIGHT = "in_flight"
STATE_DONE = "done"
STATE_FAILED = "failed"
STATE_EXPIRED = "expired"
STATE_NEEDS_REVIEW = "needs_review"
FINAL_STATES = frozenset({STATE_DONE, STATE_FAILED, STATE_EXPIRED, STATE_NEEDS_REVIEW})

DEFAULT_TTL = 86400

# KEYS: the reconcile index, then record keys. ARGV: ttl, queued_after, then (hash, kind, job)
# per key. All keys are checked before any is written, so a conflict on one part of a split
# call reserves none of them. Time is Redis's: every decision about time uses one clock.
_RESERVE_LUA = """
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local due = tonumber(t[1]) + tonumber(ARGV[2])
local states = {}
for i = 2, #KEYS do
    local key = KEYS[i]
    local stored = redis.call('HMGET', key, 'hash', 'state')
    local wanted = ARGV[3 * i - 3]
    if stored[2] then
        if stored[1] and stored[1] ~= wanted then
            return {'conflict', i - 1}
        end
        states[i] = stored[2]
    end
end
local out = {'ok', now}
for i = 2, #KEYS do
    local key = KEYS[i]
    if states[i] then
        if not redis.call('HGET', key, 'hash') then
            redis.call('HSET', key, 'hash', ARGV[3 * i - 3])
        end
        if states[i] == 'queued' then
            -- A write of this call's own: its WAIT then covers the record it will enqueue for,
            -- and an undo by the call that created it leaves the record to this one.
            redis.call('HINCRBY', key, 'reservers', 1)
        end
        out[#out + 1] = '0'
        out[#out + 1] = states[i]
    else
        redis.call('HSET', key, 'hash', ARGV[3 * i - 3], 'kind', ARGV[3 * i - 2],
                   'state', 'queued', 'created_at', now, 'updated_at', now, 'reservers', 1)
        if ARGV[3 * i - 1] ~= '' then
            redis.call('HSET', key, 'job', ARGV[3 * i - 1])
            redis.call('ZADD', KEYS[1], due, string.sub(key, #RECORD_PREFIX + 1))
        end
        redis.call('EXPIRE', key, ttl)
        out[#out + 1] = '1'
        out[#out + 1] = 'queued'
    end
end
return out
"""


# KEYS: the reconcile index, then the records a reservation created. ARGV: their hashes.
# Takes back a reservation whose records too few replicas acknowledged: nothing was enqueued
# for them, and no worker can have claimed them (the reconciler waits queued_after first).
# A record another call reserved meanwhile (``reservers`` > 1) may have a message: it stays.
_UNDO_LUA = """
for i = 2, #KEYS do
    local stored = redis.call('HMGET', KEYS[i], 'hash', 'state', 'fence', 'reservers')
    if stored[1] == ARGV[i - 1] and stored[2] == 'queued' and not stored[3] then
        if tonumber(stored[4] or '1') > 1 then
            redis.call('HINCRBY', KEYS[i], 'reservers', -1)
        else
            redis.call('DEL', KEYS[i])
            redis.call('ZREM', KEYS[1], string.sub(KEYS[i], #RECORD_PREFIX + 1))
        end
    end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    created: bool  # this call created the record
    state: str
    #: Redis's time when the reservation was made (epoch seconds).
    now: float = field(default=0.0, compare=False)

    @property
    def should_enqueue(self) -> bool:
        """Still queued: either new, or a previous attempt may have died before enqueueing.

        A duplicate message is harmless; the worker's claim lets only one run.
        """
        return self.created or self.state == STATE_QUEUED


def job_copy(message: dramatiq.Message[Any]) -> dict[str, Any]:
    """What a record keeps of its job's message, so that a lost message can be sent again."""
    (payload,) = message.args
    return {"actor": message.actor_name, "queue": message.queue_name,
            "message_id": message.message_id, "payload": payload}


def record_key(key: str) -> str:
    return RECORD_PREFIX + key


def canonical_text(payload: Mapping[str, Any]) -> str:
    """The payload's fields that identify the job, as the JSON text :func:`payload_hash` hashes."""
    body = {name: value for name, value in payload.items() if name not in HASH_EXCLUDED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    return canonical_text(payload).encode()


def payload_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def decode_record(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any] | None:
    """A record as HGETALL returned it, with text fields, float timestamps, decoded result."""
    if not raw:
        return None
    record: dict[str, Any] = {reply_text(name): reply_text(value) for name, value in raw.items()}
    for name in (FIELD_CREATED_AT, FIELD_UPDATED_AT):
        if name in record:
            record[name] = float(record[name])
    if FIELD_RESULT in record:
        record[FIELD_RESULT] = json.loads(record[FIELD_RESULT])
    return record


class IdempotencyStore:
    """Reservations and reads of job records. With ``wait_replicas`` > 0 (Sentinel), a
    reservation that created a record returns only once that many replicas have it, else raises
    :class:`~producers.replication.NotReplicated` before anything is enqueued."""

    def __init__(
        self, client: redis.Redis, *, queued_after: int = DEFAULT_QUEUED_AFTER,
        wait_replicas: int = 0, wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS,
    ) -> None:
        self.client = client
        self.queued_after = queued_after
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._reserve = client.register_script(
            _RESERVE_LUA.replace("#RECORD_PREFIX", str(len(RECORD_PREFIX)))
        )
        self._undo = client.register_script(
            _UNDO_LUA.replace("#RECORD_PREFIX", str(len(RECORD_PREFIX)))
        )

    def reserve(
        self,
        key: str,
        payload_hash: str,
        kind: str,
        ttl: int = DEFAULT_TTL,
        *,
        job: Mapping[str, Any] | None = None,
    ) -> Reservation:
        jobs = None if job is None else [job]
        return self.reserve_many([(key, payload_hash)], kind, ttl, jobs=jobs)[0]

    def reserve_many(
        self,
        items: Sequence[tuple[str, str]],
        kind: str,
        ttl: int = DEFAULT_TTL,
        *,
        jobs: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Reservation]:
        """Reserve (key, payload hash) pairs all-or-nothing, in one round trip.

        ``jobs`` (one per item: ``{"actor": name, "payload": {...}}``) are kept in the new
        records, and the records entered in the reconcile index, so that a job whose message is
        lost is driven again (worker.jobs.reconciler). Raises NotReplicated (nothing reserved)
        when too few replicas acknowledged it in time, IdempotencyConflict naming the
        first key already used for another payload.
        """
        if ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        if jobs is not None and len(jobs) != len(items):
            raise ValueError("jobs must hold one job per item")
        args: list[str | int] = [int(ttl), self.queued_after]
        for index, (_, digest) in enumerate(items):
            job = "" if jobs is None else json.dumps(jobs[index], separators=(",", ":"))
            args += [digest, kind, job]
        keys = [RECONCILE_KEY, *(record_key(key) for key, _ in items)]
        reply, acknowledged = run_replicated(
            self.client, self._reserve, keys, args,
            replicas=self.wait_replicas, timeout_ms=self.wait_timeout_ms,
        )  # fmt: skip
        status = reply_text(reply[0])
        if status == "conflict":
            raise IdempotencyConflict(items[int(reply[1]) - 1][0])
        now = float(reply[1])
        pairs = reply[2:]
        reservations = [
            Reservation(created=reply_text(pairs[i]) == "1", state=reply_text(pairs[i + 1]),
                        now=now)
            for i in range(0, len(pairs), 2)
        ]
        if acknowledged < self.wait_replicas:
            # A record only on the primary may vanish in a failover while its message runs:
            # take back what this call created, so the caller's error means nothing happened.
            created = [(key, digest) for (key, digest), made in zip(items, reservations,
                                                                     strict=True) if made.created]
            if created:
                self._undo(keys=[RECONCILE_KEY, *(record_key(k) for k, _ in created)],
                           args=[digest for _, digest in created])
            raise NotReplicated(f"the reservation of {items[0][0]!r}", acknowledged,
                                self.wait_replicas)
        return reservations

    def get(self, key: str) -> dict[str, Any] | None:
        """The decoded record for ``key``, or None if there is none (never made, or expired)."""
        return decode_record(self.client.hgetall(record_key(key)))

    def get_result(self, key: str) -> Any:
        """The worker's final result for ``key``, or None while there is none."""
        raw = self.client.hget(record_key(key), FIELD_RESULT)
        return None if raw is None else json.loads(raw)
