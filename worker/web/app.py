"""``create_app(settings)``: the ASGI app of ``sendcloud-jobs web``, built of small mounted apps.

Today: ``/hooks`` (the SendCloud hook paths, worker.web.hooks) and ``GET /healthz``. More apps
(an operator dashboard, an API) are mounted beside them through ``mounts``, sharing the server,
the settings and the Redis client.

The hook paths are the hot ones (SendCloud posts one event per request, hundreds a second), and
their endpoints are plain ASGI apps that answer every error themselves: :class:`WebApp` hands
``/hooks/sms`` and ``/hooks/mail`` to them directly, ahead of Starlette's middleware and
routers, which cost a hook a fifth of its CPU. Every other path, ``/hooks/sms/`` included,
goes through Starlette (where the same endpoints are mounted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.connections import async_redis_client
from worker.settings import Settings
from worker.web.hooks import hook_endpoints, hooks_app
from worker.web.store import HookStore

#: SendCloud waits 3 s for an answer: a Redis that does not answer within 1 s (one retry on a
#: fresh connection, for a connection a Redis restart closed) gets a 503 in time, not a hang.
REDIS_TIMEOUT = 1.0


def redis_client(settings: Settings) -> aioredis.Redis:
    return async_redis_client(settings, timeout=REDIS_TIMEOUT, retries=1)


def health_route(client: aioredis.Redis) -> Route:
    async def healthz(request: Request) -> JSONResponse:
        try:
            await client.ping()
        except RedisError as exc:
            return JSONResponse({"redis": f"unreachable: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"redis": "ok"})

    return Route("/healthz", healthz, methods=["GET"], name="healthz")


HOOKS_PREFIX = "/hooks"


class WebApp(Starlette):
    """Starlette, with ``direct`` paths (exact, after ``root_path``) served by their own ASGI
    app without Starlette's middleware and routing."""

    def __init__(self, *, direct: Mapping[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct = dict(direct)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Middleware added to the app (add_middleware) must see every request: none skipped.
        if scope["type"] == "http" and not self.user_middleware:
            endpoint = self.direct.get(_route_path(scope))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path as Starlette's router matches it: without a ``root_path`` it starts with."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


def create_app(settings: Settings, *, redis: aioredis.Redis | None = None,
               mounts: Sequence[BaseRoute] = ()) -> WebApp:
    """The app: ``/hooks`` and ``/healthz``, plus ``mounts`` (e.g. ``Mount("/v1", api)``).

    ``redis``: a client of the caller's, left open; without one, the app makes its own from
    ``REDIS_URL`` and closes it when the server stops. Configure logging
    (``worker.logs.configure_logging``) first: the hook paths' log lines keep the
    configuration of the moment the app is made.
    """
    client = redis if redis is not None else redis_client(settings)
    store = HookStore(client, settings.hook_window)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if redis is None:
            await client.aclose()

    endpoints = hook_endpoints(settings, store)
    routes: list[BaseRoute] = [
        health_route(client),
        Mount(HOOKS_PREFIX, app=hooks_app(endpoints), name="hooks"),
        *mounts,
    ]
    direct = {HOOKS_PREFIX + path: endpoint for path, endpoint in endpoints.items()}
    return WebApp(direct=direct, routes=routes, lifespan=lifespan)
