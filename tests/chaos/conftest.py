"""Chaos suite fixtures: sizes, a database of its own, the simulator in a child process.

Reduced size by default (CI): a 10,000-number campaign and 200 codes. Full size (200,000
numbers, 2,000 codes): ``SENDCLOUD_CHAOS_FULL=1 pytest tests/chaos`` or
``pytest tests/chaos --chaos-full``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from bench.common import TEMPLATE_ID, SimHost
from tests.redis_server import RedisServer

#: This suite's database on the session's throwaway redis-server: CLIENT KILL picks worker
#: connections by it, so no other test's connection is touched.
CHAOS_DB = 11


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-full", action="store_true", default=False,
                     help="run the chaos suite at full size (also: SENDCLOUD_CHAOS_FULL=1)")


@dataclass(frozen=True)
class ChaosSize:
    numbers: int
    codes: int
    #: Seconds to wait for every job's final record.
    deadline: float


@pytest.fixture
def chaos_size(request: pytest.FixtureRequest) -> ChaosSize:
    full = request.config.getoption("--chaos-full", default=False) or \
        os.environ.get("SENDCLOUD_CHAOS_FULL", "") not in ("", "0")
    if full:
        return ChaosSize(numbers=200_000, codes=2_000, deadline=900.0)
    return ChaosSize(numbers=10_000, codes=200, deadline=150.0)


@pytest.fixture
def chaos_redis_url(redis_server: RedisServer) -> Iterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{CHAOS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()  # this suite's own database on the session's throwaway server
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def sim_host() -> Iterator[SimHost]:
    with SimHost(templates=[TEMPLATE_ID]) as host:
        yield host


@pytest.fixture(autouse=True)
def deployment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process producers share the workers' settings, as a deployment's apps would: the
    reconciler looks at a job still queued SENDCLOUD_RECONCILE_QUEUED_AFTER after it was
    reserved, a time the producer writes into the reconcile index."""
    from tests.chaos.support import SETTINGS

    monkeypatch.setenv("SENDCLOUD_RECONCILE_QUEUED_AFTER",
                       SETTINGS["SENDCLOUD_RECONCILE_QUEUED_AFTER"])
