"""What every API route shares: the key check, JSON bodies, and errors as JSON.

Every answer that is not a success reads ``{"error": {"field", "rule", "message"}}``. The
producers' exceptions keep their status: bad input 422 (the field and the rule), an
idempotency key or campaign id used for other input 409, an unknown campaign 404, a refused
verification 429 with ``Retry-After``. Redis out of reach is a 503. An error never repeats the
value it refuses, so a code or key sent by mistake is not echoed back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers import (
    CampaignBusy,
    CampaignConflict,
    CampaignDiscarded,
    CampaignNotFound,
    IdempotencyConflict,
    NotReplicated,
    ProducerValidationError,
    SettingError,
    VerificationRefused,
)
from worker.web.api.keys import ApiKey, KeyStore, Scope

log = structlog.get_logger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]

MAX_JSON_BYTES = 1 << 20  # a 2000-number SMS with its variables is far below this


class ApiError(Exception):
    def __init__(self, status: int, field: str | None, rule: str, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.field = field
        self.rule = rule
        self.message = message or (f"{field}: {rule}" if field else rule)
        self.headers = headers
        super().__init__(self.message)


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": {"field": exc.field, "rule": exc.rule, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def as_api_error(exc: Exception) -> ApiError | None:
    """The producers' exception ``exc`` as an answer, or None for one that is a bug."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, IdempotencyConflict | CampaignConflict):
        return ApiError(409, exc.field, exc.rule, str(exc))
    if isinstance(exc, ProducerValidationError):
        return ApiError(422, exc.field, exc.rule, str(exc))
    if isinstance(exc, CampaignNotFound):
        return ApiError(404, exc.field, exc.rule, str(exc))
    if isinstance(exc, CampaignBusy):
        return ApiError(409, "campaign_id", "is being enqueued by another request", str(exc))
    if isinstance(exc, CampaignDiscarded):
        return ApiError(409, "campaign_id", "was discarded while this start was running",
                        str(exc))
    if isinstance(exc, VerificationRefused):
        retry = max(1, round(exc.retry_after))
        return ApiError(429, exc.field, exc.rule, str(exc), headers={"Retry-After": str(retry)})
    if isinstance(exc, SettingError):
        # The deployment's mistake, not the caller's: named, so the operator can fix it.
        return ApiError(503, None, "the server is not configured for this call", str(exc))
    if isinstance(exc, NotReplicated):
        # Taken back, nothing enqueued: the same call again is safe (and idempotent).
        return ApiError(503, None, "not replicated in time; retry", str(exc),
                        headers={"Retry-After": "1"})
    if isinstance(exc, RedisError):
        return ApiError(503, None, "Redis is unreachable; try again", "Redis is unreachable")
    return None


class ApiRoute(Route):
    """A route that needs a key granting ``scope`` (any valid key when None)."""

    def __init__(self, path: str, endpoint: Endpoint, *, methods: Collection[str],
                 scope: Scope | None, keys: KeyStore) -> None:
        self.required_scope = scope

        async def guarded(request: Request) -> Response:
            try:
                request.state.api_key = await authenticate(request, keys, scope)
                return await endpoint(request)
            except Exception as exc:
                error = as_api_error(exc)
                if error is None:
                    raise
                if error.status >= 500:
                    log.warning("api_unavailable", path=request.url.path, reason=error.message)
                return error_response(error)

        super().__init__(path, guarded, methods=list(methods), name=endpoint.__name__)


def unauthorized(rule: str) -> ApiError:
    return ApiError(401, "Authorization", rule, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, keys: KeyStore, scope: Scope | None) -> ApiKey:
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise unauthorized("must be 'Bearer <API key>'")
    key = await keys.verify(token.strip())
    if key is None:
        raise unauthorized("is not a valid API key (unknown or revoked)")
    if scope is not None and not key.grants(scope):
        raise ApiError(403, "Authorization",
                       f"this key's scope is {key.scope!r}; this call needs {scope!r} or 'admin'")
    return key


async def json_object(request: Request, allowed: Collection[str],
                      required: Collection[str] = ()) -> dict[str, Any]:
    """The request's JSON object, holding only ``allowed`` fields and every ``required`` one."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # counted as it arrives: a huge body is not read
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise ApiError(413, "body", f"must be at most {MAX_JSON_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "body", "must be a JSON object")
    for name in body:
        if name not in allowed:
            raise ApiError(422, name, f"is not a field of this call (fields: {', '.join(allowed)})")
    for name in required:
        if body.get(name) is None:
            raise ApiError(422, name, "is required")
    return body


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: checked by the producers as their ``idempotency_key``."""
    return request.headers.get("idempotency-key")


def no_idempotency_key(request: Request, instead: str) -> None:
    """Calls that are idempotent by their own id refuse the header rather than ignore it."""
    if "idempotency-key" in request.headers:
        raise ApiError(422, "Idempotency-Key", f"is not taken by this call: {instead}")


async def blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a producers call (blocking Redis I/O) in a thread, so the event loop, which the hook
    receiver shares, never waits on it."""
    return await run_in_threadpool(function, *args, **kwargs)
