"""``api_app(...)``: the Starlette app of the API, mounted at ``/v1`` by ``sendcloud-jobs web``.

It is built from the settings' producer (``producer_for``: the deployment's broker, Redis and
idempotency TTL, as the CLI's) and the web process's asyncio Redis client, which holds the
API keys. Key management is here too: ``GET``/``POST /v1/keys`` and ``DELETE /v1/keys/{id}``,
scope ``admin``; a new key is in the creation's answer and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from producers import Producer
from producers.brokers import BROKER_NAMESPACE, rabbitmq_broker
from worker.connections import redis_client
from worker.settings import Settings
from worker.web.api.campaigns import campaign_routes
from worker.web.api.keys import KeyStore
from worker.web.api.openapi import openapi_document
from worker.web.api.routing import (
    ApiError,
    ApiRoute,
    error_response,
    json_object,
    no_idempotency_key,
)
from worker.web.api.sends import send_routes

#: A producer call's Redis commands give up after this (one retry on a fresh connection), so a
#: Redis that stops answering costs a request a 503, not a thread held for good.
PRODUCER_REDIS_TIMEOUT = 5.0


@contextmanager
def producer_for(settings: Settings) -> Iterator[Producer]:
    """The producer the API enqueues with: the deployment's broker (RabbitMQ with
    ``SENDCLOUD_BROKER_URL``, else Redis), idempotency TTL and code expiry, as the CLI's; its
    Redis client is made by worker.connections, with a timeout. Closed on leaving."""
    client = redis_client(settings, timeout=PRODUCER_REDIS_TIMEOUT, retries=1)
    broker = (rabbitmq_broker(settings.broker_url) if settings.broker_url
              else RedisBroker(client=client, namespace=BROKER_NAMESPACE))
    try:
        yield Producer(broker, redis=client, idempotency_ttl=settings.idempotency_ttl,
                       code_expiry=settings.code_expiry)
    finally:
        broker.close()
        client.close()


def key_routes(keys: KeyStore) -> list[ApiRoute]:
    async def list_keys(request: Request) -> Response:
        return JSONResponse({"keys": [key.as_json() for key in await keys.list()]})

    async def create_key(request: Request) -> Response:
        no_idempotency_key(request, "each call makes a new key; revoke the ones not used")
        body = await json_object(request, ("name", "scope"), ("name", "scope"))
        key, token = await keys.create(body["name"], body["scope"])
        return JSONResponse({**key.as_json(), "key": token}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        if not await keys.revoke(request.path_params["key_id"]):
            raise ApiError(404, "key_id", "names no API key (unknown, or revoked already)")
        return Response(status_code=204)

    return [
        ApiRoute("/keys", list_keys, methods=["GET"], scope="admin", keys=keys),
        ApiRoute("/keys", create_key, methods=["POST"], scope="admin", keys=keys),
        ApiRoute("/keys/{key_id}", revoke_key, methods=["DELETE"], scope="admin", keys=keys),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no such path, or method) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    rule = "no such API path" if exc.status_code == 404 else str(exc.detail)
    return error_response(ApiError(exc.status_code, None, rule, headers=dict(exc.headers or {})))


def api_app(producer: Producer, redis: aioredis.Redis) -> Starlette:
    """The API's routes, enqueueing through ``producer``, keys held in ``redis``."""
    keys = KeyStore(redis)
    routes = [*send_routes(producer, keys), *campaign_routes(producer, keys), *key_routes(keys)]

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    routes.append(ApiRoute("/openapi.json", openapi, methods=["GET"], scope=None, keys=keys))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class ApiMount(Mount):
    """``Mount("/v1", api)`` whose pattern also takes a path holding a newline (``%0A``):
    Starlette's ``.*`` stops at one, and such a path would get the outer app's plain-text 404
    instead of the API's JSON error."""

    def __init__(self, path: str, app: Starlette) -> None:
        super().__init__(path, app=app, name="api")
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)
