"""``POST /hooks/sms`` and ``POST /hooks/mail``: verify a SendCloud hook, append it to its inbox.

Checks run in this order, and the first that fails answers:

1. the path's app key is set (``SENDCLOUD_SMS_HOOK_KEY``, ``SENDCLOUD_MAIL_HOOK_KEY``), else 404;
2. the body is at most ``SENDCLOUD_HOOK_MAX_BYTES``, counted as it streams in, else 413;
3. it parses (form or JSON) and names its ``event``, else 400;
4. ``signature`` = hex HMAC-SHA256(app key, timestamp + token), else 403;
5. ``timestamp`` (ms) is within ``SENDCLOUD_HOOK_WINDOW`` of Redis's clock, else 403;
6. the token is new: the hook is appended (200); a token seen before stores nothing (200).

Redis out of reach answers 503 with nothing stored, so SendCloud posts again later. A GET
(SendCloud's probe of a new URL) answers 200 and stores nothing. Each post logs one line: the
path, the event name and the outcome with its reason; never the body, token, signature or key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from worker.settings import Settings
from worker.web.inbox import Channel, Hook, encode_event
from worker.web.parsing import BadHook, parse_hook
from worker.web.store import HookStore

log = structlog.get_logger(__name__)

#: Longest event name put on a log line (the name is the sender's input).
EVENT_NAME_CHARS = 32


@dataclass(frozen=True)
class HookPath:
    channel: Channel
    key: str
    #: The setting that holds ``key``, named when the path is refused for want of it.
    variable: str


class Refused(Exception):
    """A hook answered with ``status``; ``reason`` is for the log, never holding a secret."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) once more than ``limit`` bytes arrive, whatever the headers say."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body: over {limit} bytes (Content-Length)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def signature_of(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def authenticate(key: str, hook: Hook) -> tuple[str, int]:
    """The hook's ``(token, timestamp_ms)`` once its signature is the app key's; else 403."""
    token, timestamp, signature = (hook.get(name) for name in ("token", "timestamp", "signature"))
    if not (isinstance(token, str) and isinstance(timestamp, str)
            and isinstance(signature, str)) or not (token and timestamp and signature):
        raise Refused(403, "signature: token, timestamp and signature are required")
    expected = signature_of(key, timestamp, token).encode()
    if not hmac.compare_digest(expected, signature.strip().lower().encode()):
        raise Refused(403, "signature: does not match the app key")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        raise Refused(403, "timestamp: must be milliseconds since the epoch")
    return token, int(timestamp)


def _event_name(hook: Hook | None) -> str | None:
    event = None if hook is None else hook.get("event")
    return event[:EVENT_NAME_CHARS] if isinstance(event, str) else None


def endpoint(path: HookPath, store: HookStore, max_bytes: int
             ) -> Callable[[Request], Awaitable[Response]]:
    async def receive(request: Request) -> Response:
        if not path.key:
            log.warning("hook", path=request.url.path, outcome="refused", status=404,
                        reason=f"{path.variable} is not set")
            return PlainTextResponse("not found", status_code=404)
        if request.method != "POST":  # SendCloud's probe of a new URL
            log.info("hook_probe", path=request.url.path, method=request.method)
            return PlainTextResponse("ok")
        hook: Hook | None = None
        try:
            body = await read_body(request, max_bytes)
            try:
                hook = parse_hook(body, request.headers.get("content-type", ""))
            except BadHook as exc:
                raise Refused(400, str(exc)) from None
            token, timestamp_ms = authenticate(path.key, hook)
            appended = await store.append(path.channel, token, timestamp_ms, encode_event(hook))
            if appended.outcome == "outside_window":
                skew = (timestamp_ms - appended.now_ms) / 1000
                raise Refused(403, f"timestamp: {skew:+.0f} s from Redis's clock, outside "
                                   f"SENDCLOUD_HOOK_WINDOW")  # fmt: skip
        except Refused as refused:
            log.warning("hook", path=request.url.path, hook_event=_event_name(hook),
                        outcome="refused", status=refused.status, reason=refused.reason)
            return PlainTextResponse(refused.reason, status_code=refused.status)
        except RedisError as exc:
            log.error("hook", path=request.url.path, hook_event=_event_name(hook),
                      outcome="refused", status=503,
                      reason=f"Redis unreachable: {type(exc).__name__}: {exc}")
            return PlainTextResponse("Redis unreachable; retry later", status_code=503)
        log.info("hook", path=request.url.path, hook_event=_event_name(hook),
                 outcome=appended.outcome, status=200)
        return PlainTextResponse("ok")

    return receive


def hooks_app(settings: Settings, store: HookStore) -> Starlette:
    """The hook paths, to be mounted at ``/hooks``."""
    paths = (HookPath("sms", settings.sms_hook_key, "SENDCLOUD_SMS_HOOK_KEY"),
             HookPath("mail", settings.mail_hook_key, "SENDCLOUD_MAIL_HOOK_KEY"))
    return Starlette(routes=[
        Route(f"/{p.channel}", endpoint(p, store, settings.hook_max_bytes),
              methods=["GET", "POST"], name=f"hook_{p.channel}")
        for p in paths
    ])
