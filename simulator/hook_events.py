"""What the simulator POSTs as SendCloud's SMSHook and mail WebHook: settings, fields, bodies.

Follows docs/sendcloud-api/webhooks.txt and the "SMSHook error code" table of sms.txt. Every
POST carries ``timestamp`` (ms, the simulator clock), ``token`` (50 random characters) and
``signature`` = hex HMAC-SHA256(key = the app key, msg = timestamp + token).

Two encodings, as SendCloud used over the years: ``form`` (every value a string, lists as JSON
text) and ``json`` (a JSON object whose list fields, ``smsIds``/``phones`` and the mail
``emailIds``/``recipientArray``, are JSON-encoded strings, as in SendCloud's newer hooks);
``mixed`` picks one per event from the seeded dice.

Choices where the docs are silent: ``eventType`` is request 1, deliver 2, workererror 3,
delivererror 4, reply 5 (receivers must dispatch on ``event``); ``userId`` is a number derived
from the smsUser; ``labelId`` is empty (labels are not simulated); failure messages are the
table's English meaning; a failure's statusCode is drawn evenly from its table.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlencode

SMS_EVENT_TYPES = {"request": 1, "deliver": 2, "workererror": 3, "delivererror": 4, "reply": 5}
WORKER_ERRORS = {
    410: "processing failed, number is in global intercept list",
    420: "processing failed, number is in local intercept list",
    430: "processing failed, unsubscribe",
    440: "processing failed, key words filtering",
    450: "processing failed, wrong replacement variable",
    460: "processing failed, SMS content cannot be more than 500 characters",
}
DELIVER_ERRORS = {
    500: "SMS failure, non-existed number",
    510: "SMS failure, number out of service",
    550: "SMS failure, template content was complained",
    580: "SMS failure, phone powered off",
    590: "SMS failure, other reasons",
}
SMS_CODES = {"workererror": WORKER_ERRORS, "delivererror": DELIVER_ERRORS}
SMS_FINAL_EVENTS = ("deliver", "workererror", "delivererror")
SMS_MESSAGES = {"request": "request received", "deliver": "delivered", "reply": "reply received"}
#: What a receiver should make of each final outcome, in the product's words.
SMS_EXPECTED = {"deliver": "delivered", "delivererror": "undelivered", "workererror": "rejected"}
REPLIES = ("TD", "好的，收到", "OK thanks", "STOP", "1")

MAIL_FINAL_EVENTS = ("deliver", "invalid", "soft_bounce")
MAIL_EVENTS = ("request", "deliver", "open", "click", "unsubscribe", "report_spam", "invalid",
               "soft_bounce")
MAIL_SUBSTATS = {"invalid": range(401, 410), "soft_bounce": (503, 505, 506, 507, 508, 509)}
MAIL_MESSAGES = {"request": "request received", "deliver": "Successfully delivered",
                 "open": "opened", "click": "clicked", "unsubscribe": "unsubscribed",
                 "report_spam": "reported as spam"}
ENCODINGS = ("form", "json", "mixed")
LIST_FIELDS = frozenset({"smsIds", "phones", "emailIds", "recipientArray"})

Fields = dict[str, Any]


def _check_mix(name: str, mix: dict[str, float], events: tuple[str, ...]) -> None:
    unknown = set(mix) - set(events)
    if unknown:
        raise ValueError(f"{name}: unknown events {', '.join(sorted(unknown))} "
                         f"(allowed: {', '.join(events)})")
    if any(not 0.0 <= weight <= 1.0 for weight in mix.values()):
        raise ValueError(f"{name}: every share must be within 0..1")
    if abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ValueError(f"{name}: the shares must add up to 1, got {sum(mix.values()):g}")


@dataclass(frozen=True)
class HookSettings:
    """Where and how hook events go; every field is settable at run time (``replace``)."""

    sms_url: str | None = None
    mail_url: str | None = None
    sms_key: str = field(default="", repr=False)
    mail_key: str = field(default="", repr=False)
    sms_mix: dict[str, float] = field(default_factory=lambda: {
        "deliver": 0.9, "delivererror": 0.07, "workererror": 0.03})
    reply_rate: float = 0.0
    mail_mix: dict[str, float] = field(default_factory=lambda: {
        "deliver": 0.9, "invalid": 0.05, "soft_bounce": 0.05})
    open_rate: float = 0.3  # of delivered emails
    click_rate: float = 0.2  # of opened emails
    min_delay: float = 0.0
    max_delay: float = 0.0
    duplicate_ratio: float = 0.0
    reorder_ratio: float = 0.0
    encoding: str = "form"
    seed: int = 0
    connections: int = 4
    max_attempts: int = 10
    retry_base: float = 0.5
    retry_max: float = 60.0
    timeout: float = 3.0

    def __post_init__(self) -> None:
        for name in ("sms_url", "mail_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}: must start with http:// or https://")
        for name, url, key in (("sms_key", self.sms_url, self.sms_key),
                               ("mail_key", self.mail_url, self.mail_key)):
            if url is not None and not key:
                raise ValueError(f"{name}: the app key is required while the hook URL is set")
        _check_mix("sms_mix", self.sms_mix, SMS_FINAL_EVENTS)
        _check_mix("mail_mix", self.mail_mix, MAIL_FINAL_EVENTS)
        for name in ("reply_rate", "open_rate", "click_rate", "duplicate_ratio", "reorder_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be within 0..1")
        if not 0.0 <= self.min_delay <= self.max_delay:
            raise ValueError("min_delay, max_delay: need 0 <= min_delay <= max_delay")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: must be one of {', '.join(ENCODINGS)}")
        for name, low in (("connections", 1), ("max_attempts", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be >= {low}")
        if not 0.0 < self.retry_base <= self.retry_max:
            raise ValueError("retry_base, retry_max: need 0 < retry_base <= retry_max")
        if self.timeout <= 0:
            raise ValueError("timeout: must be > 0")

    def updated(self, changes: dict[str, Any]) -> HookSettings:
        """These settings with ``changes`` (JSON values) applied; ValueError names the field."""
        types = {f.name: f.type for f in fields(self)}
        unknown = set(changes) - set(types)
        if unknown:
            raise ValueError(f"unknown hook settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            kind = str(types[name])
            if value is None or "dict" in kind:
                values[name] = None if value is None else {str(k): float(v)
                                                           for k, v in dict(value).items()}
            elif kind == "int":
                values[name] = int(value)
            elif kind == "float":
                values[name] = float(value)
            else:
                values[name] = str(value)
        return dataclasses.replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        """The settings as shown by the admin API: the app keys only as set or not."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("sms_key", "mail_key")}
        data.update(sms_key_set=bool(self.sms_key), mail_key_set=bool(self.mail_key))
        return data


