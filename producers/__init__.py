"""Enqueue SendCloud jobs from a web app: validated, idempotent, and light on dependencies.

Importing this package needs only dramatiq and redis; it never imports the worker (httpx,
tenacity). The module-level functions use a default :class:`Producer`, created on first use
from ``$REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), or the master Redis Sentinel names
(``$SENDCLOUD_REDIS_SENTINELS``, :mod:`producers.redis_client`), with its own RedisBroker; build
a ``Producer(broker=...)`` to enqueue through an app's own broker instead.

Each function returns the job's idempotency key (generated as ``<kind>-<hex>`` when not given);
see :mod:`producers.producer` for repeat calls and for member calls split at 1000 members.

Imports nothing of ``worker`` or ``simulator`` (``tests/test_architecture.py``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from producers.campaign import (
    CampaignBusy,
    CampaignConflict,
    CampaignDiscarded,
    CampaignPreview,
    CampaignStart,
    NoValidNumber,
    preview_campaign,
)
from producers.campaign_csv import campaign_recipients, campaign_report
from producers.campaign_index import list_campaigns
from producers.campaign_report import (
    CampaignDiscard,
    CampaignNotDiscardable,
    CampaignNotFinished,
    CampaignNotFound,
    CampaignStatus,
    campaign_status,
    cancel_campaign,
    discard_campaign,
    purge_campaign,
)
from producers.contract import (
    EMAIL_STATUS_STREAM,
    MEMBERS_RESULTS_STREAM,
    SMS_DELIVERY_STREAM,
    SMS_RESULTS_STREAM,
)
from producers.errors import (
    IdempotencyConflict,
    ProducerValidationError,
    SettingError,
    VerificationRefused,
)
from producers.idempotency import IdempotencyStore, Reservation
from producers.producer import (
    Producer,
    default_producer,
    set_default_producer,
    start_campaign,
)
from producers.replication import NotReplicated
from producers.results import ResultReader, ResultRecord, StreamNotFound
from producers.verification import CheckResult, Verification, Verifier, VerifySettings

__all__ = [
    "EMAIL_STATUS_STREAM",
    "MEMBERS_RESULTS_STREAM",
    "SMS_DELIVERY_STREAM",
    "SMS_RESULTS_STREAM",
    "CampaignBusy",
    "CampaignConflict",
    "CampaignDiscard",
    "CampaignDiscarded",
    "CampaignNotDiscardable",
    "CampaignNotFinished",
    "CampaignNotFound",
    "CampaignPreview",
    "CampaignStart",
    "CampaignStatus",
    "CheckResult",
    "IdempotencyConflict",
    "IdempotencyStore",
    "NoValidNumber",
    "NotReplicated",
    "Producer",
    "ProducerValidationError",
    "Reservation",
    "ResultReader",
    "ResultRecord",
    "SettingError",
    "StreamNotFound",
    "Verification",
    "VerificationRefused",
    "Verifier",
    "VerifySettings",
    "add_members",
    "campaign_recipients",
    "campaign_report",
    "campaign_status",
    "cancel_campaign",
    "cancel_verification",
    "check_verification",
    "default_producer",
    "delete_members",
    "discard_campaign",
    "get_result",
    "list_campaigns",
    "preview_campaign",
    "purge_campaign",
    "send_code",
    "send_sms",
    "send_voice_code",
    "set_default_producer",
    "start_campaign",
    "start_verification",
    "update_members",
]


P = ParamSpec("P")
R = TypeVar("R")


def _on_default(method: Callable[Concatenate[Producer, P], R]) -> Callable[P, R]:
    """``method`` called on the default producer, with its signature (minus self) and docs."""
    name = method.__name__

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound: Callable[P, R] = getattr(default_producer(), name)
        return bound(*args, **kwargs)

    parameters = list(inspect.signature(method).parameters.values())[1:]
    call.__signature__ = inspect.signature(method).replace(parameters=parameters)  # type: ignore[attr-defined]
    return call


send_sms = _on_default(Producer.send_sms)
send_code = _on_default(Producer.send_code)
send_voice_code = _on_default(Producer.send_voice_code)
add_members = _on_default(Producer.add_members)
update_members = _on_default(Producer.update_members)
delete_members = _on_default(Producer.delete_members)
get_result = _on_default(Producer.get_result)
start_verification = _on_default(Producer.start_verification)
check_verification = _on_default(Producer.check_verification)
cancel_verification = _on_default(Producer.cancel_verification)
