"""Bulk SMS campaigns: a file of numbers sent once each, resumable, counted, reported per number.

``start_campaign`` streams the input once: each number is normalised with
:func:`producers.validation.normalize_mainland`, deduplicated (a set of ints: ~100 MB for a
million numbers), and cut into chunks of at most 2000. Chunk ``i`` is an ordinary SMS job with
idempotency key ``campaign:<id>:<i>`` (``campaign:<id>:g<n>:<i>`` once the id was discarded
``n`` times: :func:`chunk_key`) and ``campaign_id``/``chunk_index`` in its payload.

The id is claimed only when the first valid number is read: until then refused entries go to
this run's own list and nothing else is written, so an input without a valid number (a wrong
CSV column, an empty file) raises :class:`NoValidNumber` and leaves no key behind; the same id
can be started again with the right input. :func:`preview_campaign` (``--dry-run``) counts and
samples an input without touching Redis at all.

Redis layout, ``<c>`` = ``sendcloud:campaign:<id>`` (every key expires ``retention`` seconds
after the campaign's last write):

``<c>``            hash: settings ``fingerprint``, ``generation`` (see discard), ``state``
                   (enqueuing → enqueued → finished), totals (``input valid invalid
                   duplicates``; ``chunks`` and the input ``digest`` only once sealed), counters
                   written by workers (``chunks_done accepted failed cancelled review``),
                   ``cancel_requested_at``, timestamps
``<c>:phones``     hash: chunk index → its numbers, comma-separated (the report's source)
``<c>:enqueued``   bitmap: bit i set only after ``broker.enqueue`` of chunk i returned
``<c>:done``       bitmap: bit i set by the worker script that counted chunk i
                   (see worker.jobs.campaign)
``<c>:results``    hash: chunk index → its final outcome, statusCode and message; the
                   per-recipient outcomes are in the chunk job's idempotency record
                   (``result``), kept by the worker as long as the campaign
``<c>:invalid``    list: ``<position>\\t<rule>\\t<raw>`` per refused entry, in input order
``<c>:lock``       which producer process is enqueueing (or discarding) now
``sendcloud:campaigns``  sorted set: every campaign id by when it opened (Redis time), the
                   dashboard's list (:mod:`producers.campaign_index`); purge and discard remove
                   the id
``<c>:discarded``  how many times the id was discarded: the generation of the next start
                   (outlives the discarded chunks' records; see
                   :func:`producers.campaign_report.discard_campaign`)

Resume and conflict: a second call with the same id re-reads the input. Each chunk's numbers are
compared with ``<c>:phones`` (and its idempotency record's payload hash); a chunk whose bit in
``<c>:enqueued`` is set, or whose job has left ``queued``, is not enqueued again, while one that
was reserved but never enqueued (the producer died in between) is. The settings fingerprint is
checked before anything is enqueued, and the input digest when sealing; any difference raises
:class:`CampaignConflict`. A chunk whose enqueue returned but whose bit was not yet set when the
producer died is enqueued twice; the worker's claim runs it once.

Two producers of one campaign at once ("start" pressed twice): the second raises
:class:`CampaignBusy`. A lock left by a dead process on this host is taken over at once, one left
on another host after its 30 s lease. A producer that stalled past its lease while the campaign
was discarded stops with :class:`CampaignDiscarded`: every script it runs checks that the
campaign (and its generation) still exists.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from redis.exceptions import WatchError

from producers import validation as v
from producers.contract import (
    CAMPAIGNS_KEY,
    KEY_PREFIX,
    SEND_SMS_ACTOR,
    SMS_QUEUE,
    SMS_RESULTS_STREAM,
    SmsJob,
)
from producers.errors import IdempotencyConflict, ProducerValidationError, SettingError
from producers.idempotency import job_copy, payload_hash
from producers.replies import reply_text
from producers.results import ISO_TIME_LUA

if TYPE_CHECKING:
    from producers.producer import Producer

CHUNK_SIZE = v.MAX_SMS_PHONES
DEFAULT_RETENTION = 30 * 86400


def default_retention() -> int:
    """``SENDCLOUD_CAMPAIGN_TTL`` (seconds), else 30 days: how long a campaign's data lives."""
    raw = os.environ.get("SENDCLOUD_CAMPAIGN_TTL", "").strip()
    if not raw:
        return DEFAULT_RETENTION
    if not raw.isdigit() or int(raw) < 3600:
        raise SettingError("SENDCLOUD_CAMPAIGN_TTL", f"must be whole seconds, at least 3600, "
                           f"got {raw!r}")
    return int(raw)
