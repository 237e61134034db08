"""Reading a campaign back: progress counters, cancellation, discarding and purging (the
per-recipient report is in :mod:`producers.campaign_csv`).

The keys are laid out in :mod:`producers.campaign`. The counters are written by the workers'
finish script in the same step that finalises a chunk (see :mod:`worker.jobs.campaign`), so what
:func:`campaign_status` reads is exact at every moment, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from producers.campaign import (
    DEFAULT_RETENTION,
    CampaignBusy,
    CampaignLock,
    campaign_key,
    chunk_key,
    chunk_prefix,
    validate_campaign_id,
)
from producers.contract import CAMPAIGNS_KEY, RECONCILE_KEY
from producers.delivery import codes_key, delivery_key
from producers.idempotency import record_key
from producers.producer import Producer, default_producer
from producers.replies import reply_text

_COUNTERS = ("input", "valid", "invalid", "duplicates", "chunks_done", "accepted", "failed",
             "cancelled", "review", "delivered", "undelivered", "rejected")


@dataclass(frozen=True)
class CampaignStatus:
    campaign_id: str
    state: str  # enqueuing | enqueued | finished
    sealed: bool  # every chunk is enqueued and the totals are final
    input: int
    valid: int
    invalid: int
    duplicates: int
    chunks: int  # the final count once sealed, else the chunks recorded so far
    chunks_enqueued: int
    chunks_done: int
    accepted: int  # numbers SendCloud accepted (sent, or a duplicate of an earlier send)
    failed: int
    cancelled: int
    review: int  # numbers whose fate needs a person (needs_review)
    cancel_requested: bool
    finished: bool
    # Delivery receipts (producers.delivery): accepted numbers by their last receipt.
    delivered: int = 0
    undelivered: int = 0  # SendCloud's delivery failed (SMSHook 5xx)
    rejected: int = 0  # SendCloud's processing failed (SMSHook 4xx)
    #: undelivered and rejected numbers by SendCloud's SMSHook statusCode
    delivery_codes: dict[int, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return max(0, self.valid - self.accepted - self.failed - self.cancelled - self.review)

    @property
    def delivery_pending(self) -> int:
        """Accepted numbers no receipt has yet reported on."""
        return max(0, self.accepted - self.delivered - self.undelivered - self.rejected)


#: The columns of the per-recipient report (producers.campaign_csv).
REPORT_HEADER = ("phone", "outcome", "smsId", "statusCode", "message", "delivery",
                 "deliveryCode")


class CampaignNotFound(ValueError):
    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.field = "campaign_id"
        self.rule = "names no known campaign"
        super().__init__(f"campaign_id {campaign_id!r} names no known campaign")


def campaign_status(campaign_id: str, *, producer: Producer | None = None) -> CampaignStatus:
    """Totals and progress of ``campaign_id``; raises :class:`CampaignNotFound` if unknown."""
    producer = producer or default_producer()
    meta = campaign_key(validate_campaign_id(campaign_id))
    with producer.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(meta)
        pipe.bitcount(f"{meta}:enqueued")
        pipe.hlen(f"{meta}:phones")
        pipe.hgetall(codes_key(meta))
        raw, enqueued, recorded, codes = pipe.execute()
    if not raw:
        raise CampaignNotFound(campaign_id)
    fields = {reply_text(k): reply_text(val) for k, val in raw.items()}
    counts = {name: int(fields.get(name, "0")) for name in _COUNTERS}
    sealed = "chunks" in fields
    return CampaignStatus(
        campaign_id=campaign_id,
        state=fields.get("state", "enqueuing"),
        sealed=sealed,
        chunks=int(fields["chunks"]) if sealed else int(recorded),
        chunks_enqueued=int(enqueued),
        cancel_requested="cancel_requested_at" in fields,
        finished="finished_at" in fields,
        delivery_codes={int(k): int(n) for k, n in sorted(codes.items()) if int(n) > 0},
        **counts,
    )


# Dated by Redis's clock, like every other decision about time.
CANCEL_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[1], 'cancel_requested_at', t[1] .. '.' .. string.format('%06d', t[2]))
return 1
"""


def cancel_campaign(campaign_id: str, *, producer: Producer | None = None) -> CampaignStatus:
    """Stop the campaign: every chunk not yet being sent ends as ``cancelled``.

    A chunk already handed to SendCloud finishes normally; one request is never split.
    """
    producer = producer or default_producer()
    meta = campaign_key(validate_campaign_id(campaign_id))
    done = producer.redis.eval(CANCEL_LUA, 1, meta)
    if not done:
        raise CampaignNotFound(campaign_id)
    return campaign_status(campaign_id, producer=producer)


DISCARDED_MESSAGE = "the campaign was discarded before this chunk was sent"


