"""Reading a campaign back: progress counters, cancellation, and the per-recipient CSV report.

The keys are laid out in :mod:`producers.campaign`. The counters are written by the workers'
finish script in the same step that finalises a chunk (see :mod:`worker.jobs.campaign`), so what
:func:`campaign_status` reads is exact at every moment, not an estimate.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from producers.campaign import campaign_key, chunk_key, validate_campaign_id
from producers.idempotency import FIELD_RESULT, record_key
from producers.producer import Producer, default_producer

_COUNTERS = ("input", "valid", "invalid", "duplicates", "chunks_done", "accepted", "failed",
             "cancelled", "review")


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

    @property
    def pending(self) -> int:
        return max(0, self.valid - self.accepted - self.failed - self.cancelled - self.review)


class CampaignNotFound(ValueError):
    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.field = "campaign_id"
        self.rule = "names no known campaign"
        super().__init__(f"campaign_id {campaign_id!r} names no known campaign")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def campaign_status(campaign_id: str, *, producer: Producer | None = None) -> CampaignStatus:
    """Totals and progress of ``campaign_id``; raises :class:`CampaignNotFound` if unknown."""
    producer = producer or default_producer()
    meta = campaign_key(validate_campaign_id(campaign_id))
    with producer.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(meta)
        pipe.bitcount(f"{meta}:enqueued")
        pipe.hlen(f"{meta}:phones")
        raw, enqueued, recorded = pipe.execute()
    if not raw:
        raise CampaignNotFound(campaign_id)
    fields = {_text(k): _text(val) for k, val in raw.items()}
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
        **counts,
    )


def cancel_campaign(campaign_id: str, *, producer: Producer | None = None) -> CampaignStatus:
    """Stop the campaign: every chunk not yet being sent ends as ``cancelled``.

    A chunk already handed to SendCloud finishes normally; one request is never split.
    """
    producer = producer or default_producer()
    meta = campaign_key(validate_campaign_id(campaign_id))
    done = producer.redis.eval(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end"
        " redis.call('HSETNX', KEYS[1], 'cancel_requested_at', ARGV[1]) return 1",
        1, meta, f"{time.time():.6f}",
    )
    if not done:
        raise CampaignNotFound(campaign_id)
    return campaign_status(campaign_id, producer=producer)


REPORT_HEADER = ("phone", "outcome", "smsId", "statusCode", "message")
_REPORT_BATCH = 50  # chunks per round trip


def campaign_report(campaign_id: str, out: TextIO, *, producer: Producer | None = None) -> int:
    """Write the CSV report (``phone,outcome,smsId,statusCode,message``) to ``out``.

    One row per unique valid number (sent, failed, duplicate, cancelled, needs_review or still
    pending) in input order, then one per refused entry (``invalid``, with its position in the
    input). Returns the number of rows written.
    """
    producer = producer or default_producer()
    status = campaign_status(campaign_id, producer=producer)
    meta = campaign_key(campaign_id)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    rows = 0
    for start in range(0, status.chunks, _REPORT_BATCH):
        indexes = list(range(start, min(start + _REPORT_BATCH, status.chunks)))
        with producer.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(f"{meta}:phones", indexes)
            pipe.hmget(f"{meta}:results", indexes)
            for index in indexes:
                pipe.hget(record_key(chunk_key(campaign_id, index)), FIELD_RESULT)
            phones_list, summaries, *records = pipe.execute()
        for phones_csv, summary, record in zip(phones_list, summaries, records, strict=True):
            if phones_csv is None:
                continue  # recorded by no run yet (the producer is still reading)
            for row in _chunk_rows(_text(phones_csv).split(","), summary, record):
                writer.writerow(row)
                rows += 1
    invalid_key = f"{meta}:invalid"
    for start in range(0, status.invalid, 10_000):
        for entry in producer.redis.lrange(invalid_key, start, start + 9_999):
            position, rule, raw = _text(entry).split("\t", 2)
            writer.writerow((raw, "invalid", "", "", f"input entry {position}: {rule}"))
            rows += 1
    return rows


Row = tuple[str, str, str, str, str]


def _chunk_rows(phones: list[str], summary_text: bytes | None, record_text: bytes | None
                ) -> Iterable[Row]:
    """A chunk's rows: from its job's final record (per recipient) when the worker counted it,
    else ``pending``."""
    if summary_text is None:
        for phone in phones:
            yield phone, "pending", "", "", ""
        return
    summary = json.loads(summary_text)
    by_phone: dict[str, dict[str, Any]] = {}
    try:
        record = json.loads(record_text) if record_text is not None else {}
    except ValueError:
        record = {}
    recipients = record.get("recipients") if isinstance(record, dict) else None
    for item in recipients if isinstance(recipients, list) else []:
        if isinstance(item, dict) and item.get("phone"):
            by_phone[str(item["phone"])] = item
    chunk_outcome = str(summary.get("outcome") or "")
    for phone in phones:
        item = by_phone.get(phone)
        if item is None or chunk_outcome == "cancelled":  # no recipient of it was sent
            yield (phone, chunk_outcome, "", _cell(summary.get("status_code")),
                   _cell(summary.get("message")))
        else:
            yield (phone, _cell(item.get("outcome")) or chunk_outcome, _cell(item.get("sms_id")),
                   _cell(item.get("status_code")), _cell(item.get("message")))


def _cell(value: object) -> str:
    return "" if value is None or value is False else str(value)
