"""The records workers write, and reading them: one documented shape per record, wherever read.

Every record kind has one schema, :data:`RECORD_FIELDS` (field → type), and every reader goes
through :func:`shape_record`, so a record is the same Python dict whether it comes from
:func:`producers.get_result` / :meth:`~producers.Producer.get_result`, from
:meth:`ResultReader.read` (``record.fields``) or from ``sendcloud-jobs results tail --json``:

* ``int`` fields are ints (``status_code`` is None when no reply came; ``paused_seconds`` is a
  float), ``bool`` fields are booleans;
* ``list`` fields are lists, decoded from the JSON text the stream holds;
* ``time`` fields are ISO 8601 strings in UTC, e.g. ``2024-11-22T19:30:00.123456+00:00``
  (without the fraction when it is zero); ``text`` fields are strings, ``""`` for none;
* only the fields below appear: a record never carries the job's internal bookkeeping (claim
  tokens, leases, the job's copy of its message) nor a secret.

On the stream itself (``XRANGE`` from another language) every value is text: lists as JSON,
booleans as ``1``/``0``, a missing number as ``""``, times already ISO 8601.

SMS results, ``sendcloud:results:sms``: one final record per SMS, code or voice-code job (and
campaign chunk), with ``kind`` ``sms`` | ``code`` | ``voice_code``

==============  =======  ===================================================================
key             text     the job's idempotency key
kind            text     ``sms`` | ``code`` | ``voice_code``
outcome         text     ``sent`` | ``partial`` | ``duplicate`` | ``failed`` | ``expired`` |
                         ``needs_review`` | ``cancelled`` (a campaign chunk)
status_code     int      SendCloud's statusCode of the deciding reply; None when none came
message         text     SendCloud's message, or why the job ended without a reply
sms_ids         list     the smsIds SendCloud returned
recipients      list     one per phone: ``{phone, outcome, sms_id, status_code, message}``;
                         ``outcome`` is ``sent`` | ``failed`` | ``duplicate`` | ``expired`` |
                         ``needs_review`` | ``cancelled``; ``sms_id`` and ``status_code`` may
                         be None; in a 311 partial success each refused phone carries
                         SendCloud's own reason in ``message``
attempts        int      how many attempts claimed the job
finished_at     time     when the job ended
==============  =======  ===================================================================

A campaign chunk (``kind=sms`` with ``campaign_id``): its recipients are kept once, compactly
(:mod:`producers.chunk_results`), and read per number with ``producers.campaign_recipients`` or
the campaign report. Its record, on the stream and from ``get_result``:

==============  =======  ===================================================================
key             text     ``campaign:<campaign_id>:<chunk_index>`` (``:g<n>:`` after discards)
kind            text     ``sms``
outcome         text     as above
status_code     int      as above
message         text     as above
campaign_id     text     the campaign
chunk_index     int      the chunk's place in the campaign, from 0
accepted        int      numbers SendCloud accepted (sent, or a duplicate of an earlier send)
failed          int      numbers refused or not sent (failed, expired)
cancelled       int      numbers of a chunk cancelled before it was sent
review          int      numbers whose fate needs a person (needs_review)
failures        list     the numbers whose outcome differs from the chunk's own, e.g. those a
                         311 refused: ``{phone, outcome, status_code, message}``
attempts        int      how many attempts claimed the job
finished_at     time     when the job ended
==============  =======  ===================================================================

An alert (``kind=alert``, ``outcome=paused``), on the same stream, once per pause of the account
after a 499 (insufficient balance)

==============  =======  ===================================================================
key             text     the pause key, ``sendcloud:pause:<smsUser>``
kind            text     ``alert``
outcome         text     ``paused``
status_code     int      499 (None if no reply came)
message         text     SendCloud's message
account         text     the smsUser
paused_seconds  float    how long sending is paused
finished_at     time     when the pause began
==============  =======  ===================================================================

An alert (``kind=alert``, ``outcome=verifications_refused``), on the same stream, once each
time the verification breaker opens (``producers.verification``)

===============  =======  ==================================================================
key              text     ``sendcloud:verify:breaker``
kind             text     ``alert``
outcome          text     ``verifications_refused``
status_code      int      None (no SendCloud reply is involved)
message          text     what tripped it, e.g. ``only 12 of 240 verifications were approved``
reason           text     ``rate`` (sends a minute over the ceiling) or ``approval``
refused_seconds  float    how long new verifications are refused
finished_at      time     when the breaker opened
===============  =======  ==================================================================

A campaign's completion (``kind=campaign``, ``outcome=campaign_finished``), on the same stream,
once per campaign when its last chunk is counted

==================  =======  ===============================================================
key                 text     ``campaign:<campaign_id>``
kind                text     ``campaign``
outcome             text     ``campaign_finished``
campaign_id         text     the campaign's id
input               int      entries read from the input
valid               int      unique valid numbers (each sent in one chunk)
invalid             int      entries refused (in the report as ``invalid``)
duplicates          int      repeated numbers dropped
chunks              int      chunks (SMS jobs) of at most 2000 numbers
accepted            int      numbers SendCloud accepted (sent, or a duplicate of a send)
failed              int      numbers that failed or expired
cancelled           int      numbers of chunks cancelled before they were sent
needs_review        int      numbers whose fate needs a person (``needs_review``)
cancel_requested    bool     whether a cancel was asked for
finished_at         time     when the last chunk was counted
==================  =======  ===============================================================

Member results, ``sendcloud:results:members``

==============  =======  ===================================================================
key             text     the job's idempotency key (``<key>:part<i>`` for one part of a
                         split call)
kind            text     ``members_add`` | ``members_update`` | ``members_delete``
outcome         text     ``done`` | ``duplicate`` | ``failed``
status_code     int      SendCloud's statusCode; None when none came
message         text     SendCloud's message, or why the job ended without a reply
count           int      members SendCloud added, updated or deleted
invalid         list     ``{address, reason}`` per address SendCloud refused
part, parts     int      this request's index and the number of requests, only when a
                         call was split
attempts        int      how many attempts claimed the job
finished_at     time     when the job ended
==============  =======  ===================================================================

emailStatus changes, ``sendcloud:results:email_status`` (see
:mod:`worker.email_status.records`): ``event=status`` records are all text (times ISO 8601
with ``+08:00``, as SendCloud dates them); ``event=gap`` records are text but ``gap_days``
(int).

The sms and members records are also the ``result`` of the job's idempotency record, which is
what ``get_result`` reads; alerts and campaign completions exist only on the stream.

:func:`job_status` is the documented view of a job's idempotency record, what
:meth:`~producers.Producer.get_record` returns and ``sendcloud-jobs results get`` prints
(:data:`JOB_STATUS_FIELDS`).

Reading: without a group the reader remembers the last id it returned and continues after it
(XREAD). With a group it reads new entries for its consumer (XREADGROUP ``>``) and the caller
acknowledges them with :meth:`ResultReader.ack` once handled; :meth:`ResultReader.read_pending`
re-reads entries this consumer received but never acknowledged, e.g. after a crash.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import redis

from producers.contract import SMS_RESULTS_STREAM
from producers.replies import reply_text

FieldType = Literal["text", "int", "float", "bool", "list", "time"]

TEXT: Final = "text"
INT: Final = "int"
FLOAT: Final = "float"
BOOL: Final = "bool"
LIST: Final = "list"
TIME: Final = "time"

Schema = Mapping[str, FieldType]

SMS_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "status_code": INT,
    "message": TEXT,
    "sms_ids": LIST,
    "recipients": LIST,
    "attempts": INT,
    "finished_at": TIME,
}

CHUNK_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "status_code": INT,
    "message": TEXT,
    "campaign_id": TEXT,
    "chunk_index": INT,
    "accepted": INT,
    "failed": INT,
    "cancelled": INT,
    "review": INT,
    "failures": LIST,
    "attempts": INT,
    "finished_at": TIME,
}

MEMBERS_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "status_code": INT,
    "message": TEXT,
    "count": INT,
    "invalid": LIST,
    "part": INT,
    "parts": INT,
    "attempts": INT,
    "finished_at": TIME,
}

ALERT_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "status_code": INT,
    "message": TEXT,
    "account": TEXT,
    "paused_seconds": FLOAT,
    "finished_at": TIME,
}

BREAKER_ALERT_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "status_code": INT,
    "message": TEXT,
    "reason": TEXT,
    "refused_seconds": FLOAT,
    "finished_at": TIME,
}

CAMPAIGN_FINISHED_FIELDS: Schema = {
    "key": TEXT,
    "kind": TEXT,
    "outcome": TEXT,
    "campaign_id": TEXT,
    "input": INT,
    "valid": INT,
    "invalid": INT,
    "duplicates": INT,
    "chunks": INT,
    "accepted": INT,
    "failed": INT,
    "cancelled": INT,
    "needs_review": INT,
    "cancel_requested": BOOL,
    "finished_at": TIME,
}

EMAIL_STATUS_FIELDS: Schema = {
    name: TEXT
    for name in (
        "event", "email_id", "recipient", "api_user", "status", "status_raw", "sub_status",
        "sub_status_desc", "send_log", "request_time", "modified_time", "polled_at",
    )
}

EMAIL_GAP_FIELDS: Schema = {
    "event": TEXT,
    "gap_start": TEXT,
    "gap_end": TEXT,
    "gap_days": INT,
    "cursor": TEXT,
    "reason": TEXT,
    "polled_at": TEXT,
}

DELIVERY_FIELDS: Schema = {
    "kind": TEXT,
    "key": TEXT,
    "sms_id": TEXT,
    "phone": TEXT,
    "event": TEXT,
    "status_code": INT,
    "reason": TEXT,
    "message": TEXT,
    "campaign_id": TEXT,
    "chunk_index": INT,
    "at": TEXT,
    "received_at": TIME,
}

#: A mail WebHook event (worker.receipts.mail), by its normalised ``event`` name.
EMAIL_EVENT_FIELDS: Schema = {
    name: TEXT
    for name in (
        "event", "email_id", "recipient", "api_user", "status", "sub_status",
        "sub_status_desc", "message", "url", "label_id", "modified_time", "received_at",
    )
}
EMAIL_EVENTS = frozenset({"delivered", "invalid", "soft_bounce", "request", "open", "click",
                          "unsubscribe", "report_spam"})

RecordType = Literal[
    "sms", "campaign_chunk", "members", "alert", "breaker_alert", "campaign_finished",
    "email_status", "email_gap", "sms_delivery", "email_event",
]

#: The one schema of every record kind: field → type, in the order records are written.
RECORD_FIELDS: Mapping[RecordType, Schema] = {
    "sms": SMS_FIELDS,
    "campaign_chunk": CHUNK_FIELDS,
    "members": MEMBERS_FIELDS,
    "alert": ALERT_FIELDS,
    "breaker_alert": BREAKER_ALERT_FIELDS,
    "campaign_finished": CAMPAIGN_FINISHED_FIELDS,
    "email_status": EMAIL_STATUS_FIELDS,
    "email_gap": EMAIL_GAP_FIELDS,
    "sms_delivery": DELIVERY_FIELDS,
    "email_event": EMAIL_EVENT_FIELDS,
}

SMS_KINDS = frozenset({"sms", "code", "voice_code"})
MEMBERS_KINDS = frozenset({"members_add", "members_update", "members_delete"})


def record_type(fields: Mapping[str, Any]) -> RecordType | None:
    """Which schema a record follows, from its ``kind``/``outcome``/``event``; None if unknown."""
    event = fields.get("event")
    if fields.get("kind") == "delivery":
        return "sms_delivery"
    if event in EMAIL_EVENTS and "email_id" in fields:
        return "email_event"
    if event == "status":
        return "email_status"
    if event == "gap":
        return "email_gap"
    kind = fields.get("kind")
    if kind == "alert":
        return "breaker_alert" if fields.get("outcome") == "verifications_refused" else "alert"
    if kind == "campaign" or fields.get("outcome") == "campaign_finished":
        return "campaign_finished"
    if kind in SMS_KINDS:
        return "campaign_chunk" if fields.get("campaign_id") not in (None, "") else "sms"
    if kind in MEMBERS_KINDS:
        return "members"
    return None


def iso_utc(seconds: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, e.g. ``2024-11-22T19:30:00.123456+00:00``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


#: A Lua function for scripts that write a record's time: ``sendcloud_iso_utc(seconds)``
#: turns epoch seconds (a number, or text such as ``1732300000.123456``) into the same text as
#: :func:`iso_utc` (Redis's Lua has no ``os.date``).
ISO_TIME_LUA = """
local function sendcloud_iso_utc(seconds)
    local text = seconds
    if type(seconds) == 'number' then text = string.format('%.6f', seconds) end
    local whole, frac = string.match(text or '', '^(%d+)%.?(%d*)$')
    if not whole then return text end
    local s = tonumber(whole)
    frac = string.sub(frac .. '000000', 1, 6)
    local days = math.floor(s / 86400)
    local rem = s - days * 86400
    local z = days + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
        - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local day = doy - math.floor((153 * mp + 2) / 5) + 1
    local month = mp + 3
    if mp >= 10 then month = mp - 9 end
    local year = yoe + era * 400
    if month <= 2 then year = year + 1 end
    local out = string.format('%04d-%02d-%02dT%02d:%02d:%02d', year, month, day,
        math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60)
    if tonumber(frac) ~= 0 then out = out .. '.' .. frac end
    return out .. '+00:00'
