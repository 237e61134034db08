"""Typed results of SendCloud calls, parsed from the ``info`` object of a reply.

The parsers accept the shapes the docs show, quirks included: ``total`` arrives as a string in
emailStatus, the substatus description is ``subStatusDesc`` on one record and ``subStatDesc`` on
the next, and a member's ``vars`` is ``""`` or a JSON string rather than an object. Timestamps
stay the raw strings SendCloud sends ("2015-09-15 20:29:01", no zone), so nothing is guessed.

A reply that does not have the documented shape raises ``ReplyFormatError`` naming the field;
the client turns it into a ``ServerError`` for the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ReplyFormatError(ValueError):
    """A reply lacks a field or has one of the wrong type. Names the field, never its value."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ReplyFormatError(field, "must be an object")
    return value


def _list(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReplyFormatError(field, "must be a list")
    return value


def _int(value: object, field: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        raise ReplyFormatError(field, "must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ReplyFormatError(field, "must be an integer")


def _str(value: object, field: str) -> str:
    if value is None:
        raise ReplyFormatError(field, "is missing")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ReplyFormatError(field, "must be a string")


def _opt_str(value: object, field: str) -> str | None:
    return None if value is None else _str(value, field)


def _str_list(value: object, field: str) -> list[str]:
    items = _list(value, field)
    if all(type(item) is str for item in items):  # the usual reply: no per-item checks needed
        return list(items)
    return [_str(item, f"{field}[{i}]") for i, item in enumerate(items)]


def _vars(value: object, field: str) -> dict[str, str]:
    """A member's or recipient's variables: an object, a JSON string of one, or ""."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ReplyFormatError(field, "must be a JSON object") from None
    if not isinstance(value, Mapping):
        raise ReplyFormatError(field, "must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


class _Fields:
    """Reads one object of a reply, naming ``where.key`` in any ReplyFormatError."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where

    def text(self, key: str) -> str:
        return _str(self.raw.get(key), f"{self.where}.{key}")

    def opt_text(self, key: str) -> str | None:
        return _opt_str(self.raw.get(key), f"{self.where}.{key}")


ItemParser = Callable[[Mapping[str, Any], str], T]


def _items(info: Mapping[str, Any], field: str, parse: ItemParser[T]) -> list[T]:
    return [
        parse(_mapping(raw, f"{field}[{i}]"), f"{field}[{i}]")
        for i, raw in enumerate(_list(info.get(field), field))
    ]


@dataclass(frozen=True)
class FailedRecipient:
    phone: str
    message: str
    vars: dict[str, Any]

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> FailedRecipient:
        f = _Fields(raw, where)
        raw_vars = raw.get("vars")
        # Kept as sent when it is an object: these are the caller's own values, echoed back.
        if isinstance(raw_vars, Mapping):
            variables: dict[str, Any] = dict(raw_vars)
        else:
            variables = dict(_vars(raw_vars, f"{where}.vars"))
        return cls(phone=f.text("phone"), message=f.opt_text("message") or "", vars=variables)


@dataclass(frozen=True)
class SmsResult:
    status_code: int
    message: str
    sms_ids: list[str]
    success_count: int
    failed_count: int
    failed: list[FailedRecipient]
    #: Set by the job layer when it recognises a reply to an already-sent sendRequestId.
    replayed: bool = False

    @property
    def partial(self) -> bool:
        return self.status_code == 311

    @classmethod
    def parse(cls, status_code: int, message: str, info: Mapping[str, Any]) -> SmsResult:
        sms_ids = _str_list(info.get("smsIds"), "smsIds")
        failed = _items(info, "items", FailedRecipient.parse)
        return cls(
            status_code=status_code,
            message=message,
            sms_ids=sms_ids,
            success_count=_int(info.get("successCount"), "successCount", len(sms_ids)),
            failed_count=_int(info.get("failedCount"), "failedCount", len(failed)),
            failed=failed,
        )


@dataclass(frozen=True)
class EmailStatusRecord:
    email_id: str
    status: str
    sub_status: str | None
    sub_status_desc: str | None
    api_user: str
    recipients: str
    request_time: str
    modified_time: str
    send_log: str | None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> EmailStatusRecord:
        # The docs' own example uses both spellings, one per record.
        desc = raw.get("subStatusDesc")
        if desc is None:
            desc = raw.get("subStatDesc")
        f = _Fields(raw, where)
        return cls(
            email_id=f.text("emailId"),
            status=f.text("status"),
            sub_status=f.opt_text("subStatus"),
            sub_status_desc=_opt_str(desc, f"{where}.subStatusDesc"),
            api_user=f.text("apiUser"),
            recipients=f.text("recipients"),
            request_time=f.text("requestTime"),
            modified_time=f.text("modifiedTime"),
            send_log=f.opt_text("sendLog"),
        )


@dataclass(frozen=True)
class EmailStatusPage:
    total: int
    records: list[EmailStatusRecord]

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> EmailStatusPage:
        records = _items(info, "voList", EmailStatusRecord.parse)
        return cls(total=_int(info.get("total"), "total", len(records)), records=records)


@dataclass(frozen=True)
class AddressList:
    address: str
    name: str
    description: str
    member_count: int
    gmt_created: str
    gmt_updated: str
    member_updated: str | None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> AddressList:
        f = _Fields(raw, where)
        return cls(
            address=f.text("address"),
            name=f.text("name"),
            description=f.opt_text("description") or "",
            member_count=_int(raw.get("memberCount"), f"{where}.memberCount", 0),
            gmt_created=f.text("gmtCreated"),
            gmt_updated=f.text("gmtUpdated"),
            member_updated=f.opt_text("memberUpdated"),
        )


@dataclass(frozen=True)
class Member:
    address: str
    member: str
    name: str | None
    vars: dict[str, str]
    gmt_created: str
    gmt_updated: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> Member:
        f = _Fields(raw, where)
        return cls(
            address=f.text("address"),
            member=f.text("member"),
            name=f.opt_text("name"),
            vars=_vars(raw.get("vars"), f"{where}.vars"),
            gmt_created=f.text("gmtCreated"),
            gmt_updated=f.text("gmtUpdated"),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    total: int
    count: int
    items: list[T]

    @classmethod
    def parse(
        cls, info: Mapping[str, Any], parse_item: ItemParser[T]
    ) -> Page[T]:
        items = _items(info, "dataList", parse_item)
        count = _int(info.get("count"), "count", len(items))
        # addressmember/get sends no total: the page is then the whole answer.
        return cls(total=_int(info.get("total"), "total", count), count=count, items=items)


@dataclass(frozen=True)
class MemberOpResult:
    count: int
    invalid_count: int
    invalid_addresses: list[str]
    reasons: list[str]

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> MemberOpResult:
        invalid = _str_list(info.get("invalidAddressList"), "invalidAddressList")
        return cls(
            count=_int(info.get("count"), "count"),
            invalid_count=_int(info.get("invalidCount"), "invalidCount", len(invalid)),
            invalid_addresses=invalid,
            reasons=_str_list(info.get("reasonList"), "reasonList"),
        )


def info_object(info: object) -> Mapping[str, Any]:
    """A reply's ``info``: an object, or absent (some replies send none)."""
    return _mapping(info, "info")


def parse_count(info: Mapping[str, Any]) -> int:
    """The ``count`` of an addresslist delete/update reply."""
    return _int(info.get("count"), "count")


def parse_data(info: Mapping[str, Any]) -> AddressList:
    """The ``data`` object of an addresslist/add reply."""
    return AddressList.parse(_mapping(info.get("data"), "data"), "data")


def parse_timestamp(info: object) -> int:
    """The server time in ms from a timestamp/get reply: ``info.timestamp``, or a bare number."""
    if isinstance(info, Mapping):
        return _int(info.get("timestamp"), "timestamp")
    return _int(info, "info")
