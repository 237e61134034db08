"""The final result record of each job, and the alert record of an account pause.

Every job ends with exactly one final record, appended to a Redis stream in the same Lua script
that sets the job's final state (:meth:`worker.jobs.idempotency.JobLedger.finish`); the same record,
as JSON, is the ``result`` field of the job's idempotency record. Fields are flat: scalars as
text, lists as JSON text, an absent value as ``""``. No field ever holds a secret.

``sendcloud:results:sms`` (SMS, verification codes, voice codes, alerts)

==============  ===========================================================================
key             the job's idempotency key
kind            ``sms`` | ``code`` | ``voice_code`` | ``alert``
outcome         ``sent`` | ``partial`` | ``duplicate`` | ``failed`` | ``expired`` |
                ``needs_review`` (an alert: ``paused``)
status_code     SendCloud's statusCode of the deciding reply; ``""`` when none came
message         SendCloud's message, or why the job ended without a reply
sms_ids         JSON list of the smsIds SendCloud returned
recipients      JSON list, one per phone: ``{phone, outcome, sms_id, status_code, message}``;
                ``outcome`` is ``sent`` | ``failed`` | ``duplicate`` | ``expired`` |
                ``needs_review`` | ``cancelled``; in a 311 partial success each refused
                phone carries SendCloud's own reason in ``message``
attempts        how many attempts claimed the job
finished_at     ISO 8601 UTC, e.g. ``2024-11-22T19:30:00.123456+00:00``
campaign_id     only for a campaign chunk, with ``chunk_index``
==============  ===========================================================================

An alert (``kind=alert``, ``outcome=paused``) is written once per pause of the account after a
499 (insufficient balance); its ``key`` is the pause key ``sendcloud:pause:<smsUser>``, and it
adds ``account`` (the smsUser) and ``paused_seconds``.

``sendcloud:results:members``

==============  ===========================================================================
key             the job's idempotency key (``<key>:part<i>`` for one part of a split call)
kind            ``members_add`` | ``members_update`` | ``members_delete``
outcome         ``done`` | ``failed``
status_code     SendCloud's statusCode, ``""`` when none came
message         SendCloud's message, or why the job ended without a reply
count           members SendCloud added, updated or deleted
invalid         JSON list of ``{address, reason}`` SendCloud refused
part, parts     this request's index and the number of requests, when a call was split
attempts        how many attempts claimed the job
finished_at     ISO 8601 UTC
==============  ===========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.sendcloud.errors import RecipientsRejectedError
from worker.sendcloud.models import MemberOpResult, SmsResult

Record = dict[str, Any]


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat()


def flatten(record: Mapping[str, Any]) -> dict[str, str]:
    """Stream fields: lists and dicts as JSON text, None as "", everything else as text."""
    flat: dict[str, str] = {}
    for name, value in record.items():
        if value is None:
            flat[name] = ""
        elif isinstance(value, list | dict | tuple):
            flat[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            flat[name] = str(value)
    return flat


def recipient(
    phone: str,
    outcome: str,
    *,
    sms_id: str | None = None,
    status_code: int | None = None,
    message: str = "",
) -> Record:
    return {
        "phone": phone,
        "outcome": outcome,
        "sms_id": sms_id,
        "status_code": status_code,
        "message": message,
    }


def recipients_alike(
    phones: Iterable[str], outcome: str, status_code: int | None, message: str
) -> list[Record]:
    return [recipient(p, outcome, status_code=status_code, message=message) for p in phones]


def recipients_of_result(phones: Sequence[str], result: SmsResult) -> list[Record]:
    """Per-phone outcome of a 200 or 311 reply: refused phones carry SendCloud's reason.

    An smsId ends with ``$<phone>``; ids that do not are matched to accepted phones in order.
    """
    refused = {f.phone: f.message for f in result.failed}
    accepted = [p for p in phones if p not in refused]
    # Look phones up by the id's tail instead of scanning: a 2000-number chunk would otherwise
    # cost millions of comparisons. The tail may carry a country prefix, so try each length.
    waiting = {p.lstrip("+"): p for p in accepted}
    lengths = sorted({len(k) for k in waiting}, reverse=True)
    by_phone: dict[str, str] = {}
    unmatched: list[str] = []
    for sms_id in result.sms_ids:
        tail = sms_id.rpartition("$")[2]
        phone = None
        for n in lengths:
            if len(tail) >= n and (phone := waiting.pop(tail[-n:], None)) is not None:
                break
        if phone is None:
            unmatched.append(sms_id)
        else:
            by_phone[phone] = sms_id
    for phone in accepted:
        if phone not in by_phone and unmatched:
            by_phone[phone] = unmatched.pop(0)
    out = []
    for phone in phones:
        if phone in refused:
            out.append(recipient(phone, "failed", status_code=result.status_code,
                                 message=refused[phone]))
        else:
            out.append(recipient(phone, "sent", sms_id=by_phone.get(phone),
                                 status_code=result.status_code))
    return out


def recipients_of_rejection(phones: Sequence[str], error: RecipientsRejectedError) -> list[Record]:
    """312: every phone refused, each with SendCloud's own reason when it gave one."""
    reasons = {str(i.get("phone")): str(i.get("message") or "") for i in error.items}
    return [
        recipient(p, "failed", status_code=error.code, message=reasons.get(p) or error.message)
        for p in phones
    ]


@dataclass(frozen=True)
class Ending:
    """How a job ended: the fields every final record starts with."""

    kind: str
    outcome: str
    status_code: int | None
    message: str
    attempts: int
    now: float


def _record(
    payload: Mapping[str, Any], end: Ending, body: Record, optional: Sequence[str]
) -> Record:
    record: Record = {
        "key": payload["key"],
        "kind": end.kind,
        "outcome": end.outcome,
        "status_code": end.status_code,
        "message": end.message,
        **body,
        "attempts": end.attempts,
        "finished_at": iso(end.now),
    }
    for name in optional:
        if payload.get(name) is not None:
            record[name] = payload[name]
    return record


def sms_record(
    payload: Mapping[str, Any],
    end: Ending,
    *,
    recipients: list[Record],
    sms_ids: Sequence[str] = (),
) -> Record:
    body = {"sms_ids": list(sms_ids), "recipients": recipients}
    return _record(payload, end, body, ("campaign_id", "chunk_index"))


def members_record(
    payload: Mapping[str, Any], end: Ending, result: MemberOpResult | None = None
) -> Record:
    invalid: list[Record] = []
    if result is not None:
        reasons = list(result.reasons)
        for i, address in enumerate(result.invalid_addresses):
            invalid.append({"address": address, "reason": reasons[i] if i < len(reasons) else ""})
    body = {"count": result.count if result is not None else 0, "invalid": invalid}
    return _record(payload, end, body, ("part", "parts"))


def alert_record(
    pause_key: str, *, account: str, status_code: int | None, message: str, seconds: float,
    now: float,
) -> Record:
    return {
        "key": pause_key,
        "kind": "alert",
        "outcome": "paused",
        "status_code": status_code,
        "message": message,
        "account": account,
        "paused_seconds": round(seconds, 3),
        "finished_at": iso(now),
    }