end
"""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _int(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value)
    if number is not None and number.is_integer():
        return int(number)
    return value  # not a number: passed on rather than lost


def _float(value: Any) -> Any:
    if value is None or value == "":
        return None
    number = _number(value)
    return value if number is None else number


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _list(value: Any) -> Any:
    if value is None or value == "":
        return []
    if isinstance(value, str) and value[:1] == "[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _time(value: Any) -> Any:
    if value is None or value == "":
        return None
    number = _number(value)
    if number is not None:  # epoch seconds, as records written before ISO times held
        return iso_utc(number)
    return value


def _text_value(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


_COERCE = {
    TEXT: _text_value,
    INT: _int,
    FLOAT: _float,
    BOOL: _bool,
    LIST: _list,
    TIME: _time,
}


def coerce(value: Any, kind: FieldType) -> Any:
    """One value, given as stream text or as decoded JSON, in its documented type."""
    return _COERCE[kind](value)


def _loose(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record of no known kind: text, with JSON-looking lists and objects decoded."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                out[name] = json.loads(value)
                continue
            except ValueError:
                pass  # text that merely starts with a bracket stays text
        out[name] = value
    return out


def shape_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record in its documented shape (see the module docs), from stream text or JSON values.

    Only the kind's documented fields are kept, in the schema's order, each in its type. A
    record of no known kind (another stream) keeps every field, with JSON text decoded.
    """
    kind = record_type(fields)
    if kind is None:
        return _loose(fields)
    schema = RECORD_FIELDS[kind]
    return {name: coerce(fields[name], schema[name]) for name in schema if name in fields}


