"""Bulk SMS campaigns: a file of numbers sent once each, resumable, counted, reported per number.

``start_campaign`` streams the input once: each number is normalised with
:func:`producers.validation.normalize_mainland`, deduplicated (a set of ints: ~100 MB for a
million numbers), and cut into chunks of at most 2000. Chunk ``i`` is an ordinary SMS job with
idempotency key ``campaign:<id>:<i>`` and ``campaign_id``/``chunk_index`` in its payload.

Redis layout, ``<c>`` = ``sendcloud:campaign:<id>`` (every key expires ``retention`` seconds
after the campaign's last write):

``<c>``            hash: settings ``fingerprint``, ``state`` (enqueuing → enqueued → finished),
                   totals (``input valid invalid duplicates``; ``chunks`` and the input ``digest``
                   only once sealed), counters written by workers (``chunks_done accepted failed
                   cancelled review``), ``cancel_requested_at``, timestamps
``<c>:phones``     hash: chunk index → its numbers, comma-separated (the report's source)
``<c>:enqueued``   bitmap: bit i set only after ``broker.enqueue`` of chunk i returned
``<c>:done``       bitmap: bit i set by the worker script that counted chunk i
                   (see worker.jobs.campaign)
``<c>:results``    hash: chunk index → its final outcome, statusCode and message; the
                   per-recipient outcomes are in the chunk job's idempotency record
                   (``result``), kept by the worker as long as the campaign
``<c>:invalid``    list: ``<position>\\t<rule>\\t<raw>`` per refused entry, in input order
``<c>:lock``       which producer process is enqueueing now

Resume and conflict: a second call with the same id re-reads the input. Each chunk's numbers are
compared with ``<c>:phones`` (and its idempotency record's payload hash); a chunk whose bit in
``<c>:enqueued`` is set, or whose job has left ``queued``, is not enqueued again, while one that
was reserved but never enqueued (the producer died in between) is. The settings fingerprint is
checked before anything is enqueued, and the input digest when sealing; any difference raises
:class:`CampaignConflict`. A chunk whose enqueue returned but whose bit was not yet set when the
producer died is enqueued twice; the worker's claim runs it once.

Two producers of one campaign at once ("start" pressed twice): the second raises
:class:`CampaignBusy`. A lock left by a dead process on this host is taken over at once, one left
on another host after its 30 s lease.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq
from redis.exceptions import WatchError

from producers import validation as v
from producers.contract import KEY_PREFIX, SEND_SMS_ACTOR, SMS_QUEUE, SMS_RESULTS_STREAM, SmsJob
from producers.errors import IdempotencyConflict
from producers.idempotency import job_copy, payload_hash

if TYPE_CHECKING:
    from producers.producer import Producer

CHUNK_SIZE = v.MAX_SMS_PHONES
DEFAULT_RETENTION = 30 * 86400
LOCK_LEASE_MS = 30_000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INVALID_BATCH = 1000
_RAW_LIMIT = 100  # characters of a refused entry kept for the report

Totals = dict[str, int]  # input, valid, invalid, duplicates

# Shared by the seal below and the worker's finish script (worker.jobs.campaign): emits the one
# campaign_finished record when every chunk is counted, guarded by HSETNX-like finished_at.
COMPLETE_LUA = """
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
        'cancel_requested', f[13] and '1' or '0', 'finished_at', now)
end
"""

# KEYS: meta. ARGV: fingerprint, campaign_id, template_id, now, retention.
_OPEN_LUA = """
local stored = redis.call('HGET', KEYS[1], 'fingerprint')
if stored then return {0, stored} end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'campaign_id', ARGV[2],
    'template_id', ARGV[3], 'state', 'enqueuing', 'created_at', ARGV[4], 'retention', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, ARGV[1]}
