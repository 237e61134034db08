"""A hook's body, form-urlencoded or JSON, into the flat shape the inbox stores.

SendCloud posts either encoding (older hooks: form fields with lists as JSON text; newer: a
JSON object in which the lists are JSON-encoded strings). Both come out the same: every value
a string, the list fields (``inbox.LIST_FIELDS``) lists of strings. Anything else is a
:class:`BadHook` naming the field and the rule, answered with 400.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from worker.web.inbox import LIST_FIELDS, Hook

#: More fields than any SendCloud hook has (about 20); a post with more is not one of them.
MAX_FIELDS = 100


class BadHook(ValueError):
    """The body is not a hook: which field, and the rule it breaks."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _as_text(value: Any) -> str:
    """A JSON body's value as a form post would carry it: strings as they are, anything else
    as its compact JSON text (``1426571113188``, ``true``, ``{"a":"b"}``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _as_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadHook(name, "must be a JSON list (or the JSON text of one)") from None
    if not isinstance(value, list):
        raise BadHook(name, "must be a JSON list (or the JSON text of one)")
    return [_as_text(item) for item in value]


def _unquote(text: str) -> str:
    # Most of a hook's fields (token, signature, timestamp, event) need no decoding: skip the call.
    return unquote_plus(text, errors="strict") if "%" in text or "+" in text else text


def _form(body: bytes) -> Hook:
    """A strict form parse (as ``parse_qsl(strict_parsing=True)``): every field has an "="."""
    try:
        parts = body.decode("utf-8").split("&") if body else []
        if len(parts) > MAX_FIELDS:
            raise ValueError("too many fields")
        fields: Hook = {}
        for part in parts:
            name, equals, value = part.partition("=")
            if not equals:
                raise ValueError("a field without '='")
            name = _unquote(name)
            if name in fields:
                raise BadHook(name, "given more than once")
            fields[name] = _unquote(value)
    except BadHook:
        raise
    except ValueError:  # bad UTF-8 (raw or %-encoded), a field without "=", too many fields
        raise BadHook("body", "must be form-urlencoded UTF-8 or a JSON object") from None
    return fields


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:  # bad UTF-8 or bad JSON
        raise BadHook("body", "must be a JSON object or form-urlencoded UTF-8") from None
    if not isinstance(document, dict):
        raise BadHook("body", "must be a JSON object")
    if len(document) > MAX_FIELDS:
        raise BadHook("body", f"more than {MAX_FIELDS} fields")
    return document


def parse_hook(body: bytes, content_type: str) -> Hook:
    """The hook in ``body``; raises :class:`BadHook`. ``content_type`` picks the decoder;
    without a known one, a body starting with ``{`` is read as JSON, anything else as a form."""
    media = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        form = False
    elif media == "application/x-www-form-urlencoded":
        form = True
    else:
        form = not body.lstrip().startswith(b"{")
    hook: Hook
    if form:  # every value is a string already: only the list fields need decoding
        hook = _form(body)
        for name in [name for name in hook if name in LIST_FIELDS]:  # in the body's order
            hook[name] = _as_list(name, hook[name])
    else:
        hook = {name: _as_list(name, value) if name in LIST_FIELDS else _as_text(value)
                for name, value in _json(body).items()}  # fmt: skip
    event = hook.get("event")
    if not isinstance(event, str) or not event.strip():
        raise BadHook("event", "is required")
    return hook
