"""One round trip for a job with one message: the reservation and the enqueue in one script.

``Producer._submit`` reserves a job's idempotency key (one script) and then enqueues its message
(Dramatiq's dispatch script): two round trips, which made ``send_code`` half as fast as a bare
``actor.send``. For a job of one message on a Redis broker with Dramatiq's JSON encoder, this
script does both, or neither: it reserves the key and, when the job still needs sending (a new
key, or one left ``queued``), writes the message exactly as ``RedisBroker.enqueue`` would (the
message in ``<ns>:<queue>.msgs``, its id pushed on ``<ns>:<queue>``).

The message must carry Redis's time (``enqueued_at``, and ``expires_at`` for codes), which is
only known inside the script: the payload is encoded with unguessable placeholders that the
script replaces by the times it reads, so no host clock is involved and nothing is re-encoded.
Middleware still sees ``before_enqueue`` and ``after_enqueue``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.encoder import JSONEncoder

from producers.contract import RECONCILE_KEY
from producers.errors import IdempotencyConflict
from producers.idempotency import RECORD_PREFIX, record_key

# KEYS: reconcile index, record, queue list, queue messages hash.
# ARGV: ttl, queued_after, payload hash, kind, job copy, redis message id, message data,
#       enqueued_at placeholder, expires_at placeholder, expires_in ('' when none).
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
local function put(text, token, value)
    local at = string.find(text, token, 1, true)
    if not at then return text end
    return string.sub(text, 1, at - 1) .. value .. string.sub(text, at + #token)
end
local data = put(ARGV[7], ARGV[8], now)
if ARGV[10] ~= '' then
    data = put(data, ARGV[9], string.format('%.6f', tonumber(now) + tonumber(ARGV[10])))
end
redis.call('HSET', KEYS[4], ARGV[6], data)
redis.call('RPUSH', KEYS[3], ARGV[6])
return {state, now, 1}
""".replace("#RECORD_PREFIX", str(len(RECORD_PREFIX)))


def fast_path(broker: dramatiq.Broker) -> bool:
    """Whether one script may stand for the reservation and ``broker.enqueue``."""
    return isinstance(broker, RedisBroker) and isinstance(dramatiq.get_encoder(), JSONEncoder)


def reserve_and_enqueue(
    broker: RedisBroker,
    script: Any,
    message: dramatiq.Message[Any],
    *,
    digest: str,
    kind: str,
    ttl: int,
    queued_after: int,
    job: dict[str, Any],
) -> bool:
    """Reserve ``message``'s job key and enqueue it if the job still needs it; True if it was
    enqueued. Raises IdempotencyConflict for a key used with another payload."""
    (payload,) = message.args
    job_text = json.dumps(job, separators=(",", ":"))
    nonce = uuid.uuid4().hex
    tokens = (f"@@sendcloud-enqueued-at-{nonce}@@", f"@@sendcloud-expires-at-{nonce}@@")
    payload["enqueued_at"] = tokens[0]
    expires_in = payload.get("expires_in")
    if expires_in is not None:
        payload["expires_at"] = tokens[1]
    redis_id = str(uuid.uuid4())
    message = message.copy(options={"redis_message_id": redis_id})
    queue = f"{broker.namespace}:{message.queue_name}"
    broker.emit_before("enqueue", message, None)
    reply = script(
        keys=[RECONCILE_KEY, record_key(payload["key"]), queue, f"{queue}.msgs"],
        args=[ttl, queued_after, digest, kind, job_text, redis_id, message.encode().decode(),
              f'"{tokens[0]}"', f'"{tokens[1]}"', "" if expires_in is None else expires_in],
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
