"""The worker's side of verifications (:mod:`producers.verification`).

A verification's send job carries its code sealed; :func:`unsealed` opens it in memory just
before the call, with ``SENDCLOUD_VERIFY_SECRET``, so the code never rests in Redis in clear.
:func:`count_verification_sent` keeps the ``sent`` counter beside the producers' ``started``,
``approved`` and ``refused`` ones, which the metrics exposition reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import structlog

from producers.verification import COUNTS_KEY, unseal
from worker.settings import ConfigurationError, Settings

Payload = Mapping[str, Any]  # as worker.jobs.runner's, which imports this module

log = structlog.get_logger(__name__)


def unsealed(payload: Payload, settings: Settings) -> Payload:
    """``payload`` with its ``code``: as given by the app, or unsealed from a verification's."""
    sealed = payload.get("sealed_code")
    if sealed is None:
        return payload
    if not settings.verify_secret:
        # Raised before the call: the job is retried, and nothing can have gone out.
        raise ConfigurationError(
            "SENDCLOUD_VERIFY_SECRET", "is required to send verification codes (the same as "
            "the producers')"
        )
    code = unseal(settings.verify_secret.encode(), str(payload["verification_id"]), str(sealed))
    return {**payload, "code": code}


def count_verification_sent(client: redis.Redis, kind: str) -> None:
    channel = "voice" if kind == "voice_code" else "sms"
    try:
        client.hincrby(COUNTS_KEY, f"{channel}:sent", 1)
    except redis.RedisError as exc:  # a metric; the job's record is already written
        log.warning("verification.count_failed", error=type(exc).__name__)
