"""smsapi: ``send``, ``sendCode``, ``sendVoice`` and ``timestamp/get``.

Documented behaviour is followed as written (docs/sendcloud-api/sms.txt). Where the docs give no
code for a rule, the closest documented code is used:

- more than 2000 phones in one ``send``: 412, message "phone numbers cannot be more than 2000";
- ``send`` with ``msgType`` other than 0/1, or a template of the other type: 431 (templates
  are kept per message type, so no such template exists);
- ``sendCode`` with ``msgType`` other than 0/2: 482 (the type decides the number format);
- ``sendCode``/``sendVoice`` ``code``: empty 481, not 4-6 digits 482 (the code is the one
  substituted variable of these messages); more than one phone: 412;
- ``sendCode`` without ``signId`` and ``signName``: 433 (the signature takes the template's
  place), a ``signId`` that is not a positive integer: 431;
- ``vars`` not a JSON object of strings/numbers, or a value with an http(s) link: 441; a value
  over 32 characters: 483;
- ``tag`` not a JSON object or over 128 characters, ``sendRequestId`` over 128 characters:
  441 with a message naming the parameter.

Phone formats: mainland mobile numbers are 11 digits starting 13-19; international numbers
(``sendCode`` msgType 2) are 7-15 digits, optionally after "+" or "00".

``send`` with some bad phones answers 311 (``result: true``) with ``items`` for the bad ones;
all bad answers 412 for a single phone and 312 otherwise, with
``info: {"successCount": 0, "failedCount": n, "items": [...]}``.

Limits are checked for the whole request before anything is sent: the daily limit (498, per
Asia/Shanghai calendar day) then the minute limit (496, last 60 s), then the balance (499, one
unit per message). A refused request sends nothing.

A ``sendRequestId`` is remembered, per smsUser for one hour of the simulator clock, only when
the request took effect (200/311), so a client may retry a refused request with the same id.
A repeat then answers ``{"result": false, "statusCode": 400, "message": "duplicate request",
"info": {}}`` or, with ``duplicate_mode = "replay"``, the first reply again.

smsIds look like SendCloud's, ``<ms>_<n>_<kind>_<msgType>_<suffix>$<phone>``: ``n`` counts every
id, the suffix is one per request. The per-phone send history behind 496/498 is kept only while
a limit is set (``set_phone_limits``): sends made before then do not count toward it, and a
campaign of millions costs no memory for it.

``timestamp/get`` answers ``info: {"timestamp": <server time in ms>}``; the server time is the
clock plus ``clock_offset_ms``, which also decides the 461 check.
"""

from __future__ import annotations

import json
import re
import string
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.ledger import Ledger
from simulator.protocol import ApiError, Params, envelope, shanghai_date
from simulator.signature import check_sms_request

MAX_PHONES = 2000
MAX_VAR_LENGTH = 32
MAX_TAG_LENGTH = 128
MAX_REQUEST_ID_LENGTH = 128
DEDUP_WINDOW = 3600.0
DUPLICATE_MODES = ("error", "replay")
BAD_PHONE = "手机号格式错误"

_MAINLAND = re.compile(r"1[3-9]\d{9}")
_INTERNATIONAL = re.compile(r"(?:\+|00)?[1-9]\d{6,14}")
_CODE = re.compile(r"\d{4,6}")
_LINK = re.compile(r"https?://", re.IGNORECASE)
_KIND_NUMBERS = {"sms": 3, "code": 5, "voice": 7}


@dataclass(frozen=True)
class Template:
    template_id: int
    text: str
    msg_type: int
    approved: bool


@dataclass(frozen=True)
class Delivery:
    """What one request delivers: its recipients share all but their phone."""

    kind: str
    phones: list[str]
    text: str
    template_id: int | None = None
    msg_type: int | None = None


# smsId suffixes: six base-36 characters from a counter, scattered by a multiplication (odd,
# so a bijection modulo 36**6): no random draw needed.
_B36 = string.digits + string.ascii_lowercase
_HALF = [a + b + c for a in _B36 for b in _B36 for c in _B36]
_SPACE = 36**6


_K = 2654435761


