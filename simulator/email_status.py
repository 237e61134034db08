"""apiv2 ``data/emailStatus``: the delivery status of sent emails.

Follows docs/sendcloud-api/email-status.txt; the reply is shaped exactly like its example:
``total`` is a string, ``status`` the Chinese text, ``subStatus`` a string code or null, and a
record with a subStatus carries ``subStatDesc`` (the text after the dash in the docs' table,
e.g. "地址不存在") while one without carries ``"subStatusDesc": null``. Times are Asia/Shanghai
"YYYY-MM-DD HH:MM:SS"; records are sorted by requestTime.

Choices where the docs are silent:
- neither ``days`` nor ``startDate``/``endDate``: 40006; ``days`` wins when both are sent;
  with dates, a missing or malformed startDate is 40007, a missing or malformed endDate, an
  endDate before startDate or more than 30 days after it is 40008;
- without ``apiUserList`` only the caller's own records are returned; an empty apiUserList is
  40010; a malformed ``email`` 40012; ``status`` outside 1/4/5/18 is 40017;
- labels are not simulated: ``labelId`` must be an integer (40015), and since no record has a
  label, a ``labelId`` or ``labelName`` filter matches nothing;
- the 3000 calls per minute are counted per apiUser over the last 60 s, every authenticated
  call included, and the limit reply uses the documented lower-case ``statuscode``;
- with ``cache_seconds`` > 0, a repeated query (same apiUser and parameters) within that time
  gets the earlier reply, as SendCloud caches each query for 10 minutes; off by default.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from random import Random
from typing import Any

from simulator.protocol import (
    SHANGHAI,
    ApiError,
    Params,
    envelope,
    is_email,
    parse_paging,
    shanghai_time,
    split_list,
    to_epoch,
)

STATUS_TEXT = {1: "送达", 4: "无效邮件", 5: "软退信", 18: "请求中"}
SUB_STATUS_TEXT = {
    401: "无效邮件-SendCloud黑名单中", 402: "无效邮件-取消订阅", 403: "无效邮件-服务器不可达",
    404: "无效邮件-地址格式错误", 405: "无效邮件-IP、域名被拒", 406: "无效邮件-地址不存在",
    407: "无效邮件-垃圾邮件", 408: "无效邮件-发件人/收件人被拒", 409: "无效邮件-其他",
    503: "软退信-服务不可达", 505: "软退信-IP、域名被拒", 506: "软退信-邮箱地址不存在",
    507: "软退信-反垃圾邮件被拒", 508: "软退信-发件人/收件人被拒", 509: "软退信-其他",
}
SEND_LOG = {1: "successfully delivered", 18: "request received", 406: "unrouteable address"}
DEFAULT_SUB_STATUS = {4: 406, 5: 509}
RATE_LIMITED = {"result": False, "statuscode": 50000, "message": "interface frequency is limited",
                "info": {}}
MAX_DAYS = 30
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_Query = tuple[tuple[str, str], ...]


@dataclass
class EmailRecord:
    email_id: str
    api_user: str
    recipient: str
    request_time: float
    modified_time: float
    status: int
    sub_status: int | None
    send_log: str

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "emailId": self.email_id,
            "status": STATUS_TEXT[self.status],
            "subStatus": None if self.sub_status is None else str(self.sub_status),
        }
        if self.sub_status is None:
            data["subStatusDesc"] = None
        else:
            data["subStatDesc"] = SUB_STATUS_TEXT[self.sub_status].split("-", 1)[1]
        data.update(apiUser=self.api_user, recipients=self.recipient,
                    requestTime=shanghai_time(self.request_time),
                    modifiedTime=shanghai_time(self.modified_time), sendLog=self.send_log)
        return data


def check_status(status: int, sub_status: int | None) -> int | None:
    """The sub-status a record in ``status`` gets; ValueError for an impossible pair."""
    if status not in STATUS_TEXT:
        raise ValueError(f"status must be one of 1, 4, 5, 18, got {status}")
    if status in (1, 18):
        if sub_status is not None:
            raise ValueError(f"status {status} has no sub-status, got {sub_status}")
        return None
    sub = DEFAULT_SUB_STATUS[status] if sub_status is None else sub_status
    if sub not in SUB_STATUS_TEXT or sub // 100 != status:
        raise ValueError(f"sub_status {sub} does not belong to status {status}")
    return sub


def _send_log(status: int, sub_status: int | None) -> str:
    if sub_status is None:
        return SEND_LOG[status]
    return SEND_LOG.get(sub_status, SUB_STATUS_TEXT[sub_status])


class EmailStatusStore:
    def __init__(self, *, api_user: str, clock: Callable[[], float], seed: int) -> None:
        self._api_user = api_user
        self._clock = clock
        self._seed = seed
        self.cache_seconds = 0.0
        self.rate_per_minute = 3000
        self.reset()

    def reset(self) -> None:
        self._records: dict[str, EmailRecord] = {}
        self._calls: dict[str, deque[float]] = {}
        self._cache: dict[tuple[str, _Query], tuple[float, dict[str, Any]]] = {}
        self._rng = Random(self._seed)
        self._seq = 0

    def records(self) -> list[EmailRecord]:
        return sorted(self._records.values(), key=lambda r: r.request_time)

    def seed(self, count: int, *, start: datetime | None, status: int, api_user: str | None,
             spacing_seconds: float, recipients: Sequence[str] | None = None) -> list[str]:
        if count < 0 or spacing_seconds < 0:
            raise ValueError("count and spacing_seconds must be >= 0")
        if recipients is not None and len(recipients) != count:
            raise ValueError("recipients must hold one address per record")
        sub_status = check_status(status, None)
        now = self._clock()
        if start is None:
            midnight = datetime.fromtimestamp(now, SHANGHAI).replace(hour=0, minute=0, second=0,
                                                                     microsecond=0)
            first = max(now - count * spacing_seconds, midnight.timestamp())
        else:
            first = to_epoch(start)
        ids: list[str] = []
        for i in range(count):
            self._seq += 1
            at = first + i * spacing_seconds
            recipient = f"user{self._seq:05d}@example.com" if recipients is None else recipients[i]
            email_id = (f"{int(at * 1000)}_{10000 + self._seq}_{self._rng.randrange(10**4)}_"
                        f"{self._seq}.sc-10_9_6_{self._rng.randrange(256)}-inbound0${recipient}")
            self._records[email_id] = EmailRecord(
                email_id, api_user or self._api_user, recipient, at, at, status, sub_status,
                _send_log(status, sub_status),
            )
            ids.append(email_id)
        return ids

    def advance(self, email_ids: Sequence[str] | None, *, count: int | None, status: int,
                sub_status: int | None) -> list[str]:
        sub = check_status(status, sub_status)
        if email_ids is not None:
            chosen = [self._records[i] for i in email_ids if i in self._records]
        else:
            chosen = [r for r in self.records() if r.status == 18]
        if count is not None:
            chosen = chosen[:count]
        now = self._clock()
        for record in chosen:
            record.status, record.sub_status = status, sub
            record.modified_time = now
            record.send_log = _send_log(status, sub)
        return [r.email_id for r in chosen]

    def query(self, params: Params, user: str) -> dict[str, Any]:
        now = self._clock()
        calls = self._calls.setdefault(user, deque())
        while calls and now - calls[0] >= 60:
            calls.popleft()
        if len(calls) >= self.rate_per_minute:
            return dict(RATE_LIMITED)
        calls.append(now)
        key = (user, tuple(sorted((k, v) for k, v in params.items() if k != "apiKey")))
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        reply = envelope(200, self._select(params, user, now))
        if self.cache_seconds > 0:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.cache_seconds}
            self._cache[key] = (now, reply)
        return reply

    def _select(self, params: Params, user: str, now: float) -> dict[str, Any]:
        first_day, last_day = _date_range(params, datetime.fromtimestamp(now, SHANGHAI).date())
        start, limit = parse_paging(params)
        users = {user}
        if "apiUserList" in params:
            users = set(split_list(params["apiUserList"]))
            if not users:
                raise ApiError(40010)
        email = params.get("email", "").strip()
        if email and not is_email(email):
            raise ApiError(40012)
        label_id = params.get("labelId", "").strip()
        if label_id and not label_id.lstrip("-").isdigit():
            raise ApiError(40015)
        status_raw = params.get("status", "").strip()
        if status_raw and status_raw not in ("1", "4", "5", "18"):
            raise ApiError(40017, "status must be one of 1, 4, 5, 18")
        ids = set(split_list(params.get("emailIds", "")))
        subs = set(split_list(params.get("subStatus", "")))
        found = [
            r for r in self.records()
            if r.api_user in users
            and first_day <= datetime.fromtimestamp(r.request_time, SHANGHAI).date() <= last_day
            and (not ids or r.email_id in ids)
            and (not email or r.recipient.lower() == email.lower())
            and (not status_raw or r.status == int(status_raw))
            and (not subs or str(r.sub_status) in subs)
            and not label_id and not params.get("labelName", "").strip()
        ]
        page = found[start:start + limit]
        return {"total": str(len(found)), "voListSize": len(page),
                "voList": [r.to_json() for r in page]}


def _date_range(params: Params, today: date) -> tuple[date, date]:
    if "days" in params:
        raw = params["days"].strip()
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DAYS:
            raise ApiError(40006)
        return today - timedelta(days=int(raw) - 1), today
    if "startDate" not in params and "endDate" not in params:
        raise ApiError(40006)
    first = _parse_date(params.get("startDate", ""), 40007)
    last = _parse_date(params.get("endDate", ""), 40008)
    if last < first or (last - first).days > MAX_DAYS:
        raise ApiError(40008)
    return first, last


def _parse_date(raw: str, code: int) -> date:
    raw = raw.strip()
    if not _DATE.fullmatch(raw):
        raise ApiError(code)
    try:
        return datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise ApiError(code) from None