LOCK_LEASE_MS = 30_000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INVALID_BATCH = 1000
_RAW_LIMIT = 100  # characters of a refused entry kept for the report

Totals = dict[str, int]  # input, valid, invalid, duplicates

# Shared by the seal below and the worker's finish script (worker.jobs.campaign): emits the one
# campaign_finished record when every chunk is counted, guarded by HSETNX-like finished_at.
# The record's fields are documented in producers.results (CAMPAIGN_FINISHED_FIELDS); its
# finished_at is ISO 8601 UTC like every record's, while the hash keeps epoch seconds.
COMPLETE_LUA = ISO_TIME_LUA + """
local function sendcloud_campaign_complete(meta, stream, maxlen, now)
    local f = redis.call('HMGET', meta, 'chunks', 'chunks_done', 'finished_at', 'campaign_id',
        'input', 'valid', 'invalid', 'duplicates', 'accepted', 'failed', 'cancelled', 'review',
        'cancel_requested_at')
    if (not f[1]) or f[3] or tonumber(f[2] or '0') < tonumber(f[1]) then
        return false
    end
    redis.call('HSET', meta, 'finished_at', now, 'state', 'finished')
    local cid = f[4] or ''
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
        'key', 'campaign:' .. cid, 'kind', 'campaign', 'outcome', 'campaign_finished',
        'campaign_id', cid, 'input', f[5] or '0', 'valid', f[6] or '0', 'invalid', f[7] or '0',
        'duplicates', f[8] or '0', 'chunks', f[1], 'accepted', f[9] or '0', 'failed', f[10] or '0',
        'cancelled', f[11] or '0', 'needs_review', f[12] or '0',
        'cancel_requested', f[13] and '1' or '0', 'finished_at', sendcloud_iso_utc(now))
end
"""

# Times a campaign records come from Redis's clock, like every other decision about time.
_REDIS_NOW_LUA = """
local function sendcloud_now()
    local t = redis.call('TIME')
    return string.format('%d.%06d', t[1], t[2])
end
"""

# KEYS: meta, discarded, the campaign index. ARGV: fingerprint, campaign_id, template_id,
# retention.
# Replies {created (1/0), stored fingerprint, generation}. A new campaign takes its generation
# from the id's discard count, so its chunk keys are new ones (see chunk_key).
_OPEN_LUA = _REDIS_NOW_LUA + """
local stored = redis.call('HMGET', KEYS[1], 'fingerprint', 'generation')
if stored[1] then return {0, stored[1], stored[2] or '0'} end
local generation = redis.call('GET', KEYS[2]) or '0'
local now = sendcloud_now()
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'campaign_id', ARGV[2],
    'template_id', ARGV[3], 'state', 'enqueuing', 'created_at', now,
    'retention', ARGV[4], 'generation', generation)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[3], now, ARGV[2])
return {1, ARGV[1], generation}
"""

# Whether the campaign this run opened still exists: not discarded (nor discarded and started
# again) while the run stalled past its lock's lease. ARGV[g] is the run's generation.
_SAME_CAMPAIGN_LUA = """
local function sendcloud_same_campaign(meta, generation)
    local f = redis.call('HMGET', meta, 'fingerprint', 'generation')
    return f[1] and (f[2] or '0') == generation
end
"""

# KEYS: meta, phones, enqueued, lock. ARGV: index, csv, token, lease_ms, retention, generation.
# -1: the chunk differs from the one recorded (or lies past a sealed campaign's end);
# -2: another producer holds the lock; -3: the campaign was discarded; else the chunk's
# enqueued bit.
_CHUNK_LUA = _SAME_CAMPAIGN_LUA + """
if not sendcloud_same_campaign(KEYS[1], ARGV[6]) then return -3 end
local lock = redis.call('GET', KEYS[4])
if lock and lock ~= ARGV[3] then return -2 end
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
local sealed = redis.call('HGET', KEYS[1], 'chunks')
if sealed and tonumber(ARGV[1]) >= tonumber(sealed) then return -1 end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing and existing ~= ARGV[2] then return -1 end
if not existing then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return redis.call('GETBIT', KEYS[3], ARGV[1])
"""

