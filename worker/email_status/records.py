"""emailStatus records as the service publishes them: normalised, English, ISO 8601.

SendCloud reports statuses as Chinese words ("送达") and times as ``YYYY-MM-DD HH:MM:SS`` in
China Standard Time with no offset. Consumers of the stream get stable English codes and ISO
8601 times with the ``+08:00`` offset; the raw status word is kept next to the code so nothing
is lost when SendCloud adds a status this table does not know (it becomes ``unknown``).

Entries of ``sendcloud:results:email_status`` (every value a string, "" for none):

``event="status"``, one per change of an email's (status, subStatus, modifiedTime):
    email_id, recipient, api_user,
    status (delivered | invalid | soft_bounce | requested | unknown), status_raw ("送达"),
    sub_status ("406" or ""), sub_status_desc (English, from the docs' table; SendCloud's own
    text for a code not in it), send_log,
    request_time, modified_time (ISO 8601, ``+08:00``; passed on as sent if unreadable),
    polled_at (ISO 8601, ``+08:00``, seconds).

``event="gap"``, once per range of request dates a poll could no longer reach (over 30 days
old after downtime; late status changes of those emails are lost):
    gap_start, gap_end (dates, inclusive), gap_days, cursor (ISO 8601 of the last successful
    poll), reason, polled_at.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Protocol

#: China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact and
#: needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

#: The four statuses of the docs ("1, 4, 5 and 18 ... delivery, invalid, soft return and being
#: requested"), by the word SendCloud replies with. English spellings are accepted too.
STATUS_CODES: dict[str, str] = {
    "送达": "delivered",
    "无效邮件": "invalid",
    "软退信": "soft_bounce",
    "请求中": "requested",
    "delivered": "delivered",
    "invalid": "invalid",
    "soft bounce": "soft_bounce",
    "requested": "requested",
}

#: The numeric ``status`` filter of the API, by normalised status.
STATUS_FILTERS: dict[str, int] = {"delivered": 1, "invalid": 4, "soft_bounce": 5, "requested": 18}

#: The docs' subStatus table, in the docs' own English wording (the "说明" paragraph).
SUB_STATUS_DESCRIPTIONS: dict[str, str] = {
    "401": "invalid email - SendCloud blacklist",
    "402": "invalid email - unsubscribe",
    "403": "invalid email - server unreachable",
    "404": "invalid email - address format error",
    "405": "invalid email - IP or domain name rejected",
    "406": "invalid email - address does not exist",
    "407": "invalid email - spam email",
    "408": "invalid email - sender or recipient rejected",
    "409": "invalid email - other",
    "503": "soft bounce - server unreachable",
    "505": "soft bounce - IP or domain name rejected",
    "506": "soft bounce - address does not exist",
    "507": "soft bounce - anti spam rejected",
    "508": "soft bounce - sender or recipient rejected",
    "509": "soft bounce - other",
}

#: Every field of a ``status`` record on the stream, in order.
STATUS_FIELDS = (
    "event",
    "email_id",
    "recipient",
    "api_user",
    "status",
    "status_raw",
    "sub_status",
    "sub_status_desc",
    "send_log",
    "request_time",
    "modified_time",
    "polled_at",
)


class StatusRecord(Protocol):
    """One emailStatus item as the client parses it (``sendcloud.models.EmailStatusRecord``)."""

    @property
    def email_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def sub_status(self) -> str | None: ...
    @property
    def sub_status_desc(self) -> str | None: ...
    @property
    def api_user(self) -> str: ...
    @property
    def recipients(self) -> str: ...
    @property
    def request_time(self) -> str: ...
    @property
    def modified_time(self) -> str: ...
    @property
    def send_log(self) -> str | None: ...


def parse_time(text: str | None) -> datetime | None:
    """A SendCloud time as an aware datetime in Shanghai time; None if absent or unreadable."""
    text = (text or "").strip()
    # fromisoformat is C-fast but lenient; the shape check keeps it to exactly this format.
    if len(text) != 19 or text[4] != "-" or text[10] != " " or text[13] != ":":
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)
    except ValueError:
        return None


def iso_time(text: str | None) -> str:
    """ISO 8601 with ``+08:00``; text SendCloud sent in another shape is passed on unchanged."""
    parsed = parse_time(text)
    if parsed is None:
        return (text or "").strip()
    return parsed.isoformat()


def status_code(raw: str | None) -> str:
    return STATUS_CODES.get((raw or "").strip().lower(), "unknown")


def sub_status_description(code: str | None, raw_desc: str | None) -> str:
    """The English description of a subStatus, or SendCloud's own text for a code not listed."""
    if code is not None and code.strip() in SUB_STATUS_DESCRIPTIONS:
        return SUB_STATUS_DESCRIPTIONS[code.strip()]
    return (raw_desc or "").strip()


def request_date(record: StatusRecord, fallback: date) -> date:
    """The Shanghai date the email was requested on: the day SendCloud files it under."""
    parsed = parse_time(record.request_time)
    return fallback if parsed is None else parsed.date()


def fingerprint(record: StatusRecord) -> str:
    """What identifies one state of an email: a new fingerprint is a change to publish.

    The modification time comes first so the emit script can refuse a state older than the
    one already published (a slow poller must not re-publish a superseded status).
    """
    return "|".join(
        (
            (record.modified_time or "").strip(),
            (record.status or "").strip(),
            (record.sub_status or "").strip(),
        )
    )


def normalise(record: StatusRecord, polled_at: datetime) -> dict[str, str]:
    """The stream entry for one email state; every value is a string ("" for none)."""
    return {
        "event": "status",
        "email_id": record.email_id,
        "recipient": record.recipients or "",
        "api_user": record.api_user or "",
        "status": status_code(record.status),
        "status_raw": record.status or "",
        "sub_status": (record.sub_status or "").strip(),
        "sub_status_desc": sub_status_description(record.sub_status, record.sub_status_desc),
        "send_log": record.send_log or "",
        "request_time": iso_time(record.request_time),
        "modified_time": iso_time(record.modified_time),
        "polled_at": polled_at.astimezone(SHANGHAI).isoformat(timespec="seconds"),
    }
