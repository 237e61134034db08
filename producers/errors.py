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