class SmsApi:
    def __init__(self, *, sms_user: str, sms_key: str, clock: Callable[[], float],
                 ledger: Ledger, seed: int) -> None:
        self.sms_user = sms_user
        self._sms_key = sms_key
        self._clock = clock
        self._ledger = ledger
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        self.duplicate_mode = "error"
        self.clock_offset_ms = 0
        self.balance: int | None = None
        self.per_minute: int | None = None
        self.per_day: int | None = None
        self.templates: dict[int, Template] = {}
        self._accepted: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        # Ids in the order they were accepted, so expiry looks only at the oldest ones.
        self._accept_order: deque[tuple[float, tuple[str, str]]] = deque()
        self._sends_by_phone: dict[str, deque[float]] = {}
        self._id_counter = 0

    def server_ms(self) -> int:
        return int(self._clock() * 1000) + self.clock_offset_ms

    # -- endpoints -------------------------------------------------------------------------

    def timestamp(self, params: Params) -> dict[str, Any]:
        return envelope(200, {"timestamp": self.server_ms()})

    def send(self, params: Params) -> dict[str, Any]:
        return self._serve(params, self._plan_send)

    def send_code(self, params: Params) -> dict[str, Any]:
        return self._serve(params, self._plan_code)

    def send_voice(self, params: Params) -> dict[str, Any]:
        return self._serve(params, self._plan_voice)

    # -- the shared pipeline ---------------------------------------------------------------

    def _serve(
        self,
        params: Params,
        plan: Callable[[Params], tuple[Delivery, list[dict[str, Any]]]],
    ) -> dict[str, Any]:
        user = check_sms_request(
            params, sms_user=self.sms_user, sms_key=self._sms_key, server_ms=self.server_ms()
        )
        request_id = params.get("sendRequestId", "").strip() or None
        if request_id is not None:
            if len(request_id) > MAX_REQUEST_ID_LENGTH:
                raise ApiError(441, "sendRequestId cannot be longer than 128 characters")
            earlier = self._earlier_reply(user, request_id)
            if earlier is not None:
                if self.duplicate_mode == "replay":
                    return earlier
                raise ApiError(400)
        _check_tag(params.get("tag", ""))
        delivery, failed = plan(params)
        if not delivery.phones:
            if len(failed) == 1:
                raise ApiError(412)
            raise ApiError(312, info={"successCount": 0, "failedCount": len(failed),
                                      "items": failed})
        self._check_limits(delivery.phones)
        if self.balance is not None:
            if self.balance < len(delivery.phones):
                raise ApiError(499)
            self.balance -= len(delivery.phones)
        sms_ids = self._deliver(delivery, request_id)
        if failed:
            reply = envelope(311, {"successCount": len(sms_ids), "failedCount": len(failed),
                                   "items": failed, "smsIds": sms_ids})
        else:
            reply = envelope(200, {"successCount": len(sms_ids), "smsIds": sms_ids})
        if request_id is not None:
            at = self._clock()
            self._accepted[(user, request_id)] = (at, reply)
            self._accept_order.append((at, (user, request_id)))
        return reply

    def _earlier_reply(self, user: str, request_id: str) -> dict[str, Any] | None:
        now = self._clock()
        order = self._accept_order
        while order and now - order[0][0] >= DEDUP_WINDOW:
            at, key = order.popleft()
            stored = self._accepted.get(key)
            if stored is not None and stored[0] == at:
                del self._accepted[key]
        found = self._accepted.get((user, request_id))
        if found is not None and now - found[0] >= DEDUP_WINDOW:
            # A test clock may step back and forth; the window itself is what counts.
            return None
        return None if found is None else found[1]

    def _check_limits(self, phones: list[str]) -> None:
        per_day, per_minute = self.per_day, self.per_minute
        if per_day is None and per_minute is None:
            return  # no limit set: no per-phone history is kept either (see _deliver)
        now = self._clock()
        today = shanghai_date(now)
        for phone in phones:
            times = self._sends_by_phone.get(phone)
            if not times:
                continue
            while times and now - times[0] > 2 * 86400:
                times.popleft()
            if per_day is not None and sum(shanghai_date(t) == today for t in times) >= per_day:
                raise ApiError(498)
            if per_minute is not None and sum(now - t < 60 for t in times) >= per_minute:
                raise ApiError(496)

    def _deliver(self, delivery: Delivery, request_id: str | None) -> list[str]:
        """Record the request's deliveries; their smsIds, in order."""
        now = self._clock()
        prefix = f"{int(now * 1000)}_"
        middle = f"_{_KIND_NUMBERS[delivery.kind]}_{delivery.msg_type or 0}_"
        first = self._id_counter + 1
        self._id_counter += len(delivery.phones)
        # One random-looking suffix per request, as in SendCloud's ids: the counter before it
        # and the phone after it make each id unique.
        x = ((first + self._seed * 1_000_003) * _K) % _SPACE
        middle += f"{_HALF[x // 46656]}{_HALF[x % 46656]}$"
        sms_ids = [f"{prefix}{n}{middle}{phone}" for n, phone in enumerate(delivery.phones, first)]
        self._ledger.record_many(
            kind=delivery.kind, phones=delivery.phones, sms_ids=sms_ids, at=now,
            template_id=delivery.template_id, send_request_id=request_id,
            msg_type=delivery.msg_type, text=delivery.text,
        )  # fmt: skip
        if self.per_day is not None or self.per_minute is not None:
            # Kept only while a limit is set: at millions of numbers it is most of the memory.
            for phone in delivery.phones:
                self._sends_by_phone.setdefault(phone, deque()).append(now)
        return sms_ids

    # -- per-endpoint validation -----------------------------------------------------------

    def _plan_send(self, params: Params) -> tuple[Delivery, list[dict[str, Any]]]:
        raw_template = params.get("templateId", "").strip()
        if not raw_template:
            raise ApiError(433)
        raw_phones = params.get("phone", "").strip()
        if not raw_phones:
            raise ApiError(411)
        template = self.templates.get(int(raw_template)) if raw_template.isdigit() else None
        if template is None:
            raise ApiError(431)
        if not template.approved:
            raise ApiError(432)
        msg_type = params.get("msgType", "").strip() or "0"
        if msg_type not in ("0", "1") or int(msg_type) != template.msg_type:
            raise ApiError(431)
        variables = _parse_vars(params.get("vars", ""))
        phones = [p.strip() for p in raw_phones.split(",") if p.strip()]
        if not phones:
            raise ApiError(411)
        if len(phones) > MAX_PHONES:
            raise ApiError(412, "phone numbers cannot be more than 2000")
        if len(set(phones)) != len(phones):
            raise ApiError(413)
        text = _render(template.text, variables)
        good: list[str] = []
        failed: list[dict[str, Any]] = []
        match = _MAINLAND.fullmatch
        for phone in phones:
            if match(phone):
                good.append(phone)
            else:
                failed.append({"phone": phone, "vars": variables, "message": BAD_PHONE})
        return Delivery("sms", good, text, template.template_id, template.msg_type), failed

    def _plan_code(self, params: Params) -> tuple[Delivery, list[dict[str, Any]]]:
        msg_type = params.get("msgType", "").strip() or "0"
        if msg_type not in ("0", "2"):
            raise ApiError(482, "msgType must be 0 or 2")
        phone = _single_phone(params, _INTERNATIONAL if msg_type == "2" else _MAINLAND)
        code = _code(params)
        sign_id = params.get("signId", "").strip()
        if sign_id:
            if not (sign_id.isascii() and sign_id.isdigit() and int(sign_id) > 0):
                raise ApiError(431, "signature (signId) does not exist")
        elif not params.get("signName", "").strip():
            raise ApiError(433, "signId or signName cannot be empty")
        return Delivery("code", [phone], code, None, int(msg_type)), []

    def _plan_voice(self, params: Params) -> tuple[Delivery, list[dict[str, Any]]]:
        phone = _single_phone(params, _MAINLAND)
        return Delivery("voice", [phone], _code(params)), []


