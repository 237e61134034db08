from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import structlog

from tests.rabbitmq_server import RabbitVhost, create_vhost, require_rabbitmq
from tests.redis_server import RedisServer, start_redis_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis_server()
    if server is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed; CI requires a real Redis")
        pytest.skip("redis-server is not installed")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A Redis URL whose database is empty at the start of the test and emptied after it.

    FLUSHDB is safe here: the server is this test session's own throwaway instance.
    """
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[Callable[[int], str]]:
    """``redis_db(n)``: the URL of database ``n`` on this session's throwaway server, emptied
    before and after the test; for tests whose worker processes need a database of their own."""
    clients: list[redis.Redis] = []

    def url_for(db: int) -> str:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        clients.append(client)
        return url

    yield url_for
    for client in clients:
        client.flushdb()
        client.close()


@pytest.fixture
def rig() -> Iterator[Callable[..., Any]]:
    """``rig(**hook settings)``: a served simulator posting its hooks to a receiver that checks
    every signature (tests/hook_receiver.py); everything is stopped when the test ends."""
    from tests.hook_receiver import rigs  # imported here: most tests never start a simulator

    with rigs() as make:
        yield make


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo a test's ``configure_logging``: structlog's configuration and the root handlers.

    For every test: a configuration left behind (a CLI command's ``log_level="ERROR"``) would
    filter the events a later test captures with ``structlog.testing.capture_logs``."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def rabbitmq_module_vhost() -> Iterator[RabbitVhost]:
    """A RabbitMQ vhost of this test module's own, deleted with its queues at the end (skipped
    without RabbitMQ, a failure under CI=true)."""
    require_rabbitmq()
    vhost = create_vhost()
    yield vhost
    vhost.delete()


@pytest.fixture
def rabbitmq(rabbitmq_module_vhost: RabbitVhost) -> Iterator[RabbitVhost]:
    """The module's vhost, its queues deleted after each test."""
    yield rabbitmq_module_vhost
    rabbitmq_module_vhost.reset()
