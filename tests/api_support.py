"""The HTTP API under test: ``api_app`` on a real RedisBroker and redis-server, through
Starlette's TestClient (one event loop for the whole test, as a server would have)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.testclient import TestClient

from producers import Producer, VerifySettings
from worker.settings import Settings
from worker.web.api.app import ApiMount, api_app, producer_for
from worker.web.api.keys import KeyStore, Scope
from worker.web.api.routing import ApiRoute

VERIFY_SECRET = "test-verify-secret-0123456789"
# No verification guardrail in the way unless a test sets one.
OPEN_VERIFY = VerifySettings(
    secret=VERIFY_SECRET, cooldown=0, phone_per_hour=1000, phone_per_day=1000,
    client_per_hour=1000, client_per_day=1000, range_per_hour=1000, range_per_day=1000,
    global_per_minute=100_000, approval_min_started=1_000_000, sign_id=1,
)  # fmt: skip


@dataclass
class Api:
    http: TestClient
    producer: Producer
    store: KeyStore
    redis: redis.Redis

    @property
    def routes(self) -> list[ApiRoute]:
        """The live route table of the mounted API."""
        [mount] = self.http.app.routes  # type: ignore[attr-defined]
        return list(mount.routes)

    def key(self, scope: Scope, name: str = "test") -> str:
        _, token = self.http.portal.call(self.store.create, name, scope)  # type: ignore[union-attr]
        return token

    def auth(self, scope: Scope) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(scope)}"}

    def queued(self, queue: str) -> list[dict[str, Any]]:
        """Messages waiting on a RedisBroker queue, in order, decoded."""
        ids = self.redis.lrange(f"dramatiq:{queue}", 0, -1)
        bodies = self.redis.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
        return [json.loads(body) for body in bodies if body is not None]


@pytest.fixture(name="api")
def api_fixture(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., Api]]:
    """``api(verify=OPEN_VERIFY)``: the API app with the producer ``sendcloud-jobs web`` makes
    (worker.web.api.app.producer_for), enqueueing on this test's Redis."""
    with ExitStack() as stack:

        def make(verify: VerifySettings = OPEN_VERIFY) -> Api:
            producer = stack.enter_context(producer_for(Settings(redis_url=redis_url)))
            producer.verifier(verify)
            client = aioredis.Redis.from_url(redis_url)
            # Mounted at /v1 as `sendcloud-jobs web` mounts it, so paths read as a caller's do.
            app = Starlette(routes=[ApiMount("/v1", api_app(producer, client))])
            http = stack.enter_context(TestClient(app, base_url="http://testserver/v1"))
            return Api(http, producer, KeyStore(client), redis_client)

        yield make