"""

# KEYS: meta, phones, enqueued, lock. ARGV: index, csv, token, lease_ms, retention.
# -1: the chunk differs from the one recorded (or lies past a sealed campaign's end);
# -2: another producer holds the lock; else the chunk's enqueued bit.
_CHUNK_LUA = """
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
# ARGV: digest, input, valid, invalid, duplicates, chunks, now, maxlen, retention.
# -1: sealed before with another digest, or more chunks recorded than this input has.
_SEAL_LUA = COMPLETE_LUA + """
local old = redis.call('HGET', KEYS[1], 'digest')
if old then
    redis.call('DEL', KEYS[2])
    if old ~= ARGV[1] then return -1 end
    return 0
end
if redis.call('HLEN', KEYS[4]) > tonumber(ARGV[6]) then return -1 end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'input', ARGV[2], 'valid', ARGV[3],
    'invalid', ARGV[4], 'duplicates', ARGV[5], 'chunks', ARGV[6], 'sealed_at', ARGV[7])
if redis.call('HGET', KEYS[1], 'state') == 'enqueuing' then
    redis.call('HSET', KEYS[1], 'state', 'enqueued')
end
if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[3])
    redis.call('EXPIRE', KEYS[3], ARGV[9])
else
    redis.call('DEL', KEYS[3])
end
sendcloud_campaign_complete(KEYS[1], KEYS[5], ARGV[8], ARGV[7])
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


def chunk_key(campaign_id: str, index: int) -> str:
    """The idempotency key (and sendRequestId) of chunk ``index``."""
    return f"campaign:{campaign_id}:{index}"


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


class _Run:
    """One pass over the input; holds the lock and the per-chunk scripts."""

    def __init__(self, producer: Producer, campaign_id: str, retention: int) -> None:
        self.producer = producer
        self.redis = producer.redis
        self.cid = campaign_id
        self.meta = campaign_key(campaign_id)
        self.retention = retention
        self.token = _holder()
        self.lock = f"{self.meta}:lock"
        self.tmp_invalid = f"{self.meta}:invalid:{uuid.uuid4().hex}"
        self._chunk = self.redis.register_script(_CHUNK_LUA)
        self._seal = self.redis.register_script(_SEAL_LUA)
        self.enqueued = self.skipped = 0

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

    def chunk(self, index: int, payload: SmsJob, totals: Totals, invalid: list[str]) -> None:
        keys = [self.meta, f"{self.meta}:phones", f"{self.meta}:enqueued", self.lock]
        args: list[str | int] = [
            index, ",".join(payload["phones"]), self.token, LOCK_LEASE_MS, self.retention
        ]
        bit = int(self._chunk(keys=keys, args=args))
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
            # Totals stay provisional (and a sealed campaign's stay final) until the seal.
            pipe.eval(
                "if redis.call('HEXISTS', KEYS[1], 'digest') == 0 then"
                " redis.call('HSET', KEYS[1], unpack(ARGV)) end return 0",
                1, self.meta, *[x for item in totals.items() for x in item],
            )
            pipe.pexpire(self.lock, LOCK_LEASE_MS)
            pipe.execute()

    def seal(self, digest: str, totals: Totals, chunks: int) -> None:
        keys = [self.meta, self.tmp_invalid, f"{self.meta}:invalid", f"{self.meta}:phones",
                SMS_RESULTS_STREAM]
        args: list[str | int] = [digest, totals["input"], totals["valid"], totals["invalid"],
                totals["duplicates"], chunks, f"{time.time():.6f}", results_maxlen(),
                self.retention]
        if int(self._seal(keys=keys, args=args)) == -1:
            raise CampaignConflict(self.cid, "the list of numbers differs")
        with self.redis.pipeline(transaction=False) as pipe:
            for suffix in ("", ":phones", ":enqueued", ":invalid"):
                pipe.expire(self.meta + suffix, self.retention)
            pipe.execute()


def _open(run: _Run, fingerprint: str, template_id: int) -> bool:
    """Record the settings on first start (one script: never half-written); True if the
    campaign already existed."""
    created, stored = run.redis.eval(
        _OPEN_LUA, 1, run.meta, fingerprint, run.cid, template_id, f"{time.time():.6f}",
        run.retention,
    )
    if _text(stored) != fingerprint:
        raise CampaignConflict(run.cid, "the template, vars, msg_type or tag differ")
    return not int(created)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def run_campaign(
    producer: Producer,
    campaign_id: str,
    template_id: int,
    phones: Iterable[Any],
    vars: dict[str, str] | None = None,
    *,
    msg_type: int = 0,
    tag: dict[str, str] | None = None,
    retention: int = DEFAULT_RETENTION,
) -> CampaignStart:
    """Enqueue campaign ``campaign_id`` through ``producer``: ``template_id`` to every valid
    number of ``phones``. Called as :meth:`Producer.start_campaign` or
    :func:`producers.start_campaign`.

    ``phones`` may be any iterable (a file being read); refused entries go to the report as
    ``invalid``. Repeating the call with the same input resumes; other input raises
    :class:`CampaignConflict`; a call while another process enqueues it, :class:`CampaignBusy`.
    """
    cid = validate_campaign_id(campaign_id)
    settings: SmsJob = {
        "key": "",
        "template_id": v.validate_positive_int(template_id, "template_id"),
        "phones": [],
        "vars": v.validate_sms_vars(vars, "vars"),
        "msg_type": v.validate_choice(msg_type, "msg_type", (0, 1)),
        "tag": v.validate_tag(tag, "tag"),
        "enqueued_at": 0.0,
    }
    fingerprint = hashlib.sha256(
        v.compact_json({**settings, "chunk_size": CHUNK_SIZE}).encode()
    ).hexdigest()
    run = _Run(producer, cid, v.validate_positive_int(retention, "retention"))
    run.acquire()
    collecting = gc.isenabled()
    try:
        resumed = _open(run, fingerprint, settings["template_id"])
        # Every regex match allocates a GC-tracked object: with the collector on, a million
        # numbers trigger thousands of collections and take ~3x as long. The loop makes no
        # reference cycles, so pausing it frees nothing later than reference counting would.
        gc.disable()
        return _stream(run, settings, phones, resumed)
    finally:
        if collecting:
            gc.enable()
        run.release()


def _stream(run: _Run, settings: SmsJob, phones: Iterable[Any], resumed: bool) -> CampaignStart:
    # The hot loop: plain locals only (no closure cells, no dict updates per number).
    normalize = v.normalize_mainland
    seen: set[int] = set()
    chunk: list[str] = []
    invalid: list[str] = []
    digest = hashlib.sha256()
    position = index = refused = duplicates = 0
    for raw in phones:
        position += 1
        phone = normalize(raw.strip()) if type(raw) is str else None
        if phone is None:
            phone, rule = _slow_normalize(raw)
            if phone is None:
                refused += 1
                text = _raw_text(raw)
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
        seen.add(number)
        chunk.append(phone)
        if len(chunk) == CHUNK_SIZE:
            totals = _totals(position, len(seen), refused, duplicates)
            _flush(run, settings, index, chunk, digest, totals, invalid)
            chunk = []
            index += 1
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
        "key": chunk_key(run.cid, index), "template_id": settings["template_id"],
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

