"""One round trip for a job with one message: the reservation and the enqueue in one script.

``Producer._submit`` reserves a job's idempotency key (one script) and then enqueues its message
(Dramatiq's dispatch script): two round trips, which made ``send_code`` half as fast as a bare
``actor.send``. For a job of one message on a Redis broker with Dramatiq's JSON encoder, this
script does both, or neither: it reserves the key and, when the job still needs sending (a new
key, or one left ``queued``), writes the message exactly as ``RedisBroker.enqueue`` would (the
message in ``<ns>:<queue>.msgs``, its id pushed on ``<ns>:<queue>``).

The message must carry Redis's time (``enqueued_at``, and ``expires_at`` for codes), which is
only known inside the script: the message is sent as the text before and after its
``enqueued_at`` value, and the script joins them around the time it reads (adding
``expires_at`` after it), so no host clock is involved and nothing is re-encoded.

The payload is JSON-encoded once: the canonical text that :func:`producers.idempotency.payload_hash`
hashes is also the body of the message and of the record's job copy, which only add the fields
the hash leaves out (key, times). Middleware still sees ``before_enqueue`` and ``after_enqueue``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.encoder import JSONEncoder

from producers.contract import RECONCILE_KEY
from producers.errors import IdempotencyConflict
from producers.idempotency import (
    HASH_EXCLUDED_FIELDS,
    RECORD_PREFIX,
    canonical_text,
    record_key,
)

# KEYS: reconcile index, record, queue list, queue messages hash.
# ARGV: ttl, queued_after, payload hash, kind, job copy, redis message id, message text before
#       enqueued_at's value, message text after it, expires_in ('' when none).
# Replies {'conflict'} or {state, now, enqueued (1/0)}.
RESERVE_AND_ENQUEUE_LUA = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local key = KEYS[2]
local stored = redis.call('HMGET', key, 'hash', 'state')
local state = stored[2]
if state then
    if stored[1] and stored[1] ~= ARGV[3] then return {'conflict'} end
    if not stored[1] then redis.call('HSET', key, 'hash', ARGV[3]) end
    if state ~= 'queued' then return {state, now, 0} end
else
    state = 'queued'
    if ARGV[5] ~= '' then
        redis.call('HSET', key, 'hash', ARGV[3], 'kind', ARGV[4], 'state', 'queued',
            'created_at', now, 'updated_at', now, 'job', ARGV[5])
        redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(ARGV[2]),
            string.sub(key, #RECORD_PREFIX + 1))
    else
        redis.call('HSET', key, 'hash', ARGV[3], 'kind', ARGV[4], 'state', 'queued',
            'created_at', now, 'updated_at', now)
    end
    redis.call('EXPIRE', key, tonumber(ARGV[1]))
end
local expires = ''
if ARGV[9] ~= '' then
    expires = ',"expires_at":' .. string.format('%.6f', tonumber(now) + tonumber(ARGV[9]))
end
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7] .. now .. expires .. ARGV[8])
redis.call('RPUSH', KEYS[3], ARGV[6])
return {state, now, 1}
""".replace("#RECORD_PREFIX", str(len(RECORD_PREFIX)))


def fast_path(broker: dramatiq.Broker) -> bool:
    """Whether one script may stand for the reservation and ``broker.enqueue``."""
    return isinstance(broker, RedisBroker) and isinstance(dramatiq.get_encoder(), JSONEncoder)


def _dumps(value: Any) -> str:
    # Dramatiq's JSONEncoder's separators; the object's closing brace is left off by callers.
    return json.dumps(value, separators=(",", ":"))


def reserve_and_enqueue(
    broker: RedisBroker,
    script: Any,
    *,
    queue_name: str,
    actor_name: str,
    payload: dict[str, Any],
    kind: str,
    ttl: int,
    queued_after: int,
) -> bool:
    """Reserve ``payload``'s job key and enqueue its message if the job still needs it; True if
    it was enqueued. Raises IdempotencyConflict for a key used with another payload."""
    text = canonical_text(payload)
    digest = hashlib.sha256(text.encode()).hexdigest()
    # The payload's JSON: the fields the hash leaves out, then the canonical text's fields.
    lead = _dumps({name: payload[name] for name in _LEAD if name in payload})[:-1]
    rest = "," + text[1:] if len(text) > 2 else "}"
    stamps = {name: payload[name] for name in _STAMPS if name in payload}
    expires_in = payload.get("expires_in")
    redis_id = str(uuid.uuid4())
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=(payload,), kwargs={},
        options={"redis_message_id": redis_id},
    )  # fmt: skip
    broker.emit_before("enqueue", message, None)
    # The record's copy keeps the payload undated (the reconciler dates a copy it sends).
    job = _dumps({"actor": actor_name, "queue": queue_name, "message_id": message.message_id})
    job_text = f'{job[:-1]},"payload":{lead}{_fields(stamps)}{rest}}}'
    # Everything of the message but its args, as Dramatiq's encoder would write it.
    shell = _dumps({"queue_name": message.queue_name, "actor_name": message.actor_name,
                    "kwargs": message.kwargs, "options": message.options,
                    "message_id": message.message_id,
                    "message_timestamp": message.message_timestamp})  # fmt: skip
    # After enqueued_at's value: the script's expires_at, or the payload's own when it sets none.
    after = {n: v for n, v in stamps.items() if n == "expires_at" and expires_in is None}
    queue = f"{broker.namespace}:{queue_name}"
    reply = script(
        keys=[RECONCILE_KEY, record_key(payload["key"]), queue, f"{queue}.msgs"],
        args=[ttl, queued_after, digest, kind, job_text, redis_id,
              f'{{"args":[{lead},"enqueued_at":', f"{_fields(after)}{rest}],{shell[1:]}",
              "" if expires_in is None else expires_in],
    )  # fmt: skip
    if reply[0] in (b"conflict", "conflict"):
        raise IdempotencyConflict(payload["key"])
    # The caller's payload reads as the queued message does.
    payload["enqueued_at"] = float(reply[1])
    if expires_in is not None:
        payload["expires_at"] = float(reply[1]) + float(expires_in)
    enqueued = int(reply[2]) == 1
    if enqueued:
        broker.emit_after("enqueue", message, None)
    return enqueued


#: The fields the hash leaves out that the message carries as the producer wrote them, and the
#: times the script sets.
_LEAD = ("key", "expires_in")
_STAMPS = ("enqueued_at", "expires_at")
assert set(_LEAD + _STAMPS) == HASH_EXCLUDED_FIELDS


def _fields(values: dict[str, Any]) -> str:
    """``,"name":value`` for each entry: fields to splice into an object's text."""
    return "," + _dumps(values)[1:-1] if values else ""