class CampaignNotDiscardable(ValueError):
    """Something of the campaign may have been sent: it can be cancelled, not discarded."""

    def __init__(self, campaign_id: str, chunk: int, reason: str) -> None:
        self.campaign_id = campaign_id
        self.chunk = chunk
        self.field = "campaign_id"
        self.rule = (f"cannot be discarded: chunk {chunk} {reason} (something may have gone "
                     "out); cancel stops what is not sent yet")
        super().__init__(f"campaign_id {campaign_id!r} {self.rule}")


@dataclass(frozen=True)
class CampaignDiscard:
    campaign_id: str
    chunks: int  # chunks the campaign had recorded
    stopped: int  # of them, jobs ended unsent by the discard (the others had ended cancelled)


# KEYS: meta, lock, discarded (the id's discard count), reconcile index, campaign index.
# ARGV: lock token, generation, record key prefix of the chunks, job key prefix of the chunks,
# the ending's message, fallback retention, campaign id.
# Replies {'discarded', chunks, stopped}, {'refused', index, reason}, {'missing'} or {'busy'}.
# Every chunk is checked before any is touched, all in one script: a worker's claim runs
# wholly before it (the chunk is in_flight: refused) or after it (the record is final: the
# message is acknowledged unsent).
_DISCARD_LUA = """
local meta = KEYS[1]
local f = redis.call('HMGET', meta, 'fingerprint', 'generation', 'retention')
if not f[1] then return {'missing'} end
if redis.call('GET', KEYS[2]) ~= ARGV[1] or (f[2] or '0') ~= ARGV[2] then return {'busy'} end
local retention = tonumber(f[3] or ARGV[6])
local indexes = redis.call('HKEYS', meta .. ':phones')
local unclaimed = {}
for _, idx in ipairs(indexes) do
    local r = redis.call('HMGET', ARGV[3] .. idx, 'state', 'first_attempt_at', 'uncertain_since',
        'result')
    if not r[1] then
        -- Never reserved, or its record expired: then only a job never enqueued is surely unsent.
        if redis.call('GETBIT', meta .. ':enqueued', idx) == 1 then
            return {'refused', idx, 'has lost its job record'}
        end
        unclaimed[#unclaimed + 1] = idx
    elseif r[3] then
        return {'refused', idx, 'had an attempt whose outcome is unknown'}
    elseif r[1] == 'queued' and not r[2] then
        unclaimed[#unclaimed + 1] = idx
    elseif r[1] == 'queued' or r[1] == 'in_flight' then
        return {'refused', idx, 'was claimed by a worker'}
    else
        local ok, result = pcall(cjson.decode, r[4] or '')
        local outcome = r[1]
        if ok and type(result) == 'table' and type(result['outcome']) == 'string' then
            outcome = result['outcome']
        end
        if outcome ~= 'cancelled' then return {'refused', idx, 'ended as ' .. outcome} end
    end
end
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
for _, idx in ipairs(unclaimed) do
    local rec = ARGV[3] .. idx
    -- The final record a worker's cancel would write (its fields: producers.results).
    local csv = redis.call('HGET', meta .. ':phones', idx) or ''
    local _, commas = string.gsub(csv, ',', '')
    local phones = (csv == '') and 0 or commas + 1
    local body = cjson.encode({key = ARGV[4] .. idx, kind = 'sms', outcome = 'cancelled',
        status_code = cjson.null, message = ARGV[5], attempts = 0, finished_at = now,
        campaign_id = ARGV[7], chunk_index = tonumber(idx), accepted = 0, failed = 0,
        cancelled = phones, review = 0})
    -- cjson writes an empty table as {}: the list is spliced in as JSON text.
    local result = string.sub(body, 1, -2) .. ',"failures":[]}'
    redis.call('HSET', rec, 'kind', 'sms', 'state', 'failed', 'result', result,
        'updated_at', now, 'finished_at', now, 'discarded_at', now)
    redis.call('HDEL', rec, 'job', 'due_at')
    redis.call('ZREM', KEYS[4], ARGV[4] .. idx)
end
for _, idx in ipairs(indexes) do
    local rec = ARGV[3] .. idx
    if redis.call('TTL', rec) < retention then redis.call('EXPIRE', rec, retention) end
end
local count = tonumber(redis.call('GET', KEYS[3]) or '0')
if count < tonumber(ARGV[2]) + 1 then
    redis.call('SET', KEYS[3], tonumber(ARGV[2]) + 1)
end
if redis.call('TTL', KEYS[3]) < retention then redis.call('EXPIRE', KEYS[3], retention) end
redis.call('DEL', meta, meta .. ':phones', meta .. ':enqueued', meta .. ':done',
    meta .. ':results', meta .. ':invalid', KEYS[2])
redis.call('ZREM', KEYS[5], ARGV[7])
return {'discarded', #indexes, #unclaimed}
"""


