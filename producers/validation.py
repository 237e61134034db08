"""Checks a job's input against SendCloud's documented limits before anything is enqueued.

Every check raises :class:`~producers.errors.ProducerValidationError` naming the field (with an
index for list items, e.g. ``phones[3]``) and the rule. Checks return the normalised value that
goes into the payload, so a job holds exactly what SendCloud will receive.

Decisions the docs leave open:

* Phone numbers must be ``str`` (an int would lose a leading ``+``). Spaces and dashes are
  removed, and a mainland number may carry a ``+86``, ``0086`` or ``86`` prefix, which is dropped.
* Variable values may be ``str`` or ``int`` (not ``bool``); ints are converted with ``str()``,
  because ``{"money": 100}`` is what callers naturally write. Floats are refused: their text
  form (``1e-05``, ``0.30000000000000004``) is rarely what a message should say.
* Member addresses are compared case-insensitively when looking for duplicates.
* Idempotency keys are 1..100 printable ASCII characters without whitespace, so a
  ``sendRequestId`` derived from one stays within SendCloud's 128 characters.

Phone validation is on the hot path of bulk campaigns (a million numbers), so it is one
precompiled regex per number, with the slow normalisation only for input that needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from producers.errors import ProducerValidationError

MAX_SMS_PHONES = 2000  # "the amount cannot be more 2,000 each time"
MAX_MEMBERS_PER_REQUEST = 1000  # "You can add up to 1000 members on each request"
MAX_SMS_VAR_LENGTH = 32
MAX_TAG_JSON_LENGTH = 128
MAX_MEMBER_VARS_JSON_LENGTH = 1024
MAX_ADDRESS_LENGTH = 48
MAX_KEY_LENGTH = 100
MAX_EXPIRY_SECONDS = 86400  # a verification code older than a day is a bug, not a request

# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_PLAIN_MAINLAND = re.compile(r"1[3-9][0-9]{9}")
_MAINLAND = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})")
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{5,14}")
_CODE = re.compile(r"[0-9]{4,6}")
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# Practical e-mail shape; ';' and ',' are excluded because SendCloud splits lists on them.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)
_STRIP = str.maketrans("", "", " -\t")

MAINLAND_RULE = "must be a mainland mobile number (11 digits starting 13-19)"
INTERNATIONAL_RULE = "must be an international number: '+' then 6-15 digits"


def fail(field: str, rule: str, value: object = None) -> ProducerValidationError:
    return ProducerValidationError(field, rule, value)


def compact_json(value: object) -> str:
    """The JSON text sent to SendCloud, and the one whose length the limits apply to."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize_mainland(phone: str) -> str | None:
    """``phone`` as 11 digits, or None if it is not a mainland mobile number."""
    if _PLAIN_MAINLAND.fullmatch(phone):
        return phone
    match = _MAINLAND.fullmatch(phone)
    if match is None:
        match = _MAINLAND.fullmatch(phone.translate(_STRIP))
        if match is None:
            return None
    return match.group(1)


def normalize_international(phone: str) -> str | None:
    """``phone`` as ``+`` and digits, or None if it is not an E.164-style number."""
    if _INTERNATIONAL.fullmatch(phone):
        return phone
    stripped = phone.translate(_STRIP)
    return stripped if _INTERNATIONAL.fullmatch(stripped) else None


def _phone_error(phone: object, field: str, international: bool) -> ProducerValidationError:
    if not isinstance(phone, str):
        return fail(field, "must be a string", phone)
    return fail(field, INTERNATIONAL_RULE if international else MAINLAND_RULE, phone)


def validate_phone(phone: object, field: str = "phone", *, international: bool = False) -> str:
    normalized = None
    if isinstance(phone, str):
        normalized = (normalize_international if international else normalize_mainland)(phone)
    if normalized is None:
        raise _phone_error(phone, field, international)
    return normalized


def validate_phones(
    phones: object,
    field: str = "phones",
    *,
    max_count: int | None = MAX_SMS_PHONES,
    international: bool = False,
) -> list[str]:
    """Normalised mainland (or international) numbers, all distinct, in the given order.

    ``max_count=None`` lifts the per-request limit, for callers that chunk a campaign themselves.
    """
    if isinstance(phones, str | bytes) or not isinstance(phones, Iterable):
        raise fail(field, "must be a list of phone numbers", phones)
    items = phones if isinstance(phones, list | tuple) else list(phones)
    if not items:
        raise fail(field, "must not be empty")
    if max_count is not None and len(items) > max_count:
        raise fail(field, f"must hold at most {max_count} numbers (got {len(items)})")
    # Fast path, all in C but the slow normaliser: numbers already in final form are kept as
    # they are. Any problem falls back to the loop below, which reports the first one in order.
    plain = (_INTERNATIONAL if international else _PLAIN_MAINLAND).fullmatch
    normalize = normalize_international if international else normalize_mainland
    try:
        out = [phone if plain(phone) else normalize(phone) for phone in items]
    except TypeError:  # a non-str item
        out = []
    if len(out) == len(items) and None not in out and len(set(out)) == len(out):
        return out  # type: ignore[return-value]
    raise _first_phone_error(items, field, international)


