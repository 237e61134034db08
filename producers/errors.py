"""Errors a producer raises before anything is enqueued.

Every one is a ``ValueError`` that names the field and the rule it broke, so a web app can
turn it into a 400 answer without parsing text.
"""

from __future__ import annotations


class ProducerValidationError(ValueError):
    """Input that SendCloud would refuse; nothing was enqueued."""

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule}")


class IdempotencyConflict(ValueError):
    """The idempotency key was already used for a different payload."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.field = "idempotency_key"
        self.rule = "was already used with a different payload"
        super().__init__(f"idempotency_key {key!r} was already used with a different payload")


class SettingError(Exception):
    """A ``SENDCLOUD_*`` setting the producer needs is missing or malformed: a deployment's
    mistake, not the caller's input, so it is not a ``ValueError``."""

    def __init__(self, variable: str, rule: str) -> None:
        self.variable = variable
        self.rule = rule
        super().__init__(f"{variable}: {rule}")


#: Why a verification was refused, as ``VerificationRefused.rule``.
REFUSAL_RULES = {
    "cooldown": "a code was sent to this phone less than SENDCLOUD_VERIFY_COOLDOWN ago",
    "phone_hour": "this phone had SENDCLOUD_VERIFY_PHONE_PER_HOUR codes in the last hour",
    "phone_day": "this phone had SENDCLOUD_VERIFY_PHONE_PER_DAY codes in the last 24 hours",
    "client_hour": "this client_id had SENDCLOUD_VERIFY_CLIENT_PER_HOUR codes in the last hour",
    "client_day": "this client_id had SENDCLOUD_VERIFY_CLIENT_PER_DAY codes in the last 24 hours",
    "range_hour": "this number range had SENDCLOUD_VERIFY_RANGE_PER_HOUR codes in the last hour",
    "range_day": "this number range had SENDCLOUD_VERIFY_RANGE_PER_DAY codes in the last 24 hours",
    "breaker": "verifications are paused: too many sends a minute, or too few approved",
    "locked": "too many wrong codes: this phone's verification is locked until it expires",
}


class VerificationRefused(Exception):
    """A guardrail refused a verification before anything was enqueued or paid for.

    ``rule`` names the guardrail (a key of ``REFUSAL_RULES``); ``retry_after`` is how many
    seconds until the same request could pass it.
    """

    def __init__(self, rule: str, retry_after: float) -> None:
        self.rule = rule
        self.field = "phone" if rule in ("cooldown", "phone_hour", "phone_day", "locked") else rule
        self.retry_after = retry_after
        reason = REFUSAL_RULES.get(rule, rule)
        super().__init__(
            f"verification refused ({rule}): {reason}; retry after {retry_after:.0f} s"
        )
