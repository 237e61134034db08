"""SMS request signing: the hex digest of ``smsKey&k1=v1&k2=v2&smsKey``.

Parameters are sorted by key, ``smsKey`` and ``signature`` are left out, and values are joined
as they are, not URL-encoded. SendCloud's docs use MD5; its 2024 SDKs use SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

_EXCLUDED = frozenset({"smsKey", "signature"})


def signing_string(params: Mapping[str, object], sms_key: str) -> str:
    body = "&".join(
        f"{key}={params[key]}" for key in sorted(params) if key not in _EXCLUDED
    )
    return f"{sms_key}&{body}&{sms_key}"


def sign(params: Mapping[str, object], sms_key: str, method: str = "md5") -> str:
    data = signing_string(params, sms_key).encode("utf-8")
    if method == "md5":
        return hashlib.md5(data).hexdigest()
    if method == "sha256":
        return hashlib.sha256(data).hexdigest()
    raise ValueError(f"sign method must be md5 or sha256, got {method!r}")