def _first_phone_error(
    items: Sequence[object], field: str, international: bool
) -> ProducerValidationError:
    normalize = normalize_international if international else normalize_mainland
    seen: dict[str, int] = {}
    for index, phone in enumerate(items):
        normalized = normalize(phone) if isinstance(phone, str) else None
        if normalized is None:
            return _phone_error(phone, f"{field}[{index}]", international)
        first = seen.setdefault(normalized, index)
        if first != index:
            return fail(f"{field}[{index}]", f"duplicate of {field}[{first}]", phone)
    raise AssertionError("no invalid phone number found")


def validate_positive_int(value: object, field: str) -> int:
    if not is_int(value) or value <= 0:
        raise fail(field, "must be a positive integer", value)
    return value


def validate_choice(value: object, field: str, choices: Sequence[int]) -> int:
    if not is_int(value) or value not in choices:
        allowed = " or ".join(str(choice) for choice in choices)
        raise fail(field, f"must be {allowed}", value)
    return value


def validate_code(code: object, field: str = "code") -> str:
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise fail(field, "must be a string of 4-6 digits", code)
    return code


def validate_key(key: object, field: str = "idempotency_key") -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        rule = f"must be 1-{MAX_KEY_LENGTH} printable ASCII characters without spaces"
        raise fail(field, rule, key)
    return key


def _string_map(value: object, field: str) -> dict[str, str]:
    """A dict of non-empty str keys to str values, ints converted (see module docstring)."""
    if not isinstance(value, Mapping):
        raise fail(field, "must be a dict of strings", value)
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise fail(field, "keys must be non-empty strings", name)
        if isinstance(item, str):
            out[name] = item
        elif is_int(item):
            out[name] = str(item)
        else:
            raise fail(f"{field}[{name!r}]", "must be a string or an integer", item)
    return out


def validate_sms_vars(value: object, field: str = "vars") -> dict[str, str] | None:
    if value is None:
        return None
    out = _string_map(value, field)
    for name, item in out.items():
        if len(item) > MAX_SMS_VAR_LENGTH:
            raise fail(f"{field}[{name!r}]", f"must be at most {MAX_SMS_VAR_LENGTH} characters")
        if _LINK.search(item):
            raise fail(f"{field}[{name!r}]", "must not contain links (http://, https://, www.)")
    return out or None


def validate_tag(value: object, field: str = "tag") -> dict[str, str] | None:
    if value is None:
        return None
    out = _string_map(value, field)
    if len(compact_json(out)) > MAX_TAG_JSON_LENGTH:
        raise fail(field, f"must be at most {MAX_TAG_JSON_LENGTH} characters as JSON")
    return out or None


def validate_email(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise fail(field, "must be a string", value)
    address = value.strip()
    if len(address) > MAX_ADDRESS_LENGTH or not _EMAIL.fullmatch(address):
        rule = f"must be an e-mail address of at most {MAX_ADDRESS_LENGTH} characters"
        raise fail(field, rule, value)
    return address


def validate_address(value: object, field: str = "address") -> str:
    """The list's alias address, e.g. ``news@maillist.sendcloud.org``."""
    return validate_email(value, field)


def validate_emails(value: object, field: str) -> list[str]:
    """Distinct (case-insensitively) e-mail addresses, with no count limit: callers split."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise fail(field, "must be a list of e-mail addresses", value)
    items = list(value)
    if not items:
        raise fail(field, "must not be empty")
    seen: dict[str, int] = {}
    out: list[str] = []
    for index, item in enumerate(items):
        address = validate_email(item, f"{field}[{index}]")
        first = seen.setdefault(address.lower(), index)
        if first != index:
            raise fail(f"{field}[{index}]", f"duplicate of {field}[{first}]", item)
        out.append(address)
    return out


def _same_length(value: object, field: str, count: int, what: str) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise fail(field, f"must be a list of {what}", value)
    items = list(value)
    if len(items) != count:
        raise fail(field, f"must hold one entry per member ({count}), got {len(items)}")
    return items


def validate_member_names(value: object, count: int, field: str = "names") -> list[str] | None:
    if value is None:
        return None
    out = _same_length(value, field, count, "names")
    for index, name in enumerate(out):
        if not isinstance(name, str) or not name or ";" in name:
            raise fail(f"{field}[{index}]", "must be a non-empty string without ';'", name)
    return out


def validate_member_vars(
    value: object, count: int, field: str = "vars"
) -> list[dict[str, str]] | None:
    if value is None:
        return None
    items = _same_length(value, field, count, "dicts")
    out: list[dict[str, str]] = []
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        variables = _string_map(item, item_field)
        for name in variables:
            if name == "name":
                raise fail(item_field, "must not use the key 'name' (SendCloud ignores it)")
            if name.startswith("%") or name.endswith("%"):
                raise fail(item_field, "keys must not be wrapped in '%'", name)
        text = compact_json(variables)
        if len(text) > MAX_MEMBER_VARS_JSON_LENGTH:
            rule = f"must be at most {MAX_MEMBER_VARS_JSON_LENGTH} characters as JSON"
            raise fail(item_field, rule)
        if ";" in text:
            raise fail(item_field, "must not contain ';' (SendCloud separates members with it)")
        out.append(variables)
    return out


def validate_expiry(value: object, field: str = "expires_in") -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < MAX_EXPIRY_SECONDS
    ):
        raise fail(field, f"must be a number of seconds in (0, {MAX_EXPIRY_SECONDS})", value)
    return float(value)