def _single_phone(params: Params, pattern: re.Pattern[str]) -> str:
    phone = params.get("phone", "").strip()
    if not phone:
        raise ApiError(411)
    if not pattern.fullmatch(phone):
        raise ApiError(412)
    return phone


def _code(params: Params) -> str:
    code = params.get("code", "").strip()
    if not code:
        raise ApiError(481)
    if not _CODE.fullmatch(code):
        raise ApiError(482, "code must be 4-6 digits")
    return code


def _parse_vars(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ApiError(441) from None
    if not isinstance(parsed, dict):
        raise ApiError(441)
    variables: dict[str, str] = {}
    for key, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ApiError(441)
        text = str(value)
        if _LINK.search(text):
            raise ApiError(441, "http links are not allowed in variables")
        if len(text) > MAX_VAR_LENGTH:
            raise ApiError(483)
        variables[key] = text
    return variables


def _check_tag(raw: str) -> None:
    if not raw.strip():
        return
    if len(raw) > MAX_TAG_LENGTH:
        raise ApiError(441, "tag cannot be longer than 128 characters")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ApiError(441, "tag must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise ApiError(441, "tag must be a JSON object")


def _render(text: str, variables: dict[str, str]) -> str:
    for key, value in variables.items():
        name = key if len(key) > 1 and key.startswith("%") and key.endswith("%") else f"%{key}%"
        text = text.replace(name, value)
    return text
