"""The errors a SendCloud call can raise, and the configuration error kept apart from them.

Exception tree::

    SendCloudError                  every failure of a call: .code, .message, .endpoint
    ├── TransientError              safe to retry soon (tenacity, inside the call)
    │   ├── TransportError          no reply came at all
    │   │   ├── NetworkError        connect/read failures, resets, a reply dropped mid-way
    │   │   └── RequestTimeout      a timeout fired before the reply was complete
    │   ├── ServerError             HTTP 5xx, statusCode 501, or "failed to ..." with no cause
    │   └── ThrottledError          50000 / 50001, SendCloud's frequency limits
    ├── DeferredError               retry later, after .retry_after seconds (Dramatiq delay)
    │   ├── PhoneMinuteLimitError   496: too many messages to one number within a minute
    │   └── PhoneDailyLimitError    498: too many messages to one number in a day
    ├── QuotaError                  499: the account's balance is exhausted
    ├── AuthError                   credentials, signature or permission (40005, 421/422, 471-474)
    │   └── ClockSkewError          461: timestamp outside the server's window after a re-sync
    ├── InvalidRequestError         the request itself is wrong; retrying cannot help
    │   └── RecipientsRejectedError 312: every recipient was refused (.items lists why)
    ├── ConflictError               the target is in a state that forbids the change
    │   └── DuplicateRequestError   400 / 40000: SendCloud already took this sendRequestId
    └── UndeliverableError          SMSHook codes: the carrier or SendCloud refused one number

    worker.settings.ConfigurationError  not a SendCloudError: a setting is missing or wrong

Every error except TransportError carries the statusCode SendCloud replied with. TransportError
has ``code=None``: no reply came, so whether the request took effect is unknown, which is why
SMS sends always carry a stable ``sendRequestId``.

ConfigurationError lives outside the tree on purpose, in ``worker.settings``: retry and failure
handlers catch SendCloudError, and a missing credential must stop a worker rather than be
retried or swallowed.

No error ever holds a secret: messages are built from SendCloud's reply text and the endpoint
path only, never from the request's parameters.
"""

from __future__ import annotations

from typing import Any


class SendCloudError(Exception):
    """Base of every failed SendCloud call."""

    #: Whether the worker may retry this soon, inside the same job attempt.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        endpoint: str = "",
        http_status: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.endpoint = endpoint
        self.http_status = http_status
        self.info: dict[str, Any] = info or {}
        super().__init__(message)

    def __str__(self) -> str:
        code = "no reply" if self.code is None else f"statusCode {self.code}"
        where = f" from {self.endpoint}" if self.endpoint else ""
        return f"{self.message} ({code}{where})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"endpoint={self.endpoint!r})"
        )


class TransientError(SendCloudError):
    transient = True


class TransportError(TransientError):
    """No reply came; the request may or may not have taken effect."""


class NetworkError(TransportError):
    pass


class RequestTimeout(TransportError):
    pass


class ServerError(TransientError):
    pass


class ThrottledError(TransientError):
    pass


class DeferredError(SendCloudError):
    """SendCloud asks us to come back later; ``retry_after`` is the minimum wait in seconds."""

    retry_after: float = 60.0


class PhoneMinuteLimitError(DeferredError):
    retry_after = 60.0


class PhoneDailyLimitError(DeferredError):
    retry_after = 24 * 3600.0


class QuotaError(SendCloudError):
    pass


class AuthError(SendCloudError):
    pass


class ClockSkewError(AuthError):
    pass


class InvalidRequestError(SendCloudError):
    pass


class RecipientsRejectedError(InvalidRequestError):
    """312: no recipient was accepted. ``items`` holds SendCloud's reason for each phone."""

    @property
    def items(self) -> list[dict[str, Any]]:
        items = self.info.get("items") or []
        return [i for i in items if isinstance(i, dict)]


class ConflictError(SendCloudError):
    pass


class DuplicateRequestError(ConflictError):
    """SendCloud already processed this sendRequestId: the earlier request took effect."""


class UndeliverableError(SendCloudError):
    pass
