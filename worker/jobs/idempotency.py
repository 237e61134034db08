"""The worker's side of a job's idempotency record: claim, release and finish, each one Lua script.

The record is the producer's hash ``sendcloud:idem:<key>`` (layout in :mod:`producers.idempotency`).
The worker adds these fields:

``owner``              the claim token of the attempt that holds the claim: ``<message id>:<fence>``
``request_id``         the job's sendRequestId, fixed at its first claim (:func:`send_request_id`)
``fence``              claims so far; each attempt's token is unique, so a stale attempt (stalled
                       past its lease, its message delivered again) can neither release, check
                       nor finish the job: every such script checks the token
``lease_until``        epoch seconds; after it another copy of the job may take the claim over
``due_at``             when a released job's retry is due (the reconciler's yardstick)
``parked``             set while a released job's retry waits in this record alone, not in a
                       queue (a long wait on RabbitMQ; see worker.jobs.runner)
``job``                the producer's copy of the message, until the job is final; the
                       reconciler re-drives a job from it when its message was lost
``attempt_started_at`` when the current (or last) attempt claimed the job
``first_attempt_at``   when the first attempt claimed the job
``attempts``           attempts so far (a pause for a 499 gives its attempt back)
``uncertain_since``    start of the earliest attempt whose effect is unknown (see below)
``takeovers``          how often a claim was taken from an attempt that never finished
``last_error``         the last attempt's error, for people reading the record
``finished_at``        when the final state was written

Every time above is Redis's (``TIME`` inside the scripts), never a worker's clock.

How duplicates run once
-----------------------
``claim`` moves ``queued`` to ``in_flight``. A copy of the job that finds it ``in_flight`` under
a live lease held by another message id is *busy*: it is retried after the lease and then sees
the final state. A final state means the job is over: the copy is acknowledged without calling
SendCloud and without a second result record. ``finish`` writes the final state, the result and
the result-stream entry in one script, and only while the caller still owns the claim, so every
job ends with exactly one final record however many copies ran.

A copy of the *same* message id finding the job ``in_flight`` is a redelivery: Dramatiq's
RedisBroker hands a message to another worker only after its first worker stopped heartbeating,
i.e. died. That copy, like any copy finding an expired lease, takes the claim over.

The 1-hour rule
---------------
SendCloud runs a ``sendRequestId`` only once within 1 hour; every attempt of a job sends the same
one (:func:`send_request_id`, kept in the record from the first claim on). An attempt whose
outcome is unknown (the worker died mid-call, or the call ended with no reply: a
TransportError) may have been accepted, and a resend is safe only while SendCloud still
remembers the id. So the record keeps ``uncertain_since``, the start
of the earliest such attempt, and:

* before any send, if ``now - uncertain_since > 3600 - margin`` (``SENDCLOUD_DEDUP_SAFETY_MARGIN``,
  default 300 s) the job is NEVER sent again: it ends as ``needs_review``, logged at error level
  with its key, for a person to check in SendCloud's console whether it went out;
* a retry after an uncertain attempt is scheduled inside the window
  (``delay = min(backoff, window_left)``), and a deferral that cannot fit in it (a 498 pushed to
  the next day) ends as ``needs_review`` at once.

So a worker that crashes mid-send and is redelivered within ~55 minutes resends safely (SendCloud
deduplicates); one redelivered later is never resent blindly. (A verification code whose
``expires_at`` has passed ends as ``expired`` first: it would not be sent either way.)
A definite reply (a statusCode) to a later attempt does not clear the uncertainty: whether
SendCloud checks the sendRequestId before its other checks is undocumented.

If a record is missing when a job runs (its TTL passed while a copy of the job waited) the
claim recreates it, so a job is never dropped for lack of a record; but an earlier copy may
have run, so the recreated record is uncertain since the job was enqueued: a copy arriving
within the hour resends safely, a later one ends as ``needs_review``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from producers.contract import KEY_PREFIX, RECONCILE_KEY
from producers.idempotency import (
    FINAL_STATES,
    STATE_DONE,
    STATE_EXPIRED,
    STATE_FAILED,
    STATE_NEEDS_REVIEW,
    record_key,
)
from producers.redis_client import DEFAULT_WAIT_TIMEOUT_MS
from producers.replication import NotReplicated, PinnedScripts
from producers.replies import reply_text
from producers.sms_index import DAY, DEFAULT_WINDOW, INDEX_LUA
from producers.sms_index import pack as pack_index
from worker.jobs.campaign import ACCOUNT_LUA
from worker.jobs.results import flatten

#: SendCloud deduplicates a sendRequestId for this long.
DEDUP_WINDOW = 3600.0
#: A claim too few replicas acknowledged is given back, its retry due after this (s).
UNREPLICATED_CLAIM_RETRY = 1.0
#: How often a finish is run again (it is idempotent) while too few replicas acknowledge it.
FINISH_REPLICATION_TRIES = 3
MAX_SEND_REQUEST_ID = 128
_PLAIN_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_SEND_REQUEST_ID}}}")

#: The record state each final outcome leaves behind.
OUTCOME_STATES: dict[str, str] = {
    "sent": STATE_DONE,
    "partial": STATE_DONE,
    "duplicate": STATE_DONE,
    "done": STATE_DONE,
    "failed": STATE_FAILED,
    "cancelled": STATE_FAILED,
    "expired": STATE_EXPIRED,
    "needs_review": STATE_NEEDS_REVIEW,
}

#: The final states as a Lua table literal, for scripts that must tell them apart.
FINAL_LUA_SET = "{" + ", ".join(f"['{s}'] = true" for s in sorted(FINAL_STATES)) + "}"

# Every script reads the time from Redis (``TIME``): one clock decides leases, attempt starts,
# uncertain_since and the 1-hour window, whatever the workers' clocks say. ARGV "now" is empty
# in production; tests that travel in time pass one.
_CLOCK_LUA = """
local function sendcloud_now(given)
    if given ~= nil and given ~= '' then return tonumber(given) end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function sendcloud_fmt(seconds)
    return string.format('%.6f', seconds)