def sms_user_id(sms_user: str) -> int:
    """A stable account number for the smsUser, as SendCloud's ``userId``."""
    return 10000 + int(hashlib.sha256(sms_user.encode()).hexdigest()[:8], 16) % 90000


def sms_request_fields(*, sms_user: str, template_id: int | None, sms_ids: list[str],
                       phones: list[str]) -> Fields:
    return {**_sms_common("request", sms_user, template_id), "smsIds": sms_ids, "phones": phones}


def sms_outcome_fields(event: str, *, sms_user: str, template_id: int | None, sms_id: str,
                       phone: str, status_code: int | None = None) -> Fields:
    """A deliver, workererror or delivererror event for one smsId."""
    data = {**_sms_common(event, sms_user, template_id), "smsId": sms_id, "phone": phone}
    if event != "deliver":
        codes = SMS_CODES[event]
        if status_code not in codes:
            raise ValueError(f"status_code: {event} takes one of {', '.join(map(str, codes))}")
        message = codes[status_code]
        data.update(message=message, statusCode=status_code, encodeMessage=b64(message))
    return data


def sms_reply_fields(*, sms_user: str, template_id: int | None, sms_id: str, phone: str,
                     content: str, reply_time: int) -> Fields:
    return {**_sms_common("reply", sms_user, template_id), "smsId": sms_id, "phone": phone,
            "replyContent": content, "encodeReplyContent": b64(content), "replyTime": reply_time}


def _sms_common(event: str, sms_user: str, template_id: int | None) -> Fields:
    return {"event": event, "eventType": SMS_EVENT_TYPES[event],
            "message": SMS_MESSAGES.get(event, ""), "smsUser": sms_user,
            "templateId": "" if template_id is None else template_id,
            "userId": sms_user_id(sms_user), "labelId": ""}


def mail_request_fields(*, api_user: str, message_id: str, email_ids: list[str],
                        recipients: list[str]) -> Fields:
    return {**_mail_common("request", api_user), "messageId": message_id,
            "recipientArray": recipients, "emailIds": email_ids,
            "recipientSize": len(recipients)}


def mail_event_fields(event: str, *, api_user: str, email_id: str, recipient: str,
                      substat: int | None = None, substat_desc: str = "") -> Fields:
    """One email's event; invalid and soft_bounce carry substat and substatdesc."""
    if event not in MAIL_EVENTS or event == "request":
        raise ValueError(f"event: must be one of {', '.join(MAIL_EVENTS[1:])}")
    data = {**_mail_common(event, api_user), "emailId": email_id, "recipient": recipient}
    if event in MAIL_SUBSTATS:
        if substat not in MAIL_SUBSTATS[event]:
            raise ValueError(f"substat: {event} takes one of "
                             f"{', '.join(map(str, MAIL_SUBSTATS[event]))}")
        data.update(message=substat_desc, substat=substat, substatdesc=substat_desc)
    elif event == "deliver":
        data["outIp"] = "10.9.6.1"
    elif event in ("open", "click", "unsubscribe"):
        data.update(ip="203.0.113.7", explorerName="Chrome", explorerVer="120.0",
                    oSName="Windows", oSVer="10")
        if event == "click":
            data["url"] = "https://example.com/offer"
    return data


def _mail_common(event: str, api_user: str) -> Fields:
    return {"event": event, "message": MAIL_MESSAGES.get(event, ""), "category": api_user,
            "labelId": "", "mail_list_task_id": ""}


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def new_token() -> str:
    return secrets.token_hex(25)  # 50 characters


def sign(key: str, timestamp: int, token: str) -> str:
    return hmac.new(key.encode("utf-8"), f"{timestamp}{token}".encode(),
                    hashlib.sha256).hexdigest()


def encode(data: Fields, *, key: str, timestamp: int, token: str,
           encoding: str) -> tuple[bytes, str]:
    """The signed body of one POST and its content type; ``encoding`` is form or json."""
    signed = {**data, "timestamp": timestamp, "token": token,
              "signature": sign(key, timestamp, token)}
    if encoding == "json":
        body = {k: json.dumps(v, ensure_ascii=False) if k in LIST_FIELDS else v
                for k, v in signed.items()}
        return json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json"
    form = {k: json.dumps(v, ensure_ascii=False) if k in LIST_FIELDS else str(v)
            for k, v in signed.items()}
    return urlencode(form).encode("ascii"), "application/x-www-form-urlencoded"