# KEYS: meta, invalid (this run's), invalid (final), phones, stream.
# ARGV: digest, input, valid, invalid, duplicates, chunks, maxlen, retention, generation.
# -1: sealed before with another digest, or more chunks recorded than this input has;
# -3: the campaign was discarded.
_SEAL_LUA = COMPLETE_LUA + _SAME_CAMPAIGN_LUA + _REDIS_NOW_LUA + """
if not sendcloud_same_campaign(KEYS[1], ARGV[9]) then
    redis.call('DEL', KEYS[2])
    return -3
end
local old = redis.call('HGET', KEYS[1], 'digest')
if old then
    redis.call('DEL', KEYS[2])
    if old ~= ARGV[1] then return -1 end
    return 0
end
if redis.call('HLEN', KEYS[4]) > tonumber(ARGV[6]) then return -1 end
local now = sendcloud_now()
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'input', ARGV[2], 'valid', ARGV[3],
    'invalid', ARGV[4], 'duplicates', ARGV[5], 'chunks', ARGV[6], 'sealed_at', now)
if redis.call('HGET', KEYS[1], 'state') == 'enqueuing' then
    redis.call('HSET', KEYS[1], 'state', 'enqueued')
end
if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[3])
    redis.call('EXPIRE', KEYS[3], ARGV[8])
else
    redis.call('DEL', KEYS[3])
end
sendcloud_campaign_complete(KEYS[1], KEYS[5], ARGV[7], now)
return 1
"""


class CampaignConflict(ValueError):
    """The campaign id was already used with other settings or another list of numbers."""

    def __init__(self, campaign_id: str, detail: str) -> None:
        self.campaign_id = campaign_id
        self.field = "campaign_id"
        self.rule = f"was already started with different input ({detail})"
        super().__init__(f"campaign_id {campaign_id!r} {self.rule}")