end
"""

# KEYS: record, reconcile index, and optionally the account's pause flag.
# ARGV: message_id, now, lease, ttl, kind, enqueued_at, index member (the job key),
# request id, legacy request id. The job's sendRequestId is fixed at its first claim and kept
# in the record, so a change of namespace (an upgrade, a new setting) never gives a retry a
# new one; a record that had attempts before ids were kept keeps the un-namespaced id.
# The claim token is "<message id>:<fence>", the fence counting claims of this record: each
# attempt holds a token of its own, and release, check and finish succeed only for the current.
_CLAIM_LUA = _CLOCK_LUA + (
    "local final = " + FINAL_LUA_SET + "\n"
    """
local k = KEYS[1]
local msg, lease = ARGV[1], tonumber(ARGV[3])
local now = sendcloud_now(ARGV[2])
local nows = sendcloud_fmt(now)
-- One read of every field the claim needs (false where absent), one write of what it changes.
local r = redis.call('HMGET', k, 'state', 'uncertain_since', 'owner', 'lease_until',
                     'attempt_started_at', 'request_id', 'attempts', 'fence', 'first_attempt_at',
                     'reconcile_waiting_since', 'takeovers')
local state, uncertain = r[1], r[2]
if state and final[state] then
    redis.call('ZREM', KEYS[2], ARGV[7])
    return {'final', state}
end
if not state then
    -- The record expired while a copy of the job was still around: its history is unknown,
    -- so treat it as possibly sent since the job was enqueued (see "The 1-hour rule").
    uncertain = nows
    if ARGV[6] ~= '' and tonumber(ARGV[6]) < now then uncertain = ARGV[6] end
    redis.call('HSET', k, 'kind', ARGV[5], 'created_at', nows, 'recreated_at', nows,
               'uncertain_since', uncertain)
    redis.call('EXPIRE', k, tonumber(ARGV[4]))
    state = 'queued'
