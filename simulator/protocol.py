"""The wire format every simulated endpoint shares: parsing requests, shaping replies, times.

SendCloud answers API-level errors with HTTP 200 and ``{"result", "statusCode", "message",
"info"}``; endpoint code raises :class:`ApiError` and the dispatcher turns it into that shape.
Replies whose text the docs show in Chinese (请求成功, 部分成功, 手机号格式错误, 认证失败) use it;
every other code answers with the docs' English meaning.

Shapes chosen where the docs are silent:
- a path the simulator does not serve: HTTP 404, ``{"result": false, "statusCode": 404,
  "message": "not found", "info": {}}``;
- a method the docs do not allow on a path: HTTP 405, same shape with statusCode 405;
- a body that is not UTF-8 or not a form: HTTP 400, same shape with statusCode 400.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

#: SendCloud reports times in China Standard Time, which has no daylight saving.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
JSON_TYPE = "application/json;charset=UTF-8"

Params = dict[str, str]

MESSAGES: dict[int, str] = {
    200: "请求成功",
    311: "部分成功",
    312: "all request failed",
    400: "duplicate request",
    411: "phone number cannot be empty",
    412: "手机号格式错误",
    413: "duplicate phone numbers",
    421: "incorrect signature parameter",
    422: "incorrect signature",
    431: "template does not exist",
    432: "template not submitted for verification or verify unsuccessfully",
    433: "template ID cannot be empty",
    441: "invalid substituted variable format",
    461: "invalid timestamp, time interval between timestamp and sever time is longer than 6s",
    471: "smsUser does not exist",
    472: "smsUser cannot be empty",
    481: "phone number and substitution variable cannot be empty",
    482: "invalid format of phone number and substituted variable",
    483: "substituted variable cannot be longer than 32 characters",
    496: "too many messages sent to this number within one minute",
    498: "too many messages sent to this number in one day",
    499: "insufficient balance",
    501: "sever exception",
    40001: "start cannot be empty",
    40002: "invalid start",
    40003: "limit cannot be empty",
    40004: "invalid limit",
    40005: "认证失败",
    40006: "nvalid days format, it must be an integer greater than zero",
    40007: "invalid startDate format (e.g. “2013-03-19”)",
    40008: "invalid endDate format (e.g. “2013-03-19”)",
    40010: "apiUserList cannot be empty",
    40012: "invalid email format",
    40015: "invalid label ID format",
    40017: "invalid format of aggregation parameters",
    40501: "name cannot be empty",
    40502: "address list name should be 1-48 characters",
    40503: "address cannot be empty",
    40504: "address list alias should be 1-48 characters",
    40505: "address list alias already exists",
    40506: "desc cannot be empty",
    40507: "address list description should be 1-250 characters",
    40509: "newAddress cannot be empty",
    40510: "new address list alias should be 1-48 characters",
    40511: "invalid address parameters",
    40512: "members cannot be empty",
    40513: "member address should be 1-48 characters",
    40514: "number of member address should be more than 0",
    40515: "number of member address should be no more than 1000",
    40517: "address list does not belong to the user",
    40518: "member address does not conform to the specification",
    40520: "vars cannot be empty",
    40521: "variables in vars parameter are not equal to member addresses",
    40522: "vars parameter does not adhere to JSON string syntax",
    40531: "The maximum length of a single member variable is 1024 characters",
}


class ApiError(Exception):
    """A documented failure reply; ``info`` is sent as is."""

    def __init__(self, code: int, message: str | None = None, info: dict[str, Any] | None = None):
        self.code = code
        self.message = message or MESSAGES.get(code, "error")
        self.info = info or {}
        super().__init__(f"{code} {self.message}")


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    query: str = ""
    body: bytes = b""
    content_type: str = ""


@dataclass(frozen=True)
class RawReply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    #: "reset" (no effect took place) or "drop" (it did) when the client must see no reply.
    network_failure: str | None = None


def envelope(code: int, info: dict[str, Any] | None = None, message: str | None = None,
             *, result: bool | None = None) -> dict[str, Any]:
    ok = code in (200, 311) if result is None else result
    return {
        "result": ok,
        "statusCode": code,
        "message": message or MESSAGES.get(code, ""),
        "info": info if info is not None else {},
    }


def json_reply(payload: dict[str, Any], status: int = 200) -> RawReply:
    return RawReply(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def http_error(status: int, message: str) -> RawReply:
    return json_reply(envelope(status, message=message, result=False), status)


class BadRequestBody(ValueError):
    pass


def parse_params(request: RawRequest) -> Params:
    """Query string and body merged, body winning; the last of repeated keys wins."""
    try:
        params = dict(parse_qsl(request.query, keep_blank_values=True, errors="strict"))
        if request.body:
            params.update(_parse_body(request.body, request.content_type))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestBody(str(exc)) from None
    return params


def _parse_body(body: bytes, content_type: str) -> Params:
    if content_type.lower().startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: Params = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            # File parts are attachments, not parameters.
            if part.get_filename() is None and isinstance(name, str) \
                    and isinstance(payload, bytes):
                fields[name] = payload.decode("utf-8")
        return fields
    # A send's 2000 phones arrive as 1999 "%2C"s, each a slow step of unquote: commas are not
    # separators in a form body, so decoding them first gives the same parameters.
    text = body.decode("utf-8").replace("%2C", ",").replace("%2c", ",")
    return dict(
        parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    )


def shanghai_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def shanghai_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, SHANGHAI).strftime("%Y-%m-%d")


def to_epoch(moment: datetime) -> float:
    """A naive datetime is read as Asia/Shanghai local time, like SendCloud's own dates."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return moment.astimezone(UTC).timestamp()


def parse_paging(params: Params) -> tuple[int, int]:
    """``start`` [0-] defaults to 0, ``limit`` [0-100] defaults to 100 (40001-40004)."""
    start = _paging_value(params, "start", 0, empty=40001, invalid=40002)
    limit = _paging_value(params, "limit", 100, empty=40003, invalid=40004)
    if limit > 100:
        raise ApiError(40004)
    return start, limit


def _paging_value(params: Params, key: str, default: int, *, empty: int, invalid: int) -> int:
    if key not in params:
        return default
    raw = params[key].strip()
    if not raw:
        raise ApiError(empty)
    if not is_uint(raw):
        raise ApiError(invalid)
    return int(raw)


def is_uint(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()


_EMAIL = re.compile(r"[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def is_email(text: str) -> bool:
    return _EMAIL.fullmatch(text) is not None


def split_list(raw: str, separator: str = ";") -> list[str]:
    """Items of a separated list, blanks dropped."""
    return [item.strip() for item in raw.split(separator) if item.strip()]