def discard_campaign(campaign_id: str, *, producer: Producer | None = None) -> CampaignDiscard:
    """Remove a campaign of which nothing was sent, so that its id can be started again with
    other input; raises :class:`CampaignNotDiscardable` otherwise (cancel it instead),
    :class:`CampaignNotFound` or :class:`~producers.CampaignBusy` (a start is running).

    Discardable: every chunk's job is still queued and was never claimed by a worker, or ended
    ``cancelled`` without an attempt of uncertain outcome (see :func:`cancel_campaign`). A chunk
    claimed, in flight, ended otherwise, or whose record is gone while its message may be
    queued refuses the whole discard; the check and the changes are one Lua script.

    Why the chunks' job records stay: delivery is at least once, so a chunk's message (or a
    copy of it) may still wait in a queue, or in a worker's prefetch, after the discard, and
    nothing can take it back out. So the discard does not delete the records; it ends every
    unclaimed one as ``cancelled`` (state ``failed``, like a worker's cancel) and drops it from
    the reconciler's index. A message arriving later finds a final record and is acknowledged
    without a call to SendCloud, and without a result record or campaign count. The records
    then live as long as the campaign would have (its retention). Everything else of the
    campaign is deleted, and the id's discard count ``<c>:discarded`` goes up: a new start
    under the id takes it as its generation and keys its chunks ``campaign:<id>:g<n>:<i>``,
    which no old message carries (:func:`producers.campaign.chunk_key`). The one case left is
    a message outliving the retention too: its claim recreates the record as uncertain since
    the message was enqueued, a month before, so it ends ``needs_review`` without a send (see
    worker.jobs.idempotency). A dead run's own list of refused entries
    (``<c>:invalid:<run>``) is left to expire.
    """
    producer = producer or default_producer()
    cid = validate_campaign_id(campaign_id)
    meta = campaign_key(cid)
    lock = CampaignLock(producer.redis, cid)
    lock.acquire()
    try:
        generation = int(producer.redis.hget(meta, "generation") or 0)
        prefix = chunk_prefix(cid, generation)
        reply = producer.redis.eval(
            _DISCARD_LUA, 5, meta, lock.lock, f"{meta}:discarded", RECONCILE_KEY, CAMPAIGNS_KEY,
            lock.token, generation, record_key(prefix), prefix, DISCARDED_MESSAGE,
            DEFAULT_RETENTION, cid,
        )
    finally:
        lock.release()
    status = reply_text(reply[0])
    if status == "missing":
        raise CampaignNotFound(cid)
    if status == "busy":  # our lock's lease ran out and a start took over
        raise CampaignBusy(cid, "a start took over")
    if status == "refused":
        raise CampaignNotDiscardable(cid, int(reply[1]), reply_text(reply[2]))
    return CampaignDiscard(cid, chunks=int(reply[1]), stopped=int(reply[2]))


class CampaignNotFinished(ValueError):
    """A campaign still running cannot be purged: its chunks would be left without a report."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.field = "campaign_id"
        self.rule = "has not finished: cancel it and wait until its chunks end, then purge"
        super().__init__(f"campaign_id {campaign_id!r} {self.rule}")


# KEYS: meta, the campaign index. ARGV: record key prefix of the chunks, their delivery-state
# key prefix, the campaign id. Reply: chunks purged, -1 none, -2 running.
_PURGE_LUA = """
local meta = KEYS[1]
local f = redis.call('HMGET', meta, 'chunks', 'finished_at')
if redis.call('EXISTS', meta) == 0 then return -1 end
if not f[2] then return -2 end
local chunks = tonumber(f[1] or '0')
for idx = 0, chunks - 1 do redis.call('UNLINK', ARGV[1] .. idx, ARGV[2] .. idx) end
redis.call('UNLINK', meta, meta .. ':phones', meta .. ':enqueued', meta .. ':done',
    meta .. ':results', meta .. ':invalid', meta .. ':delivery_codes')
redis.call('ZREM', KEYS[2], ARGV[3])
return chunks
"""


def purge_campaign(campaign_id: str, *, producer: Producer | None = None) -> int:
    """Delete a finished campaign's data (its numbers, per-chunk results and job records) before
    its retention (``SENDCLOUD_CAMPAIGN_TTL``) would; returns the chunks purged. The
    ``campaign_finished`` record on the result stream stays, trimmed with the stream."""
    producer = producer or default_producer()
    cid = validate_campaign_id(campaign_id)
    meta = campaign_key(cid)
    generation = int(producer.redis.hget(meta, "generation") or 0)
    first = chunk_key(cid, 0, generation)
    purged = int(producer.redis.eval(_PURGE_LUA, 2, meta, CAMPAIGNS_KEY, record_key(first)[:-1],
                                     delivery_key(first)[:-1], cid))
    if purged == -1:
        raise CampaignNotFound(cid)
    if purged == -2:
        raise CampaignNotFinished(cid)
    return purged