@dataclass(frozen=True, slots=True)
class ResultRecord:
    id: str
    fields: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def decode_fields(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """A stream entry (as XRANGE/XREAD return it) as its record: :func:`shape_record`."""
    return shape_record({reply_text(name): reply_text(value) for name, value in raw.items()})


# -- a job's idempotency record, as apps and operators see it -------------------------------

#: :func:`job_status`: every field is always present (None or 0 or "" when not known).
JOB_STATUS_FIELDS: Mapping[str, str] = {
    "key": "text: the job's idempotency key",
    "kind": "text: sms | code | voice_code | members_add | members_update | members_delete",
    "state": "text: queued | in_flight | done | failed | expired | needs_review",
    "attempts": "int: attempts that claimed the job so far",
    "enqueued_at": "time: when the job was reserved (or its record recreated)",
    "updated_at": "time: the record's last change",
    "first_attempt_at": "time: when the first attempt claimed the job; None before",
    "retry_due_at": "time: while queued after an attempt, when its retry is due; else None",
    "uncertain_since": "time: start of the earliest attempt that may have reached SendCloud "
                       "without a reply; None when there was none",
    "takeovers": "int: claims taken over from attempts that never finished",
    "last_error": "text: why the last attempt was retried, \"\" if none",
    "send_request_id": "text: the sendRequestId every attempt sends (SMS jobs, once claimed)",
    "finished_at": "time: when the job ended; None until final",
    "result": "the job's final record (sms or members, as above), None until final",
}


def job_status(key: str, raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any] | None:
    """The documented view (:data:`JOB_STATUS_FIELDS`) of job ``key``'s idempotency record,
    as HGETALL returned it; None for no record. The record's internal fields (claim token and
    fence, lease, payload hash, the job's copy of its message, which holds a code in clear)
    are left out."""
    if not raw:
        return None
    record = {reply_text(name): reply_text(value) for name, value in raw.items()}
    state = record.get("state", "")
    result: dict[str, Any] | None = None
    if record.get("result"):
        try:
            decoded = json.loads(record["result"])
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            result = shape_record(decoded)
    return {
        "key": key,
        "kind": record.get("kind", ""),
        "state": state,
        "attempts": _int(record.get("attempts")) or 0,
        "enqueued_at": _time(record.get("created_at")),
        "updated_at": _time(record.get("updated_at")),
        "first_attempt_at": _time(record.get("first_attempt_at")),
        "retry_due_at": _time(record.get("due_at")) if state == "queued" else None,
        "uncertain_since": _time(record.get("uncertain_since")),
        "takeovers": _int(record.get("takeovers")) or 0,
        "last_error": record.get("last_error", ""),
        "send_request_id": record.get("request_id", ""),
        "finished_at": _time(record.get("finished_at")),
        "result": result,
    }


# -- reading the streams ---------------------------------------------------------------------


def _records(reply: Any) -> list[ResultRecord]:
    """XREAD/XREADGROUP reply (RESP2 list or RESP3 dict) for one stream → records."""
    if not reply:
        return []
    entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    if entries and isinstance(entries[0], list):
        entries = entries[0]  # RESP3 nests the entry list once more
    return [
        ResultRecord(id=reply_text(entry_id), fields=decode_fields(raw or {}))
        for entry_id, raw in entries
    ]


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _socket_timeout(client: redis.Redis) -> float | None:
    """The read timeout the client's connections have (redis-py's default lives on the
    connection class, not in the pool's arguments)."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        timeout = connection.socket_timeout
    finally:
        pool.release(connection)
    return float(timeout) if timeout else None


class StreamNotFound(LookupError):
    """The result stream does not exist in this Redis: no worker ever started against it."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(
            f"stream {stream!r} does not exist in this Redis: no worker has started against it "
            "(workers create the result streams at start); check REDIS_URL"
        )


