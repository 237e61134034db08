"""``POST /hooks/sms`` and ``POST /hooks/mail``: verify a SendCloud hook, append it to its inbox.

Checks run in this order, and the first that fails answers:

1. the path's app key is set (``SENDCLOUD_SMS_HOOK_KEY``, ``SENDCLOUD_MAIL_HOOK_KEY``), else 404;
2. the body is at most ``SENDCLOUD_HOOK_MAX_BYTES``, counted as it streams in, else 413;
3. it parses (form or JSON) and names its ``event``, else 400;
4. ``signature`` = hex HMAC-SHA256(app key, timestamp + token), else 403;
5. ``timestamp`` (ms) is within ``SENDCLOUD_HOOK_WINDOW`` of Redis's clock, else 403;
6. the token is new: the hook is appended (200); a token seen before stores nothing (200).

Redis out of reach, or refusing the append (a wrong type at the inbox key, out of memory),
answers 503, so SendCloud posts again later: a hook stored before its answer was lost is then
answered ``duplicate``, one that was not is stored then. A GET
(SendCloud's probe of a new URL) answers 200 and stores nothing. Each post logs one line: the
path, the event name and the outcome with its reason; never the body, token, signature or key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from worker.settings import Settings
from worker.web.inbox import Channel, Hook, encode_event
from worker.web.parsing import BadHook, parse_hook
from worker.web.store import HookStore

#: The methods a hook path answers: SendCloud's POST, and GET (HEAD) probes of a new URL.
METHODS = ("GET", "HEAD", "POST")
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


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, refused (413) once more than ``limit`` bytes arrive, whatever the headers say."""
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body: over {limit} bytes (Content-Length)")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "body: the sender went away before its end")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body: over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str:
    """The first ``name`` header (lowercase), or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


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


class HookEndpoint:
    """One hook path, as a plain ASGI app: the request is read from ``receive`` as it comes,
    with none of a framework's request objects (a hook needs its body and two headers)."""

    def __init__(self, path: HookPath, store: HookStore, max_bytes: int, log: Any) -> None:
        self.path = path
        self.store = store
        self.max_bytes = max_bytes
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in METHODS:
            status, text = await self.answer(scope, receive)
            extra = []
        else:  # as Starlette's router answers a method its route does not take
            status, text = 405, "Method Not Allowed"
            extra = [(b"allow", ", ".join(METHODS).encode())]
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(body)).encode()), *extra]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        where = scope["path"]
        if not self.path.key:
            self.log.warning("hook", path=where, outcome="refused", status=404,
                             reason=f"{self.path.variable} is not set")
            return 404, "not found"
        if scope["method"] != "POST":  # SendCloud's probe of a new URL
            self.log.info("hook_probe", path=where, method=scope["method"])
            return 200, "ok"
        hook: Hook | None = None
        try:
            body = await read_body(scope, receive, self.max_bytes)
            try:
                hook = parse_hook(body, header(scope, b"content-type"))
            except BadHook as exc:
                raise Refused(400, str(exc)) from None
            token, timestamp_ms = authenticate(self.path.key, hook)
            appended = await self.store.append(self.path.channel, token, timestamp_ms,
                                               encode_event(hook))  # fmt: skip
            if appended.outcome == "outside_window":
                skew = (timestamp_ms - appended.now_ms) / 1000
                raise Refused(403, f"timestamp: {skew:+.0f} s from Redis's clock, outside "
                                   f"SENDCLOUD_HOOK_WINDOW")  # fmt: skip
        except Refused as refused:
            self.log.warning("hook", path=where, hook_event=_event_name(hook),
                             outcome="refused", status=refused.status, reason=refused.reason)
            return refused.status, refused.reason
        except ResponseError as exc:  # this hook's append, refused by Redis
            self.log.error("hook", path=where, hook_event=_event_name(hook), outcome="refused",
                           status=503, reason=f"Redis refused the append: {exc}")
            return 503, "Redis refused the hook; retry later"
        except RedisError as exc:
            self.log.error("hook", path=where, hook_event=_event_name(hook), outcome="refused",
                           status=503, reason=f"Redis unreachable: {type(exc).__name__}: {exc}")
            return 503, "Redis unreachable; retry later"
        self.log.info("hook", path=where, hook_event=_event_name(hook), outcome=appended.outcome,
                      status=200)
        return 200, "ok"


def hook_endpoints(settings: Settings, store: HookStore) -> dict[str, HookEndpoint]:
    """The hook paths' endpoints by path below ``/hooks`` (``/sms``, ``/mail``)."""
    paths = (HookPath("sms", settings.sms_hook_key, "SENDCLOUD_SMS_HOOK_KEY"),
             HookPath("mail", settings.mail_hook_key, "SENDCLOUD_MAIL_HOOK_KEY"))
    # Bound now, to the logging configured before the app is made (configure logging first,
    # as the CLI does): structlog's lazy proxy would build a new logger for every line.
    log = structlog.get_logger(__name__).bind()
    return {f"/{p.channel}": HookEndpoint(p, store, settings.hook_max_bytes, log) for p in paths}


def hooks_app(endpoints: Mapping[str, HookEndpoint]) -> Router:
    """The hook paths, to be mounted at ``/hooks``."""
    return Router(routes=[
        Route(path, endpoint, methods=list(METHODS), name=f"hook_{endpoint.path.channel}")
        for path, endpoint in endpoints.items()
    ])
