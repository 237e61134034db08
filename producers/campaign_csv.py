"""A campaign's per-recipient report: every number with its outcome and delivery, as rows or
as CSV, read a few chunks at a time (constant memory).

Each chunk's recipients come from its job's final record (:mod:`producers.chunk_results`) and
its delivery states (:mod:`producers.delivery`); refused input entries follow, from
``<c>:invalid`` (see :mod:`producers.campaign`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import TextIO

from producers.campaign import campaign_key, chunk_key
from producers.campaign_report import REPORT_HEADER, CampaignStatus, campaign_status
from producers.chunk_results import Recipient, recipients
from producers.delivery import decode as decode_delivery
from producers.delivery import delivery_key
from producers.idempotency import FIELD_RESULT, record_key
from producers.producer import Producer, default_producer
from producers.replies import reply_text

_REPORT_BATCH = 50  # chunks per round trip


def campaign_recipients(
    campaign_id: str, *, producer: Producer | None = None
) -> Iterator[Recipient]:
    """Every unique valid number of the campaign with its outcome, in input order, read a few
    chunks at a time (constant memory): ``pending`` for chunks not yet ended."""
    producer = producer or default_producer()
    status = campaign_status(campaign_id, producer=producer)
    meta = campaign_key(campaign_id)
    generation = int(producer.redis.hget(meta, "generation") or 0)
    for start in range(0, status.chunks, _REPORT_BATCH):
        indexes = list(range(start, min(start + _REPORT_BATCH, status.chunks)))
        with producer.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(f"{meta}:phones", indexes)
            pipe.hmget(f"{meta}:results", indexes)
            for index in indexes:
                pipe.hget(record_key(chunk_key(campaign_id, index, generation)), FIELD_RESULT)
            for index in indexes:
                pipe.get(delivery_key(chunk_key(campaign_id, index, generation)))
            phones_list, summaries, *rest = pipe.execute()
        records, receipts = rest[:len(indexes)], rest[len(indexes):]
        for phones_csv, summary, record, receipt in zip(phones_list, summaries, records, receipts,
                                                        strict=True):
            if phones_csv is None:
                continue  # recorded by no run yet (the producer is still reading)
            phones = reply_text(phones_csv).split(",")
            states = decode_delivery(receipt, len(phones))
            for r, state in zip(_chunk_recipients(phones, summary, record), states, strict=True):
                if r.outcome in ("sent", "duplicate"):
                    r = r._replace(delivery=state.state, delivery_code=state.status_code)
                yield r


def campaign_report(campaign_id: str, out: TextIO, *, producer: Producer | None = None) -> int:
    """Write the CSV report (``phone,outcome,smsId,statusCode,message,delivery,deliveryCode``)
    to ``out``; ``delivery`` (pending, delivered, undelivered, rejected) is given for the
    numbers SendCloud accepted, with the receipt's statusCode for a failed one.

    One row per unique valid number (sent, failed, duplicate, cancelled, needs_review or still
    pending) in input order, then one per refused entry (``invalid``, with its position in the
    input). Returns the number of rows written.
    """
    rows = campaign_report_rows(campaign_id, producer=producer)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    written = 0
    for row in rows:
        writer.writerow(row)
        written += 1
    return written


def campaign_report_rows(campaign_id: str, *, producer: Producer | None = None
                         ) -> Iterator[tuple[str, ...]]:
    """The report's rows after its header (:data:`REPORT_HEADER`), read a few chunks at a
    time as they are yielded: what a server streams. Raises :class:`CampaignNotFound` at once
    for an unknown campaign."""
    producer = producer or default_producer()
    status = campaign_status(campaign_id, producer=producer)
    return _report_rows(campaign_id, status, producer)


def _report_rows(campaign_id: str, status: CampaignStatus, producer: Producer
                 ) -> Iterator[tuple[str, ...]]:
    for r in campaign_recipients(campaign_id, producer=producer):
        yield (r.phone, r.outcome, _cell(r.sms_id), _cell(r.status_code), r.message,
               r.delivery, _cell(r.delivery_code))
    invalid_key = f"{campaign_key(campaign_id)}:invalid"
    for start in range(0, status.invalid, 10_000):
        for entry in producer.redis.lrange(invalid_key, start, start + 9_999):
            position, rule, raw = reply_text(entry).split("\t", 2)
            yield (raw, "invalid", "", "", f"input entry {position}: {rule}", "", "")


def _chunk_recipients(phones: list[str], summary_text: bytes | None, record_text: bytes | None
                      ) -> Iterable[Recipient]:
    """A chunk's recipients: from its job's final record when the worker counted it, else
    ``pending``."""
    if summary_text is None:
        for phone in phones:
            yield Recipient(phone, "pending", None, None, "")
        return
    summary = json.loads(summary_text)
    try:
        record = json.loads(record_text) if record_text is not None else {}
    except ValueError:
        record = {}
    if not isinstance(record, dict) or record.get("outcome") != summary.get("outcome"):
        record = summary  # the record expired or is unreadable: the chunk's own outcome
    yield from recipients(phones, record)


def _cell(value: object) -> str:
    return "" if value is None or value is False else str(value)