class ResultReader:
    """Reads a result stream as :class:`ResultRecord` objects whose ``fields`` are the
    documented records (:func:`shape_record`)."""

    def __init__(
        self,
        redis: redis.Redis,
        stream: str = SMS_RESULTS_STREAM,
        *,
        group: str | None = None,
        consumer: str | None = None,
        start_id: str = "0-0",
    ) -> None:
        """``start_id``: where a reader without a group starts ("$" for only new entries)."""
        if consumer is not None and group is None:
            raise ValueError("consumer needs a group")
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or (default_consumer_name() if group else None)
        self.last_id = start_id

    def ensure_group(self, start_id: str = "0", *, create_stream: bool = False) -> bool:
        """Create the consumer group if missing; True if it was created.

        The stream must exist: every worker creates the result streams when it starts, so a
        missing one means ``REDIS_URL`` points where no worker runs. Creating it here (XGROUP
        MKSTREAM) would leave such a reader waiting forever on a stream nobody writes; it
        raises :class:`StreamNotFound` instead. ``create_stream=True`` creates it anyway.
        """
        if self.group is None:
            raise ValueError("this reader has no group")
        try:
            self.redis.xgroup_create(self.stream, self.group, id=start_id, mkstream=create_stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            if "requires the key to exist" in str(exc):
                raise StreamNotFound(self.stream) from None
            raise
        return True

    def read(self, count: int = 100, block_ms: int | None = None) -> list[ResultRecord]:
        """Up to ``count`` entries after the last one read (or new for the group's consumer).

        ``block_ms``: wait up to that long for an entry when there is none; None: do not
        wait; 0: wait until one arrives (Redis's BLOCK 0).
        """
        if block_ms is None:
            return self._read_once(count, None)
        if self.group is None and self.last_id == "$":
            # "$" means "after the newest entry" anew on each XREAD: pin it once, so that an
            # entry added between two slices below is not skipped.
            newest: list[Any] = list(self.redis.xrevrange(self.stream, count=1) or [])
            self.last_id = reply_text(newest[0][0]) if newest else "0-0"
        # A block as long as the client's socket timeout (redis-py's from_url sets 5 s) would
        # end in a TimeoutError: wait in slices shorter than it, as long as asked.
        timeout = _socket_timeout(self.redis)
        if not timeout:
            return self._read_once(count, block_ms)
        step = max(int(timeout * 1000) - 500, int(timeout * 500), 1)
        left = block_ms
        while True:
            this = step if block_ms == 0 else min(step, left)
            records = self._read_once(count, this)
            if block_ms != 0:
                left -= this
            if records or (block_ms != 0 and left <= 0):
                return records

    def _read_once(self, count: int, block_ms: int | None) -> list[ResultRecord]:
        if self.group is None:
            records = _records(
                self.redis.xread({self.stream: self.last_id}, count=count, block=block_ms)
            )
            if records:
                self.last_id = records[-1].id
            return records
        return self._read_group(">", count, block_ms)

    def read_pending(self, count: int = 100) -> list[ResultRecord]:
        """Entries delivered to this consumer and not yet acknowledged."""
        return self._read_group("0", count, None)

    def _read_group(self, start: str, count: int, block_ms: int | None) -> list[ResultRecord]:
        assert self.group is not None and self.consumer is not None
        for attempt in (1, 2):
            try:
                reply = self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
                )
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc) or attempt == 2:
                    raise
                self.ensure_group()
                continue
            return _records(reply)
        return []

    def ack(self, ids: Iterable[str | ResultRecord]) -> int:
        """Acknowledge handled entries (ids or records); returns how many were pending."""
        if self.group is None:
            raise ValueError("this reader has no group")
        entry_ids = [item.id if isinstance(item, ResultRecord) else item for item in ids]
        if not entry_ids:
            return 0
        return int(self.redis.xack(self.stream, self.group, *entry_ids))