class CampaignBusy(RuntimeError):
    """Another process is enqueueing this campaign right now."""

    def __init__(self, campaign_id: str, holder: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(f"campaign {campaign_id!r} is being enqueued by another process "
                         f"({holder})")


class CampaignDiscarded(RuntimeError):
    """The campaign was discarded while this call was enqueueing it (the call had stalled past
    its lock's lease): the call stopped, and the chunks it had enqueued end unsent."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(f"campaign {campaign_id!r} was discarded while this start was running")


class NoValidNumber(ProducerValidationError):
    """The input holds no valid number. Nothing was written: the campaign id is still free."""

    def __init__(self, entries: int, first_bad: tuple[int, str, str] | None) -> None:
        self.entries = entries
        #: (position, rule, entry) of the first refused entry; None for an empty input.
        self.first_bad = first_bad
        if first_bad is None:
            rule = "no valid number: the input has no entry"
        else:
            position, why, text = first_bad
            rule = (f"no valid number in {entries} entries (first bad entry: {text!r} at "
                    f"entry {position}: {why})")
        super().__init__("phones", rule)


@dataclass(frozen=True)
class CampaignStart:
    campaign_id: str
    input: int
    valid: int
    invalid: int
    duplicates: int
    chunks: int
    enqueued: int  # chunks this call enqueued
    skipped: int  # chunks already enqueued or finished before this call
    resumed: bool  # the campaign existed before this call


def campaign_key(campaign_id: str) -> str:
    return f"{KEY_PREFIX}campaign:{campaign_id}"


def chunk_key(campaign_id: str, index: int, generation: int = 0) -> str:
    """The idempotency key (and sendRequestId) of chunk ``index``.

    A campaign started again after ``generation`` discards of its id has keys of its own, so a
    discarded run's message still in a queue can never run as a chunk of the new one (its
    record is final: see :func:`producers.campaign_report.discard_campaign`). Ids hold no
    ``:``, so no two campaigns' keys can meet.
    """
    return f"{chunk_prefix(campaign_id, generation)}{index}"


def chunk_prefix(campaign_id: str, generation: int = 0) -> str:
    return f"campaign:{campaign_id}:" + (f"g{generation}:" if generation else "")


def validate_campaign_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        rule = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        raise v.fail("campaign_id", rule, value)
    return value


def results_maxlen() -> int:
    raw = os.environ.get("SENDCLOUD_RESULTS_MAXLEN", "")
    return int(raw) if raw.isdigit() and int(raw) >= 100 else 100_000


def _holder() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex})


def _describe(raw: bytes | str | None) -> str:
    try:
        info = json.loads(raw or b"{}")
        return f"pid {info['pid']} on {info['host']}"
    except (ValueError, KeyError, TypeError):
        return "unknown holder"


def _stale(raw: bytes | str) -> bool:
    """A lock held by a process of this host that no longer exists."""
    try:
        info = json.loads(raw)
        if info["host"] != socket.gethostname():
            return False
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, PermissionError):
        return False
    return False


class CampaignLock:
    """``<c>:lock``: one process at a time enqueues (or discards) a campaign."""

    def __init__(self, client: redis.Redis, campaign_id: str) -> None:
        self.redis = client
        self.cid = campaign_id
        self.lock = f"{campaign_key(campaign_id)}:lock"
        self.token = _holder()

    def acquire(self) -> None:
        if self.redis.set(self.lock, self.token, nx=True, px=LOCK_LEASE_MS):
            return
        current = self.redis.get(self.lock)
        if current is not None and _stale(current):
            # Compare-and-set, so two resumers racing for a dead holder's lock cannot both win.
            with self.redis.pipeline() as pipe:
                pipe.watch(self.lock)
                if pipe.get(self.lock) == current:
                    pipe.multi()
                    pipe.set(self.lock, self.token, px=LOCK_LEASE_MS)
                    try:
                        pipe.execute()
                        return
                    except WatchError:  # another resumer moved first
                        pass
        raise CampaignBusy(self.cid, _describe(self.redis.get(self.lock)))

    def release(self) -> None:
        self.redis.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
            " return 0",
            1, self.lock, self.token,
        )


class _Run(CampaignLock):
    """One pass over the input; holds the lock and the per-chunk scripts."""

    def __init__(self, producer: Producer, campaign_id: str, retention: int) -> None:
        super().__init__(producer.redis, campaign_id)
        self.producer = producer
        self.meta = campaign_key(campaign_id)
        self.retention = retention
        self.tmp_invalid = f"{self.meta}:invalid:{uuid.uuid4().hex}"
        self._chunk = self.redis.register_script(_CHUNK_LUA)
        self._seal = self.redis.register_script(_SEAL_LUA)
        self.enqueued = self.skipped = 0
        self.opened = False  # the campaign record exists (the first valid number was read)
        self.generation = 0

    def open(self, fingerprint: str, template_id: int) -> bool:
        """Record the settings on first start (one script: never half-written); True if the
        campaign already existed."""
        created, stored, generation = self.redis.eval(
            _OPEN_LUA, 3, self.meta, f"{self.meta}:discarded", CAMPAIGNS_KEY, fingerprint,
            self.cid, template_id, self.retention,
        )
        if reply_text(stored) != fingerprint:
            raise CampaignConflict(self.cid, "the template, vars, msg_type or tag differ")
        self.opened, self.generation = True, int(generation)
        return not int(created)

    def chunk(self, index: int, payload: SmsJob, totals: Totals, invalid: list[str]) -> None:
        keys = [self.meta, f"{self.meta}:phones", f"{self.meta}:enqueued", self.lock]
        args: list[str | int] = [
            index, ",".join(payload["phones"]), self.token, LOCK_LEASE_MS, self.retention,
            self.generation,
        ]
        bit = int(self._chunk(keys=keys, args=args))
        if bit == -3:
            raise CampaignDiscarded(self.cid)
        if bit == -2:
            raise CampaignBusy(self.cid, _describe(self.redis.get(self.lock)))
        if bit == -1:
            raise CampaignConflict(self.cid, f"chunk {index} differs")
        if bit == 1:
            self.skipped += 1
        else:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=SMS_QUEUE, actor_name=SEND_SMS_ACTOR, args=(dict(payload),),
                kwargs={}, options={},
            )
            try:
                reservation = self.producer.store.reserve(
                    payload["key"], payload_hash(payload), "sms", self.producer.idempotency_ttl,
                    job=job_copy(message),
                )
            except IdempotencyConflict:
                raise CampaignConflict(self.cid, f"chunk {index} differs") from None
            if reservation.should_enqueue:
                message.args[0]["enqueued_at"] = reservation.now
                self.producer.broker.enqueue(message)
                self.enqueued += 1
            else:
                self.skipped += 1
        self.progress(totals, invalid, setbit=index)

    def progress(self, totals: Totals, invalid: list[str], setbit: int | None = None) -> None:
        """Flush refused entries and provisional totals (and a chunk's enqueued bit) at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            if setbit is not None:
                pipe.setbit(f"{self.meta}:enqueued", setbit, 1)
            if invalid:
                pipe.rpush(self.tmp_invalid, *invalid)
                pipe.expire(self.tmp_invalid, self.retention)
                invalid.clear()
            if self.opened:
                # Totals stay provisional (and a sealed campaign's stay final) until the seal;
                # a discarded campaign's record is not brought back.
                pipe.eval(
                    _SAME_CAMPAIGN_LUA
                    + "if sendcloud_same_campaign(KEYS[1], ARGV[1])"
                    " and redis.call('HEXISTS', KEYS[1], 'digest') == 0 then"
                    " redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end return 0",
                    1, self.meta, self.generation,
                    *[x for item in totals.items() for x in item],
                )
            pipe.pexpire(self.lock, LOCK_LEASE_MS)
            pipe.execute()

    def seal(self, digest: str, totals: Totals, chunks: int) -> None:
        keys = [self.meta, self.tmp_invalid, f"{self.meta}:invalid", f"{self.meta}:phones",
                SMS_RESULTS_STREAM]
        args: list[str | int] = [digest, totals["input"], totals["valid"], totals["invalid"],
                totals["duplicates"], chunks, results_maxlen(), self.retention, self.generation]
        sealed = int(self._seal(keys=keys, args=args))
        if sealed == -3:
            raise CampaignDiscarded(self.cid)
        if sealed == -1:
            raise CampaignConflict(self.cid, "the list of numbers differs")
        with self.redis.pipeline(transaction=False) as pipe:
            for suffix in ("", ":phones", ":enqueued", ":invalid"):
                pipe.expire(self.meta + suffix, self.retention)
            pipe.execute()


def run_campaign(
    producer: Producer,
    campaign_id: str,
    template_id: int,
    phones: Iterable[Any],
    vars: dict[str, str] | None = None,
    *,
    msg_type: int = 0,
    tag: dict[str, str] | None = None,
    retention: int | None = None,
) -> CampaignStart:
    """Enqueue campaign ``campaign_id`` through ``producer``: ``template_id`` to every valid
    number of ``phones``. Called as :meth:`Producer.start_campaign` or
    :func:`producers.start_campaign`.

    ``phones`` may be any iterable (a file being read); refused entries go to the report as
    ``invalid``. Repeating the call with the same input resumes; other input raises
    :class:`CampaignConflict`; a call while another process enqueues it, :class:`CampaignBusy`.
    An input without a valid number raises :class:`NoValidNumber` and leaves nothing in Redis.
    """
    cid = validate_campaign_id(campaign_id)
    settings = _settings(template_id, vars, msg_type, tag)
    fingerprint = hashlib.sha256(
        v.compact_json({**settings, "chunk_size": CHUNK_SIZE}).encode()
    ).hexdigest()
    retention = default_retention() if retention is None else retention
    run = _Run(producer, cid, v.validate_positive_int(retention, "retention"))
    run.acquire()
    collecting = gc.isenabled()
    try:
        # Every regex match allocates a GC-tracked object: with the collector on, a million
        # numbers trigger thousands of collections and take ~3x as long. The loop makes no
        # reference cycles, so pausing it frees nothing later than reference counting would.
        gc.disable()
        return _stream(run, settings, phones, fingerprint)
    finally:
        if collecting:
            gc.enable()
        if not run.opened:
            run.redis.delete(run.tmp_invalid)  # a run that claimed no id leaves no key
        run.release()


def _settings(template_id: int, vars: dict[str, str] | None, msg_type: int,
              tag: dict[str, str] | None) -> SmsJob:
    return {
        "key": "",
        "template_id": v.validate_positive_int(template_id, "template_id"),
        "phones": [],
        "vars": v.validate_sms_vars(vars, "vars"),
        "msg_type": v.validate_choice(msg_type, "msg_type", (0, 1)),
        "tag": v.validate_tag(tag, "tag"),
        "enqueued_at": 0.0,
    }


def _stream(run: _Run, settings: SmsJob, phones: Iterable[Any], fingerprint: str
            ) -> CampaignStart:
    # The hot loop: plain locals only (no closure cells, no dict updates per number).
    normalize = v.normalize_mainland
    seen: set[int] = set()
    chunk: list[str] = []
    invalid: list[str] = []
    digest = hashlib.sha256()
    position = index = refused = duplicates = 0
    resumed = False
    first_bad: tuple[int, str, str] | None = None
    for raw in phones:
        position += 1
        phone = normalize(raw.strip()) if type(raw) is str else None
        if phone is None:
            phone, rule = _slow_normalize(raw)
            if phone is None:
                refused += 1
                text = _raw_text(raw)
                if first_bad is None:
                    first_bad = (position, rule, text)
                digest.update(f"!{text}\n".encode())
                invalid.append(f"{position}\t{rule}\t{text}")
                if len(invalid) >= _INVALID_BATCH:
                    totals = _totals(position, len(seen), refused, duplicates)
                    run.progress(totals, invalid)
                continue
        number = int(phone)
        if number in seen:
            duplicates += 1
            continue
        if not seen:
            # The first valid number: only now is the id claimed (or its settings checked
            # against the stored ones), so an input without one leaves no campaign behind.
            resumed = run.open(fingerprint, settings["template_id"])
        seen.add(number)
        chunk.append(phone)
        if len(chunk) == CHUNK_SIZE:
            totals = _totals(position, len(seen), refused, duplicates)
            _flush(run, settings, index, chunk, digest, totals, invalid)
            chunk = []
            index += 1
    if not seen:
        raise NoValidNumber(position, first_bad)
    if chunk:
        _flush(run, settings, index, chunk, digest,
               _totals(position, len(seen), refused, duplicates), invalid)
        index += 1
    totals = _totals(position, len(seen), refused, duplicates)
    digest.update(f"duplicates={duplicates}".encode())
    run.progress(totals, invalid)
    run.seal(digest.hexdigest(), totals, index)
    return CampaignStart(run.cid, chunks=index, enqueued=run.enqueued, skipped=run.skipped,
                         resumed=resumed, **totals)


def _totals(position: int, valid: int, refused: int, duplicates: int) -> Totals:
    return {"input": position, "valid": valid, "invalid": refused, "duplicates": duplicates}


def _flush(run: _Run, settings: SmsJob, index: int, chunk: list[str], digest: Any,
           totals: Totals, invalid: list[str]) -> None:
    payload: SmsJob = {
        "key": chunk_key(run.cid, index, run.generation),
        "template_id": settings["template_id"],
        "phones": chunk, "vars": settings["vars"], "msg_type": settings["msg_type"],
        "tag": settings["tag"], "enqueued_at": 0.0,
        "campaign_id": run.cid, "chunk_index": index,
    }
    digest.update(",".join(chunk).encode() + b"\n")
    run.chunk(index, payload, totals, invalid)


def _slow_normalize(raw: object) -> tuple[str | None, str]:
    """Entries the fast path refused: bytes, ints and surrounding whitespace are accepted."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            return None, "must be text"
    if v.is_int(raw):
        raw = str(raw)
    if not isinstance(raw, str):
        return None, "must be a string"
    text = raw.strip()
    if not text:
        return None, "is empty"
    return v.normalize_mainland(text), v.MAINLAND_RULE


def _raw_text(raw: object) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.strip().replace("\t", " ").replace("\n", " ")[:_RAW_LIMIT]


@dataclass(frozen=True)
class CampaignPreview:
    """What :func:`preview_campaign` found: the counts a start would record, and samples."""

    campaign_id: str
    input: int
    valid: int
    invalid: int
    duplicates: int
    chunks: int
    first_valid: tuple[str, ...]  # normalised, in input order
    first_invalid: tuple[tuple[int, str, str], ...]  # (position, rule, entry)


def preview_campaign(
    campaign_id: str,
    template_id: int,
    phones: Iterable[Any],
    vars: dict[str, str] | None = None,
    *,
    msg_type: int = 0,
    tag: dict[str, str] | None = None,
    samples: int = 5,
) -> CampaignPreview:
    """A dry run of :func:`producers.start_campaign`: validates the settings and reads the whole
    input with the same rules, and touches no Redis at all (not even to read)."""
    cid = validate_campaign_id(campaign_id)
    _settings(template_id, vars, msg_type, tag)
    seen: set[int] = set()
    first_valid: list[str] = []
    first_invalid: list[tuple[int, str, str]] = []
    position = refused = duplicates = 0
    for raw in phones:
        position += 1
        phone = v.normalize_mainland(raw.strip()) if type(raw) is str else None
        rule = ""
        if phone is None:
            phone, rule = _slow_normalize(raw)
        if phone is None:
            refused += 1
            if len(first_invalid) < samples:
                first_invalid.append((position, rule, _raw_text(raw)))
            continue
        number = int(phone)
        if number in seen:
            duplicates += 1
            continue
        seen.add(number)
        if len(first_valid) < samples:
            first_valid.append(phone)
    return CampaignPreview(
        cid, input=position, valid=len(seen), invalid=refused, duplicates=duplicates,
        chunks=-(-len(seen) // CHUNK_SIZE), first_valid=tuple(first_valid),
        first_invalid=tuple(first_invalid),
    )
