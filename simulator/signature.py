"""The smsapi request check: who is calling (smsUser), the signature, and the timestamp.

Written apart from the client's signing code on purpose, so that the simulator is an
independent check of it. The signed string is ``smsKey&k1=v1&k2=v2&smsKey`` over the decoded
form values, parameters sorted by name, ``smsKey`` and ``signature`` left out. A 32-digit hex
signature is checked as MD5 (the docs), a 64-digit one as SHA-256 (SendCloud's 2024 SDKs);
letter case does not matter.

Order of the checks: 472 (smsUser empty), 471 (smsUser unknown), 421 (signature missing),
422 (signature wrong), 461 (``timestamp`` present and more than 6 s from server time, or not
a whole number of milliseconds). An empty ``timestamp`` counts as absent.
"""

from __future__ import annotations

import hashlib
import hmac

from simulator.protocol import ApiError, Params

_UNSIGNED = ("smsKey", "signature")
_DIGESTS = {32: hashlib.md5, 64: hashlib.sha256}
TIMESTAMP_TOLERANCE_MS = 6000


def signed_text(params: Params, sms_key: str) -> str:
    pairs = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in _UNSIGNED)
    return f"{sms_key}&{pairs}&{sms_key}"


def signature_matches(params: Params, sms_key: str, signature: str) -> bool:
    digest = _DIGESTS.get(len(signature))
    if digest is None:
        return False
    expected = digest(signed_text(params, sms_key).encode("utf-8")).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


def check_sms_request(params: Params, *, sms_user: str, sms_key: str, server_ms: int) -> str:
    """Raise the documented error for a request SendCloud would refuse; return the smsUser."""
    user = params.get("smsUser", "").strip()
    if not user:
        raise ApiError(472)
    if not hmac.compare_digest(user.encode("utf-8"), sms_user.encode("utf-8")):
        raise ApiError(471)
    signature = params.get("signature", "").strip()
    if not signature:
        raise ApiError(421)
    if not signature_matches(params, sms_key, signature):
        raise ApiError(422)
    raw = params.get("timestamp", "").strip()
    if raw:
        try:
            stamp = int(raw)
        except ValueError:
            raise ApiError(461) from None
        if abs(stamp - server_ms) > TIMESTAMP_TOLERANCE_MS:
            raise ApiError(461)
    return user
