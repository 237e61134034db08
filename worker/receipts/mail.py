"""Mail WebHook events onto ``sendcloud:results:email_status``, each once.

The web process appends each verified mail hook to the mail inbox; the receipts process hands
each to :class:`MailEvents`. An event's record carries ``event=`` its normalised name and, where
a field means what a poller record's does, the poller's name for it:

``event``            delivered | invalid | soft_bounce | request | open | click | unsubscribe |
                     report_spam (SendCloud's older ``bounce`` and newer ``delivered``,
                     ``spam-report`` and ``invalid_email`` are read as these)
``email_id``, ``recipient``, ``api_user`` (``apiUser``, else ``category``)
``status``           for the three status changes, the same as ``event``; else ""
``sub_status``, ``sub_status_desc``   ``substat`` and its English meaning (the docs' table), or
                     SendCloud's ``substatdesc`` / ``reason``
``message``, ``url`` (a click's), ``label_id``
``modified_time``    the event's time, ISO 8601 ``+08:00``
``received_at``      when the web process received it, ISO 8601 UTC

A status change (delivered, invalid, soft bounce) is published once per email and status, by
this or by the poller, whichever saw it first (see :mod:`worker.email_status.poller`): its
marker lives in the poller's seen-hash of the email's request date, read from the emailId's
leading millisecond time (documented: ``1426571113174_27372_...``), else from the event's.
Other events are published once per (emailId, event, time, url), remembered for the receipt
window, so SendCloud's retries add nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from producers.contract import EMAIL_STATUS_STREAM, KEY_PREFIX
from worker.email_status.poller import SEEN_KEY_PREFIX, SEEN_RETENTION, status_marker
from worker.email_status.records import SHANGHAI, SUB_STATUS_DESCRIPTIONS
from worker.receipts.matcher import Outcome, milliseconds, shanghai_iso

EVENT_NAMES = {
    "deliver": "delivered", "delivered": "delivered",
    "invalid": "invalid", "invalid_email": "invalid",
    "soft_bounce": "soft_bounce", "bounce": "soft_bounce",
    "request": "request", "open": "open", "click": "click", "unsubscribe": "unsubscribe",
    "report_spam": "report_spam", "spam-report": "report_spam",
}  # fmt: skip
STATUS_EVENTS = frozenset({"delivered", "invalid", "soft_bounce"})
ONCE_PREFIX = f"{KEY_PREFIX}receipts:mail:"

# KEYS: stream, marker hash (a seen-hash, or a once-key). ARGV: mode, field (for "marker"),
# ttl, maxlen, then the record's field/value pairs.
_EMIT_LUA = """
if ARGV[1] == 'marker' then
    if redis.call('HSETNX', KEYS[2], ARGV[2], '1') == 0 then return false end
    if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
elseif not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
    return false
end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
"""


def request_day(email_id: str, event_ms: int | None, now: float) -> datetime:
    """Midnight (Shanghai) of the day SendCloud files the email under, which the poller's
    seen-hash is named for."""
    ms = milliseconds(email_id.split("_", 1)[0]) or event_ms or int(now * 1000)
    local = datetime.fromtimestamp(ms / 1000, SHANGHAI)
    return datetime(local.year, local.month, local.day, tzinfo=SHANGHAI)


class MailEvents:
    """Publishes mail hook events, each once (see the module docs)."""

    def __init__(self, client: redis.Redis, *, window: int, maxlen: int) -> None:
        self.client = client
        self.window = window
        self.maxlen = maxlen
        self._emit = client.register_script(_EMIT_LUA)

    def handle(self, event: Mapping[str, Any], received_at_ms: int, now: float) -> Outcome:
        name = EVENT_NAMES.get(str(event.get("event") or "").strip().lower())
        email_id = str(event.get("emailId") or "")
        if name is None or not email_id:
            return Outcome("ignored")
        event_ms = milliseconds(event.get("timestamp"))
        sub_status = str(event.get("substat") or "").strip()
        record = {
            "event": name,
            "email_id": email_id,
            "recipient": str(event.get("recipient") or ""),
            "api_user": str(event.get("apiUser") or event.get("category") or ""),
            "status": name if name in STATUS_EVENTS else "",
            "sub_status": sub_status,
            "sub_status_desc": SUB_STATUS_DESCRIPTIONS.get(sub_status)
            or str(event.get("substatdesc") or event.get("reason") or ""),
            "message": str(event.get("message") or ""),
            "url": str(event.get("url") or ""),
            "label_id": str(event.get("labelId") or ""),
            "modified_time": shanghai_iso(event_ms, "seconds"),
            "received_at": datetime.fromtimestamp(received_at_ms / 1000, UTC).isoformat(),
        }
        if name in STATUS_EVENTS:
            day = request_day(email_id, event_ms, now)
            expires = day + SEEN_RETENTION
            ttl = max(86400, int(expires.timestamp() - now))
            keys = [EMAIL_STATUS_STREAM, f"{SEEN_KEY_PREFIX}{day.date().isoformat()}"]
            args: list[Any] = ["marker", status_marker(email_id, name), ttl]
        else:
            said = f"{email_id}\n{name}\n{event_ms}\n{record['url']}"
            once = ONCE_PREFIX + hashlib.blake2b(said.encode(), digest_size=16).hexdigest()
            keys = [EMAIL_STATUS_STREAM, once]
            args = ["once", "", self.window]
        args.append(self.maxlen)
        for field, value in record.items():
            args += [field, value]
        entry = self._emit(keys=keys, args=args)
        if entry is None:
            return Outcome("duplicate")
        return Outcome("recorded", entry.decode() if isinstance(entry, bytes) else str(entry))

