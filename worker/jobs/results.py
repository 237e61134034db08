"""Building the final result record of each job, and the alert record of an account pause.

Every job ends with exactly one final record, appended to a Redis stream in the same Lua script
that sets the job's final state (:meth:`worker.jobs.idempotency.JobLedger.finish`); the same record,
as JSON, is the ``result`` field of the job's idempotency record.

The fields and their types are documented once, in :mod:`producers.results`
(:data:`~producers.results.RECORD_FIELDS`), which every reader applies. The builders here make
records in that shape: ints as ints (``status_code`` None when no reply came), lists as lists,
times as ISO 8601 UTC text (:func:`iso`). :func:`flatten` turns one into stream fields: lists and
dicts as JSON text, booleans as ``1``/``0``, None as ``""``, the rest as text. No field ever
holds a secret or the job's internal bookkeeping.

The ``campaign_finished`` record is written by Lua (:data:`producers.campaign.COMPLETE_LUA`),
in the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from producers.chunk_results import pack_sms_ids, unpack_sms_ids
from producers.contract import RESULT_STREAMS
from producers.results import iso_utc
from worker.sendcloud.errors import RecipientsRejectedError
from worker.sendcloud.models import MemberOpResult, SmsResult

Record = dict[str, Any]


def iso(now: float) -> str:
    """Epoch seconds (Redis's clock) as the records' ISO 8601 UTC text."""
    return iso_utc(now)


def flatten(record: Mapping[str, Any]) -> dict[str, str]:
    """Stream fields: lists and dicts as JSON text, booleans as 1/0, None as "", the rest as
    text. :func:`producers.results.decode_fields` turns them back into ``record``."""
    flat: dict[str, str] = {}
    for name, value in record.items():
        if value is None:
            flat[name] = ""
        elif isinstance(value, bool):
            flat[name] = "1" if value else "0"
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


def chunk_success_record(
    payload: Mapping[str, Any], end: Ending, phones: Sequence[str], result: SmsResult
) -> Record | None:
    """A campaign chunk's 200/311 record straight in its compact form
    (:mod:`producers.chunk_results`), without a dict per recipient; None when the smsIds do not
    end with their phones in order (then the general path matches them)."""
    refused = {f.phone: f.message for f in result.failed}
    accepted = [p for p in phones if p not in refused] if refused else list(phones)
    ids = result.sms_ids
    if len(ids) != len(accepted) or not all(
        i.endswith("$" + p) for i, p in zip(ids, accepted, strict=True)
    ):
        return None
    by_phone = dict(zip(accepted, ids, strict=True)) if refused else None
    aligned = list(ids) if by_phone is None else [by_phone.get(p) for p in phones]
    failures = [{"phone": p, "outcome": "failed", "status_code": result.status_code,
                 "message": refused[p]} for p in phones if p in refused]  # fmt: skip
    body: Record = {"accepted": len(accepted), "failed": len(refused), "cancelled": 0,
                    "review": 0, "failures": failures}  # fmt: skip
    record = _record(payload, end, body, ("campaign_id", "chunk_index"))
    record["sms_ids_packed"] = pack_sms_ids(phones, aligned)
    return record


def accepted_sms_ids(payload: Mapping[str, Any], record: Mapping[str, Any]) -> list[str | None]:
    """The smsId SendCloud gave each of the job's phones, in their order (None where it gave
    none): what the finish script indexes for delivery receipts (producers.sms_index)."""
    if record.get("outcome") not in ("sent", "partial", "duplicate"):
        return []
    listed = record.get("recipients")
    if isinstance(listed, list):
        return [r.get("sms_id") or None for r in listed]
    packed = record.get("sms_ids_packed")
    if isinstance(packed, str) and "phones" in payload:
        return unpack_sms_ids([str(p) for p in payload["phones"]], packed)
    return []


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
        "paused_seconds": float(round(seconds, 3)),
        "finished_at": iso(now),
    }


# Creates an empty stream only where none exists: XADD with MAXLEN 0 leaves the key with no
# entry, and the EXISTS check keeps it from trimming a stream that holds records.
_CREATE_STREAM_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '0', '*', 'kind', 'created')
  return 1
end
return 0
"""


def create_result_streams(client: redis.Redis) -> int:
    """Make sure every result stream exists, so that a reader's consumer group can be created
    before the first record and a reader pointed at the wrong Redis finds none (see
    ``ResultReader.ensure_group``). Returns how many were created."""
    script = client.register_script(_CREATE_STREAM_LUA)
    return sum(int(script(keys=[stream])) for stream in RESULT_STREAMS)