end
local set = {}
if state == 'in_flight' then
    local owner = r[3] or ''
    local lease_until = tonumber(r[4] or '0') or 0
    -- A copy of the same message is a redelivery: its first worker stopped heartbeating.
    local same = string.sub(owner, 1, #msg + 1) == msg .. ':'
    if (not same) and lease_until > now then
        return {'busy', sendcloud_fmt(lease_until - now)}
    end
    local started = r[5] or nows
    if (not uncertain) or tonumber(started) < tonumber(uncertain) then
        uncertain = started
        set[#set + 1] = 'uncertain_since'
        set[#set + 1] = started
    end
    set[#set + 1] = 'takeovers'
    set[#set + 1] = tostring((tonumber(r[11] or '0') or 0) + 1)
end
local before = tonumber(r[7] or '0') or 0
local request_id = r[6]
if not request_id then
    request_id = ARGV[8]
    if before > 0 then request_id = ARGV[9] end
    set[#set + 1] = 'request_id'
    set[#set + 1] = request_id
end
if not r[9] then
    set[#set + 1] = 'first_attempt_at'
    set[#set + 1] = nows
end
local attempts = tostring(before + 1)
local fence = tostring((tonumber(r[8] or '0') or 0) + 1)
local token = msg .. ':' .. fence
redis.call('HSET', k, 'state', 'in_flight', 'owner', token, 'lease_until',
           sendcloud_fmt(now + lease), 'attempt_started_at', nows, 'updated_at', nows,
           'attempts', attempts, 'fence', fence, unpack(set))
if r[10] then redis.call('HDEL', k, 'reconcile_waiting_since') end
redis.call('ZADD', KEYS[2], now + lease, ARGV[7])
local paused_ms = 0
if KEYS[3] then
    paused_ms = math.max(0, redis.call('PTTL', KEYS[3]))
end
return {'claimed', attempts, uncertain or '', (state == 'in_flight') and '1' or '0',
        tostring(paused_ms), token, nows, request_id}
"""
)

# KEYS: record. ARGV: token, now. Before each try of a call: is the claim still this
# attempt's? Replies {'ok', now, uncertain_since} or {'lost'}.
_CHECK_LUA = _CLOCK_LUA + """
local k = KEYS[1]
if redis.call('HGET', k, 'state') ~= 'in_flight' or redis.call('HGET', k, 'owner') ~= ARGV[1] then
    return {'lost'}
end
return {'ok', sendcloud_fmt(sendcloud_now(ARGV[2])), redis.call('HGET', k, 'uncertain_since') or ''}
"""

# KEYS: record, reconcile index. ARGV: token, now, uncertain (1/0), refund (1/0), last_error,
# delay (seconds until the retry is due), index member, parked (1/0: no message waits for it).
_RELEASE_LUA = _CLOCK_LUA + """
local k = KEYS[1]
if redis.call('HGET', k, 'state') ~= 'in_flight' or redis.call('HGET', k, 'owner') ~= ARGV[1] then
    return 0
end
local now = sendcloud_now(ARGV[2])
if ARGV[3] == '1' then
    local started = redis.call('HGET', k, 'attempt_started_at') or sendcloud_fmt(now)
    local uncertain = redis.call('HGET', k, 'uncertain_since')
    if (not uncertain) or tonumber(started) < tonumber(uncertain) then
        redis.call('HSET', k, 'uncertain_since', started)
    end
end
if ARGV[4] == '1' then
    redis.call('HINCRBY', k, 'attempts', -1)
end
local due = now + tonumber(ARGV[6])
redis.call('HSET', k, 'state', 'queued', 'lease_until', '0', 'updated_at', sendcloud_fmt(now),
           'due_at', sendcloud_fmt(due), 'last_error', ARGV[5])
if ARGV[8] == '1' then
    redis.call('HSET', k, 'parked', '1')
else
    redis.call('HDEL', k, 'parked')
end
redis.call('ZADD', KEYS[2], due, ARGV[7])
return 1
"""

# KEYS: record, stream, reconcile index, and optionally the broker's ack set and message hash
# of the job's message (BrokerAck). ARGV: token, now, state, result, maxlen, ttl, index member,
# uncertain (1/0), max age of stream entries (s, 0: none), smsId index entries
# (producers.sms_index.pack), their ttl, the message's id in the broker ('' without KEYS 4-5),
# then field/value pairs. A campaign chunk's accounting runs in this same script
# (worker.jobs.campaign), and so does the smsId index's write. Replies {entry, acked}.
# The same finish again (same token: its WAIT found too few replicas) writes nothing new: it
# answers the first one's entry, and bumps a counter so its own WAIT covers the record.
_FINISH_LUA = _CLOCK_LUA + ACCOUNT_LUA + INDEX_LUA + "local final = " + FINAL_LUA_SET + """
local k = KEYS[1]
local r = redis.call('HMGET', k, 'state', 'owner', 'entry', 'uncertain_since',
                     'attempt_started_at')
local state = r[1]
if r[2] ~= ARGV[1] then return false end
if state and final[state] then
    if not r[3] then return false end
    redis.call('HINCRBY', k, 'finish_repeats', 1)
    return {r[3], 0}
end
if state ~= 'in_flight' then return false end
local now = sendcloud_now(ARGV[2])
local nows = sendcloud_fmt(now)
local fields = {}
for i = 13, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
-- The entry first: a stream that refuses it (a wrong type at its key) leaves the job unfinished.
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
local set = {}
if ARGV[8] == '1' and not r[4] then
    set[1] = 'uncertain_since'
    set[2] = r[5] or nows
end
redis.call('HSET', k, 'state', ARGV[3], 'result', ARGV[4], 'updated_at', nows,
           'finished_at', nows, 'lease_until', '0', 'entry', entry, unpack(set))
redis.call('HDEL', k, 'job', 'due_at')
redis.call('EXPIRE', k, tonumber(ARGV[6]))
redis.call('ZREM', KEYS[3], ARGV[7])
local max_age = tonumber(ARGV[9])
if max_age > 0 then
    -- Entry ids are Redis's own milliseconds: older than max_age goes, whole nodes at a time.
    local ms = tonumber(string.match(entry, '^(%d+)'))
    redis.call('XTRIM', KEYS[2], 'MINID', '~', ms - max_age * 1000)
end
sendcloud_index(ARGV[10], ARGV[7], now, tonumber(ARGV[11]))
sendcloud_campaign_account(fields, KEYS[2], ARGV[5], nows)
-- Dramatiq's ack of the job's message (its dispatch.lua "ack"), done here to save a round trip,
-- only where the message is where that script keeps it: otherwise the consumer acks as usual.
local acked = 0
local msg = ARGV[12]
if msg ~= '' and KEYS[5] and redis.call('HEXISTS', KEYS[5], msg) == 1
        and redis.call('SREM', KEYS[4], msg) == 1 then
    redis.call('HDEL', KEYS[5], msg)
    acked = 1
end
return {entry, acked}
"""


def send_request_id(key: str, namespace: str = "") -> str:
    """The sendRequestId of every attempt of a job: ``<namespace>:<key>`` when that is short and
    plain, else ``<namespace>:`` and the sha256 hex of the key; at most 97 characters with the
    longest namespace. Without a namespace (records from before namespaces): the key itself, or
    its sha256 hex."""
    prefix = f"{namespace}:" if namespace else ""
    if _PLAIN_ID.fullmatch(prefix + key):
        return prefix + key
    return prefix + hashlib.sha256(key.encode()).hexdigest()


#: Where a deployment keeps the namespace it made for itself (see :func:`deployment_namespace`).
NAMESPACE_KEY = f"{KEY_PREFIX}request-id-namespace"


def deployment_namespace(client: redis.Redis, configured: str) -> str:
    """The sendRequestId namespace: ``SENDCLOUD_REQUEST_ID_NAMESPACE`` when set, else one made
    once per Redis database and kept there, so that two deployments sharing a SendCloud account
    (each with its own Redis) never take each other's ids, and every worker of one agrees."""
    if configured:
        return configured
    client.set(NAMESPACE_KEY, secrets.token_hex(6), nx=True)
    stored = client.get(NAMESPACE_KEY)
    return reply_text(stored) if stored is not None else ""


@dataclass(frozen=True)
class Claim:
    status: str  # "claimed" | "busy" | "final"
    attempts: int = 0
    #: Start of the earliest attempt whose outcome is unknown, or None.
    uncertain_since: float | None = None
    #: This claim took over an attempt that never finished.
    takeover: bool = False
    #: For "busy": seconds until the other holder's lease runs out.
    busy_for: float = 0.0
    #: For "final": the state the job ended in.
    final_state: str = ""
    #: Seconds the account's sending pause still lasts (0 when not paused or not asked).
    paused_for: float = 0.0
    #: This attempt's claim token: release, check and finish need it.
    token: str = ""
    #: Redis's time when the claim was made.
    now: float = 0.0
    #: The job's sendRequestId, fixed at its first claim.
    request_id: str = ""


@dataclass(frozen=True)
class Check:
    """The claim seen again before a try: still held, and Redis's time now."""

    held: bool
    now: float = 0.0
    uncertain_since: float | None = None


class BrokerAck(Protocol):
    """Where the broker keeps the job's message until it is acknowledged, for a finish that
    acknowledges it in the same script (a round trip fewer a job): the Redis broker's ack set
    and message hash, the message's id there, and ``done``, called when the finish did it (the
    consumer then skips its own ack). Only for endings after which the message is acknowledged,
    never one Dramatiq must dead-letter. Made by ``worker.broker.FinishAckingRedisBroker``."""

    @property
    def acks_key(self) -> str: ...
    @property
    def messages_key(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    def done(self) -> None: ...


def _time_arg(now: float | None) -> str:
    return "" if now is None else repr(now)


def window_left(uncertain_since: float | None, now: float, margin: float) -> float | None:
    """Seconds a resend stays covered by SendCloud's dedup (None: no uncertain attempt)."""
    if uncertain_since is None:
        return None
    return uncertain_since + DEDUP_WINDOW - margin - now


class JobLedger:
    """Claim, check, release and finish of job records, for one Redis database.

    Every ``now`` argument is for tests that travel in time: left at None, the scripts read
    Redis's clock.
    """

    def __init__(
        self, client: redis.Redis, *, lease: float, ttl: int, maxlen: int, namespace: str = "",
        max_age: int = 0, receipt_window: int = DEFAULT_WINDOW, wait_replicas: int = 0,
        wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS,
    ) -> None:
        self.client = client
        #: SENDCLOUD_REDIS_WAIT_REPLICAS: claims and finishes are decided once this many
        #: replicas have them (producers.replication).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        # A day's index keys live past the window of its last entry.
        self.index_ttl = receipt_window + DAY
        self.lease = lease
        self.ttl = ttl
        self.maxlen = maxlen
        self.max_age = max_age
        #: SENDCLOUD_REQUEST_ID_NAMESPACE; when empty, the deployment's own, read on first use.
        self.configured_namespace = namespace
        self._namespace: str | None = None
        self._claim = client.register_script(_CLAIM_LUA)
        self._check = client.register_script(_CHECK_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._scripts = PinnedScripts(client)

    def claim(
        self,
        key: str,
        message_id: str,
        now: float | None = None,
        *,
        kind: str,
        enqueued_at: float | None = None,
        pause_key: str | None = None,
    ) -> Claim:
        """Claim the job; with ``pause_key``, also report how long that pause still lasts.

        ``enqueued_at`` dates a record that has to be recreated: any attempt of the job, and so
        any send, came after it.
        """
        keys = [record_key(key), RECONCILE_KEY]
        if pause_key is not None:
            keys.append(pause_key)
        since = "" if enqueued_at is None else repr(enqueued_at)
        request_id = send_request_id(key, self.namespace)
        raw, acknowledged = self._scripts.run(
            self._claim, keys,
            [message_id, _time_arg(now), repr(self.lease), self.ttl, kind, since, key,
             request_id, send_request_id(key)],
            replicas=self.wait_replicas, timeout_ms=self.wait_timeout_ms,
        )  # fmt: skip
        reply = [reply_text(part) for part in raw]
        if reply[0] == "final":
            return Claim("final", final_state=reply[1])
        if reply[0] == "busy":
            return Claim("busy", busy_for=max(0.0, float(reply[1])))
        if acknowledged < self.wait_replicas:
            # A claim the promoted replica may not have would let another copy send too: give
            # it back before anything is sent. Its attempt is refunded; the fence and any
            # takeover it counted stay (they only ever grow, which fencing needs).
            self.release(key, reply[5], now, uncertain=False, refund=True,
                         error="claim not replicated", delay=UNREPLICATED_CLAIM_RETRY)
            raise NotReplicated(f"the claim of {key!r}", acknowledged, self.wait_replicas)
        return Claim(
            "claimed",
            attempts=int(reply[1]),
            uncertain_since=float(reply[2]) if reply[2] else None,
            takeover=reply[3] == "1",
            paused_for=int(reply[4]) / 1000,
            token=reply[5],
            now=float(reply[6]),
            request_id=reply[7],
        )

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = deployment_namespace(self.client, self.configured_namespace)
        return self._namespace

    def check(self, key: str, token: str, now: float | None = None) -> Check:
        """Whether ``token`` still holds the claim, with Redis's time and uncertain_since."""
        raw, _ = self._scripts.run(self._check, [record_key(key)], [token, _time_arg(now)])
        reply = [reply_text(part) for part in raw]
        if reply[0] != "ok":
            return Check(False)
        return Check(True, float(reply[1]), float(reply[2]) if reply[2] else None)

    def release(
        self,
        key: str,
        token: str,
        now: float | None = None,
        *,
        uncertain: bool,
        refund: bool = False,
        error: str = "",
        delay: float = 0.0,
        parked: bool = False,
    ) -> bool:
        """Give the claim back (state queued) for a retry due in ``delay`` seconds.
        ``uncertain``: the attempt may have taken effect. ``refund``: the attempt does not
        count (it never called SendCloud). ``parked``: no message carries the retry (its
        message is acknowledged); the reconciler sends a copy when it is due. False when
        ``token`` no longer holds the claim."""
        released, _ = self._scripts.run(
            self._release, [record_key(key), RECONCILE_KEY],
            [token, _time_arg(now), int(uncertain), int(refund), error, repr(delay), key,
             int(parked)],
        )
        return bool(released)

    def finish(
        self,
        key: str,
        token: str,
        now: float | None = None,
        *,
        outcome: str,
        stream: str,
        record: Mapping[str, Any],
        uncertain: bool = False,
        stream_record: Mapping[str, Any] | None = None,
        sms_ids: Sequence[str | None] = (),
        ack: BrokerAck | None = None,
    ) -> str | None:
        """Write the final state, the result and the stream entry at once; the entry id, or None
        when ``token`` no longer holds the claim (then nothing was written). ``uncertain``:
        this attempt may have taken effect, so the record keeps ``uncertain_since``.
        ``stream_record``: what the stream entry holds, when not all of ``record`` (a campaign
        chunk's packed smsIds stay in its record only). ``sms_ids``: what SendCloud gave each of
        the job's phones, in their order (None where refused), for the smsId index. ``ack``:
        acknowledge the job's message in the broker in the same script (:class:`BrokerAck`).

        With ``wait_replicas``, the finish is run again (the same token answers the first
        entry, writing no second record) until that many replicas have it, a few times, then
        :class:`~producers.replication.NotReplicated` is raised: the job's message is retried,
        and its claim then finds it final (or, after a failover that lost it, sends again
        under the same sendRequestId, which SendCloud deduplicates)."""
        state = OUTCOME_STATES[outcome]
        args: list[str | int | bytes] = [
            token, _time_arg(now), state, json.dumps(dict(record)), self.maxlen, self.ttl, key,
            int(uncertain), self.max_age, pack_index(sms_ids), self.index_ttl,
            "" if ack is None else ack.message_id,
        ]
        for name, value in flatten(record if stream_record is None else stream_record).items():
            args += [name, value]
        keys = [record_key(key), stream, RECONCILE_KEY]
        if ack is not None:
            keys += [ack.acks_key, ack.messages_key]
        acknowledged = 0
        for _ in range(FINISH_REPLICATION_TRIES):
            reply, acknowledged = self._scripts.run(
                self._finish, keys, args, replicas=self.wait_replicas,
                timeout_ms=self.wait_timeout_ms,
            )  # fmt: skip
            if reply is None:
                return None
            if acknowledged >= self.wait_replicas:
                entry, acked = reply
                if acked and ack is not None:
                    ack.done()
                return reply_text(entry)
        raise NotReplicated(f"the final record of {key!r}", acknowledged, self.wait_replicas)

    def get(self, key: str) -> dict[str, Any]:
        raw = self.client.hgetall(record_key(key))
        return {reply_text(k): reply_text(v) for k, v in raw.items()}
