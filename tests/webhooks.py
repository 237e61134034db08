"""Signed SendCloud hooks for the receiver's tests and benchmark, built as SendCloud builds them.

The signature is computed here independently of worker.web (hmac + hashlib), so a test that
posts these hooks checks the receiver against the documented scheme, not against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import redis

SMS_KEY = "sms-hook-app-key-0123456789"
MAIL_KEY = "mail-hook-app-key-9876543210"
TOKEN_CHARS = 50


def redis_ms(client: redis.Redis) -> int:
    """Redis's TIME in milliseconds: the clock the receiver judges timestamps by."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def new_token() -> str:
    return secrets.token_urlsafe(40)[:TOKEN_CHARS]


def signed(key: str, timestamp_ms: int | str, *, token: str | None = None,
           **fields: Any) -> dict[str, Any]:
    """A hook's fields with ``timestamp``, a fresh 50-character ``token`` and its ``signature``
    (a ``str`` timestamp is signed as it is, malformed or not)."""
    token = token if token is not None else new_token()
    stamp = str(timestamp_ms)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {**fields, "timestamp": stamp, "token": token, "signature": signature}


def sms_deliver(timestamp_ms: int, *, key: str = SMS_KEY, token: str | None = None,
                sms_id: str = "1458113381893_15_3_11_1ainnq$13111234567") -> dict[str, Any]:
    return signed(key, timestamp_ms, token=token, event="deliver", eventType="2",
                  message="delivered", smsUser="sms_user", templateId="12345", userId="42",
                  labelId="7", smsId=sms_id, phone=sms_id.rsplit("$", 1)[-1])  # fmt: skip


def sms_request(timestamp_ms: int, sms_ids: list[str], *, key: str = SMS_KEY
                ) -> dict[str, Any]:
    """A ``request`` event, its lists as JSON text, as both of SendCloud's encodings send them."""
    return signed(key, timestamp_ms, event="request", eventType="1", message="request",
                  smsUser="sms_user", templateId="12345",
                  smsIds=json.dumps(sms_ids),
                  phones=json.dumps([s.rsplit("$", 1)[-1] for s in sms_ids]))  # fmt: skip


def form_body(hook: dict[str, Any]) -> bytes:
    return urlencode(hook).encode()


def json_body(hook: dict[str, Any]) -> bytes:
    return json.dumps(hook).encode()
