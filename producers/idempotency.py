"""Idempotency records shared by producers and workers, with Stripe's semantics.

One Redis hash per job, written by the producer when the job is reserved and updated by the
worker as it runs it. The layout (the worker's claim / release / complete use the same one):

* key: ``sendcloud:idem:<idempotency key>`` (:data:`RECORD_PREFIX` + key; see :func:`record_key`).
  A member call split at 1000 members has one record per part, keyed ``<key>:part<i>``.
* fields (all strings, as Redis stores them):

  ``hash``        sha256 hex of the canonical JSON payload (:func:`payload_hash`): sorted keys,
                  ``separators=(",", ":")``, ``ensure_ascii=False``, UTF-8, without the fields in
                  :data:`HASH_EXCLUDED_FIELDS` (``key``, ``enqueued_at``, ``expires_at``).
  ``kind``        one of ``contract.Kind``: sms, code, voice_code, members_add, ...
  ``state``       ``queued`` (set here) → ``in_flight`` → ``done`` | ``failed`` | ``expired`` |
                  ``needs_review`` (set by the worker).
  ``created_at``  epoch seconds as decimal text, e.g. ``1732300000.123456``.
  ``updated_at``  same format; the producer sets it equal to ``created_at``.
  ``result``      JSON text of the final result, written by the worker; absent until then.

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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from producers.contract import KEY_PREFIX
from producers.errors import IdempotencyConflict

RECORD_PREFIX = f"{KEY_PREFIX}idem:"
HASH_EXCLUDED_FIELDS = frozenset({"key", "enqueued_at", "expires_at"})

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

# KEYS: record keys. ARGV: ttl, now, then (hash, kind) per key.
# All keys are checked before any is written, so a conflict on one part of a split call
# reserves none of them.
_RESERVE_LUA = """
local ttl = tonumber(ARGV[1])
local now = ARGV[2]
local states = {}
for i, key in ipairs(KEYS) do
    local stored = redis.call('HMGET', key, 'hash', 'state')
    local wanted = ARGV[1 + 2 * i]
    if stored[2] then
        if stored[1] and stored[1] ~= wanted then
            return {'conflict', i}
        end
        states[i] = stored[2]
    end
end
local out = {'ok'}
for i, key in ipairs(KEYS) do
    if states[i] then
        if not redis.call('HGET', key, 'hash') then
            redis.call('HSET', key, 'hash', ARGV[1 + 2 * i])
        end
        out[#out + 1] = '0'
        out[#out + 1] = states[i]
    else
        redis.call('HSET', key, 'hash', ARGV[1 + 2 * i], 'kind', ARGV[2 + 2 * i],
                   'state', 'queued', 'created_at', now, 'updated_at', now)
        redis.call('EXPIRE', key, ttl)
        out[#out + 1] = '1'
        out[#out + 1] = 'queued'
    end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    created: bool  # this call created the record
    state: str

    @property
    def should_enqueue(self) -> bool:
        """Still queued: either new, or a previous attempt may have died before enqueueing.

        A duplicate message is harmless; the worker's claim lets only one run.
        """
        return self.created or self.state == STATE_QUEUED


def record_key(key: str) -> str:
    return RECORD_PREFIX + key


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    body = {name: value for name, value in payload.items() if name not in HASH_EXCLUDED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def payload_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_record(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any] | None:
    """A record as HGETALL returned it, with text fields, float timestamps, decoded result."""
    if not raw:
        return None
    record: dict[str, Any] = {_text(name): _text(value) for name, value in raw.items()}
    for name in (FIELD_CREATED_AT, FIELD_UPDATED_AT):
        if name in record:
            record[name] = float(record[name])
    if FIELD_RESULT in record:
        record[FIELD_RESULT] = json.loads(record[FIELD_RESULT])
    return record


class IdempotencyStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._reserve = client.register_script(_RESERVE_LUA)

    def reserve(
        self, key: str, payload_hash: str, kind: str, ttl: int = DEFAULT_TTL
    ) -> Reservation:
        return self.reserve_many([(key, payload_hash)], kind, ttl)[0]

    def reserve_many(
        self, items: Sequence[tuple[str, str]], kind: str, ttl: int = DEFAULT_TTL
    ) -> list[Reservation]:
        """Reserve (key, payload hash) pairs all-or-nothing, in one round trip.

        Raises IdempotencyConflict naming the first key already used for another payload.
        """
        if ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        args: list[str | int] = [int(ttl), f"{time.time():.6f}"]
        for _, digest in items:
            args += [digest, kind]
        reply = self._reserve(keys=[record_key(key) for key, _ in items], args=args)
        status = _text(reply[0])
        if status == "conflict":
            raise IdempotencyConflict(items[int(reply[1]) - 1][0])
        pairs = reply[1:]
        return [
            Reservation(created=_text(pairs[i]) == "1", state=_text(pairs[i + 1]))
            for i in range(0, len(pairs), 2)
        ]

    def get(self, key: str) -> dict[str, Any] | None:
        """The decoded record for ``key``, or None if there is none (never made, or expired)."""
        return decode_record(self.client.hgetall(record_key(key)))

    def get_result(self, key: str) -> Any:
        """The worker's final result for ``key``, or None while there is none."""
        raw = self.client.hget(record_key(key), FIELD_RESULT)
        return None if raw is None else json.loads(raw)
