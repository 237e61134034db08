"""``create_app(settings)``: the ASGI app of ``sendcloud-jobs web``, built of small mounted apps.

Today: ``/hooks`` (the SendCloud hook paths, worker.web.hooks) and ``GET /healthz``. More apps
(an operator dashboard, an API) are mounted beside them through ``mounts``, sharing the server,
the settings and the Redis client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from worker.connections import async_redis_client
from worker.settings import Settings
from worker.web.hooks import hooks_app
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


def create_app(settings: Settings, *, redis: aioredis.Redis | None = None,
               mounts: Sequence[BaseRoute] = ()) -> Starlette:
    """The app: ``/hooks`` and ``/healthz``, plus ``mounts`` (e.g. ``Mount("/v1", api)``).

    ``redis``: a client of the caller's, left open; without one, the app makes its own from
    ``REDIS_URL`` and closes it when the server stops.
    """
    client = redis if redis is not None else redis_client(settings)
    store = HookStore(client, settings.hook_window)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if redis is None:
            await client.aclose()

    routes: list[BaseRoute] = [
        health_route(client),
        Mount("/hooks", app=hooks_app(settings, store), name="hooks"),
        *mounts,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
