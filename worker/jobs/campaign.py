"""The worker's side of bulk campaigns: exact progress counters, completion, and cancellation.

Why the counters are exact
--------------------------
A campaign chunk is an ordinary SMS job, and every job ends with exactly one call of the finish
script (:mod:`worker.jobs.idempotency`): it writes the final state only while the caller still owns
the job's claim, so a redelivered copy, a second worker, or a retry can never finish a job twice.
:data:`ACCOUNT_LUA` runs inside that same script, right after the chunk's result record is
appended, so a chunk's state, its stream record and its campaign accounting land together or not
at all: a worker killed before the script leaves the job in flight (it is taken over and counted
then), one killed after it has nothing left to count. There is no window in which a chunk is
final but uncounted, or counted but not final.

The accounting also guards itself: it sets the chunk's bit in ``<c>:done`` and counts only if the
bit was clear, so even a job that ran twice (its idempotency record expired while a duplicate
message waited) adds its numbers once.

Per chunk it adds, in the campaign hash ``<c>``: ``chunks_done`` +1 and the counts the worker
computed (``accepted``, ``failed``, ``cancelled``, ``review``: :mod:`producers.chunk_results`);
phones the counts leave out get the chunk's own outcome. It stores the chunk's outcome,
statusCode and message in ``<c>:results``, and extends the job's idempotency record, whose
``result`` holds the packed smsIds and the failures the report reads, to the campaign's
retention.

Completion: when ``chunks_done`` reaches the sealed chunk count, the same script appends the one
``campaign_finished`` record (guarded by the ``finished_at`` field; Redis runs scripts one at a
time, so two chunks finishing together cannot both see the last count). If the workers finish
every chunk before the producer has sealed the totals, the producer's seal script emits it
instead (:data:`producers.campaign.COMPLETE_LUA` is shared by both). The record's fields and
types are in :data:`producers.results.CAMPAIGN_FINISHED_FIELDS`: the totals and counters as
numbers, ``cancel_requested`` as ``1``/``0`` (a boolean once read), ``finished_at`` as ISO 8601
UTC (the campaign hash keeps it in epoch seconds).

Cancellation: :func:`cancel_requested` is checked after a chunk is claimed and before it is sent.
A chunk whose earlier attempt may have reached SendCloud (``uncertain_since``) is not cancelled:
it is resent under the same sendRequestId so its real outcome is learned, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from producers.campaign import COMPLETE_LUA, campaign_key
from producers.idempotency import RECORD_PREFIX

CANCELLED_MESSAGE = "the campaign was cancelled before this chunk was sent"

# A Lua function for the finish script. fields: the flat record (name, value, name, value...).
# Returns the campaign_finished entry id, or false. It must never raise: it runs after the job's
# final state is written, so odd input (no such campaign, a bad index, unreadable counts) is
# skipped or counted by the chunk's outcome, never an error.
ACCOUNT_LUA = COMPLETE_LUA + """
local sendcloud_campaign_classes = {sent = 'accepted', duplicate = 'accepted',
    failed = 'failed', expired = 'failed', cancelled = 'cancelled', needs_review = 'review'}
local function sendcloud_campaign_account(fields, stream, maxlen, now)
    local rec = {}
    for i = 1, #fields - 1, 2 do rec[fields[i]] = fields[i + 1] end
    local cid, idx = rec['campaign_id'], rec['chunk_index']
    local bit = tonumber(idx or '')
    if (not cid) or cid == '' or (not bit) or bit < 0 or bit % 1 ~= 0 then return false end
    local meta = '""" + campaign_key("") + """' .. cid
    if redis.call('EXISTS', meta) == 0 then return false end
    if redis.call('SETBIT', meta .. ':done', bit, 1) == 1 then return false end
    local outcome = rec['outcome'] or ''
    -- The worker counted the chunk's recipients (producers.chunk_results): no JSON here.
    local counts = {accepted = 0, failed = 0, cancelled = 0, review = 0}
    local listed = 0
    for name, _ in pairs(counts) do
        local n = tonumber(rec[name] or '')
        if n and n > 0 and n % 1 == 0 then
            counts[name] = n
            listed = listed + n
        end
    end
    if outcome == 'cancelled' then
        counts = {accepted = 0, failed = 0, cancelled = listed, review = 0}
    end
    local csv = redis.call('HGET', meta .. ':phones', idx)
    if csv then
        local _, commas = string.gsub(csv, ',', '')
        local unlisted = commas + 1 - listed
        if unlisted > 0 then
            local class = sendcloud_campaign_classes[outcome] or 'review'
            counts[class] = counts[class] + unlisted
        end
    end
    redis.call('HINCRBY', meta, 'chunks_done', 1)
    for name, n in pairs(counts) do
        if n > 0 then redis.call('HINCRBY', meta, name, n) end
    end
    redis.call('HSET', meta .. ':results', idx, cjson.encode({outcome = outcome,
        status_code = rec['status_code'] or '', message = rec['message'] or ''}))
    local retention = tonumber(redis.call('HGET', meta, 'retention') or '')
    if retention then
        for _, key in ipairs({meta, meta .. ':done', meta .. ':results'}) do
            redis.call('EXPIRE', key, retention)
        end
        -- The job's own record keeps the recipients the report reads: no second copy of them.
        local record = '""" + RECORD_PREFIX + """' .. (rec['key'] or '')
        if redis.call('TTL', record) < retention then
            redis.call('EXPIRE', record, retention)
        end
    end
    return sendcloud_campaign_complete(meta, stream, maxlen, now)
end
"""


def cancel_requested(
    client: redis.Redis, payload: Mapping[str, Any], uncertain_since: float | None
) -> bool:
    """True when this job is a chunk of a cancelled campaign and may be ended unsent.

    ``uncertain_since`` set means an earlier attempt may have been accepted: such a chunk is
    never cancelled, so the report cannot call a delivered chunk cancelled.
    """
    campaign_id = payload.get("campaign_id")
    if not campaign_id or uncertain_since is not None:
        return False
    return bool(client.hexists(campaign_key(str(campaign_id)), "cancel_requested_at"))
