"""A campaign chunk's result, stored once and compactly.

A chunk is 2000 numbers. Its final record could list every recipient (phone, outcome, smsId,
statusCode, message): about 180 bytes a number, written twice (the job's record and its stream
entry). Most of that repeats what is already known: the phones are in the campaign's
``<c>:phones`` hash, and every recipient of a chunk shares its outcome, statusCode and message
but for the few SendCloud refused. So a chunk keeps:

- in its **stream entry** and as what ``get_result`` returns (:data:`CHUNK_FIELDS` in
  ``producers.results``): the chunk's outcome, statusCode and message, its counts
  (``accepted``, ``failed``, ``cancelled``, ``review``) and ``failures``, the recipients that
  differ from the chunk's own outcome (refused numbers of a 311, each with SendCloud's reason);
- in its **job record** only (``result``), besides those: ``sms_ids_packed``, the smsIds in the
  order of the chunk's phones, without the ``$<phone>`` they end with, newline-joined,
  zlib-compressed and base64-encoded: a few bytes a number.

:func:`recipients` rebuilds every recipient from the phones and that record; the campaign
report and ``producers.campaign_recipients`` read them so. The worker builds the record with
:func:`compact` (counts computed once, in Python, never by decoding JSON in Redis).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

#: How a recipient's outcome counts in the campaign's totals.
CLASSES = {"sent": "accepted", "duplicate": "accepted", "failed": "failed", "expired": "failed",
           "cancelled": "cancelled", "needs_review": "review"}  # fmt: skip
#: How a recipient of a job that ended so reads (a chunk's, unless listed in ``failures``).
RECIPIENT_OUTCOMES = {"sent": "sent", "partial": "sent", "duplicate": "duplicate",
                      "failed": "failed", "expired": "expired", "cancelled": "cancelled",
                      "needs_review": "needs_review"}  # fmt: skip
COUNT_FIELDS = ("accepted", "failed", "cancelled", "review")


class Recipient(NamedTuple):
    phone: str
    outcome: str
    sms_id: str | None
    status_code: int | None
    message: str
    #: For an accepted number: pending | delivered | undelivered | rejected (producers.delivery)
    delivery: str = ""
    #: SendCloud's SMSHook statusCode of an undelivered or rejected number.
    delivery_code: int | None = None


def pack_sms_ids(phones: Sequence[str], sms_ids: Sequence[str | None]) -> str:
    tails = []
    for phone, sms_id in zip(phones, sms_ids, strict=True):
        if not sms_id:
            tails.append("")
        elif sms_id.endswith("$" + phone):
            tails.append(sms_id[: -len(phone)])  # keeps the "$": the phone is put back on read
        else:
            tails.append(sms_id + "\t")  # a whole id, marked as such
    return base64.b64encode(zlib.compress("\n".join(tails).encode(), 6)).decode("ascii")


def unpack_sms_ids(phones: Sequence[str], packed: str) -> list[str | None]:
    tails = zlib.decompress(base64.b64decode(packed)).decode().split("\n")
    out: list[str | None] = []
    for phone, tail in zip(phones, tails, strict=False):
        if not tail:
            out.append(None)
        elif tail.endswith("\t"):
            out.append(tail[:-1])
        else:
            out.append(tail + phone)
    return out + [None] * (len(phones) - len(out))


def compact(record: Mapping[str, Any], phones: Sequence[str]) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
    """A chunk's full record (one recipient per phone) as (stored record, stream summary)."""
    outcome = str(record.get("outcome"))
    default = RECIPIENT_OUTCOMES.get(outcome, "needs_review")
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    failures: list[dict[str, Any]] = []
    by_phone = {r.get("phone"): r for r in record.get("recipients") or ()}
    sms_ids: list[str | None] = []
    for phone in phones:
        r = by_phone.get(phone)
        got = default if outcome == "cancelled" or r is None else str(r.get("outcome"))
        counts[CLASSES.get(got, "review")] += 1
        sms_ids.append(r.get("sms_id") if r is not None else None)
        if r is not None and got not in ("sent", "duplicate") and (
            got != default or r.get("status_code") != record.get("status_code")
            or r.get("message") != record.get("message")
        ):
            failures.append({"phone": phone, "outcome": got, "status_code": r.get("status_code"),
                             "message": r.get("message") or ""})  # fmt: skip
    summary = {name: value for name, value in record.items()
               if name not in ("recipients", "sms_ids")}  # fmt: skip
    summary.update(counts, failures=failures)
    stored = dict(summary)
    if any(sms_ids):
        stored["sms_ids_packed"] = pack_sms_ids(phones, sms_ids)
    return stored, summary


def recipients(phones: Sequence[str], stored: Mapping[str, Any]) -> Iterator[Recipient]:
    """Every recipient of a chunk, in the order of its phones, from its stored record."""
    outcome = str(stored.get("outcome") or "")
    default = RECIPIENT_OUTCOMES.get(outcome, "needs_review")
    status_code = stored.get("status_code")
    status = int(status_code) if isinstance(status_code, int | str) and str(status_code) else None
    message = "" if default == "sent" else str(stored.get("message") or "")
    packed = stored.get("sms_ids_packed")
    sms_ids = unpack_sms_ids(phones, packed) if isinstance(packed, str) else [None] * len(phones)
    listed = {f.get("phone"): f for f in stored.get("failures") or () if isinstance(f, dict)}
    for phone, sms_id in zip(phones, sms_ids, strict=True):
        failure = listed.get(phone)
        if failure is not None and outcome != "cancelled":
            code = failure.get("status_code")
            yield Recipient(phone, str(failure.get("outcome") or default), None,
                            int(code) if code not in (None, "") else None,
                            str(failure.get("message") or ""))  # fmt: skip
        else:
            yield Recipient(phone, default, sms_id if default in ("sent", "duplicate") else None,
                            status, message)  # fmt: skip
