"""The inbox: where the receiver appends each verified hook, and what a reader gets back.

This is a contract with the readers of the inbox; change it only together with them.

* One Redis stream per hook path: ``sendcloud:inbox:sms`` (SMSHook) and
  ``sendcloud:inbox:mail`` (mail WebHook). Entries are never trimmed by the receiver: a reader
  deletes (``XDEL``/``XTRIM MINID``) what it has processed.
* Each entry has two fields:

  - ``event``: compact JSON of the hook as received, without ``token`` and ``signature``.
    Every value is a string, as a form post sends it (a JSON body's numbers, booleans, nulls
    and objects become their compact JSON text: ``1426571113188``, ``true``), except
    ``smsIds``, ``phones``, ``emailIds`` and ``recipientArray``: lists of strings, decoded
    from the JSON text SendCloud sends them as.
  - ``received_at``: Redis's ``TIME`` when the entry was appended, integer milliseconds.

* A hook is appended once: SendCloud's retries and duplicates (the same token) are not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

SMS_INBOX = "sendcloud:inbox:sms"
MAIL_INBOX = "sendcloud:inbox:mail"

Channel = Literal["sms", "mail"]
INBOXES: dict[Channel, str] = {"sms": SMS_INBOX, "mail": MAIL_INBOX}

#: Fields SendCloud sends as JSON text of a list; the entry holds them as lists of strings.
LIST_FIELDS = frozenset({"smsIds", "phones", "emailIds", "recipientArray"})
#: Fields of the hook never stored: they authenticate one post and are secrets.
DROPPED_FIELDS = frozenset({"token", "signature"})

Hook = dict[str, str | list[str]]

#: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` without making an encoder per
#: call (a tenth of a hook's JSON time).
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_event(hook: Mapping[str, str | list[str]]) -> str:
    """The entry's ``event`` field: the hook without its token and signature, compact JSON."""
    return _compact({name: value for name, value in hook.items() if name not in DROPPED_FIELDS})


def _text(value: bytes | str) -> str:
    # Not producers.replies: the receiver imports nothing of the producers (docs/architecture.md).
    return value.decode() if isinstance(value, bytes) else value


def decode_entry(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> tuple[dict[str, Any], int]:
    """``(event, received_at_ms)`` of one inbox entry's fields, as XREAD/XRANGE return them
    (bytes, or str from a client made with ``decode_responses=True``)."""
    by_name = {_text(name): _text(value) for name, value in fields.items()}
    try:
        event = json.loads(by_name["event"])
        received_at_ms = int(by_name["received_at"])
    except KeyError as exc:
        raise ValueError(f"inbox entry: no {exc.args[0]!r} field") from None
    if not isinstance(event, dict):
        raise ValueError("inbox entry: 'event' is not a JSON object")
    return event, received_at_ms
