"""Redis Sentinel: the settings and their errors, and every kind of client finding the master.

The clients run against a real group (tests/sentinel_servers.py: a primary, a replica and three
sentinels on free ports); REDIS_URL's host and port point nowhere, so a client that ignored the
sentinels would fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis

from producers import Producer
from producers.contract import SMS_RESULTS_STREAM
from producers.errors import SettingError
from producers.redis_client import node_kwargs, parse_redis_target, redis_from_env
from simulator import Simulator
from tests.jobs_harness import (
    TEMPLATE_ID,
    fast_settings,
    mainland,
    stop_worker,
    stream_records,
    wait_until,
)
from tests.sentinel_servers import MASTER, SentinelGroup, sentinel_group
from worker.broker import make_broker
from worker.connections import async_redis_client, redis_client
from worker.jobs import declare_job_actors
from worker.runtime import Runtime
from worker.sendcloud.client import SendCloudClient
from worker.settings import ConfigurationError, Settings

CLI = str(Path(sys.executable).parent / "sendcloud-jobs")
SENTINELS = {"SENDCLOUD_REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379",
             "SENDCLOUD_REDIS_MASTER": "mymaster"}


@pytest.mark.parametrize(("env", "variable", "rule"), [
    ({"SENDCLOUD_REDIS_SENTINELS": "10.0.0.1", "SENDCLOUD_REDIS_MASTER": "m"},
     "SENDCLOUD_REDIS_SENTINELS", "host:port pairs"),
    ({"SENDCLOUD_REDIS_SENTINELS": "10.0.0.1:0", "SENDCLOUD_REDIS_MASTER": "m"},
     "SENDCLOUD_REDIS_SENTINELS", "host:port pairs"),
    ({"SENDCLOUD_REDIS_SENTINELS": "10.0.0.1:26379,:26380", "SENDCLOUD_REDIS_MASTER": "m"},
     "SENDCLOUD_REDIS_SENTINELS", "got ':26380'"),
    ({"SENDCLOUD_REDIS_SENTINELS": "10.0.0.1:26379"}, "SENDCLOUD_REDIS_MASTER", "is required"),
    ({"SENDCLOUD_REDIS_MASTER": "m"}, "SENDCLOUD_REDIS_SENTINELS", "is required"),
    ({**SENTINELS, "SENDCLOUD_REDIS_MASTER": "my master"}, "SENDCLOUD_REDIS_MASTER", "one word"),
    ({**SENTINELS, "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL",
     "must be redis:// or rediss://"),
    ({"SENDCLOUD_REDIS_WAIT_REPLICAS": "-1"}, "SENDCLOUD_REDIS_WAIT_REPLICAS", "whole number"),
    ({"SENDCLOUD_REDIS_WAIT_REPLICAS": "one"}, "SENDCLOUD_REDIS_WAIT_REPLICAS", "whole number"),
    ({"SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": "0"}, "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS", "from 1 to 2000"),
    ({"SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": "5000"}, "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS",
     "from 1 to 2000"),
])
def test_bad_sentinel_settings_name_the_variable_and_the_rule(
    env: dict[str, str], variable: str, rule: str
) -> None:
    with pytest.raises(ConfigurationError) as worker_side:
        Settings.from_env(env)
    assert (worker_side.value.variable, rule in worker_side.value.rule) == (variable, True)
    with pytest.raises(SettingError) as producer_side:
        parse_redis_target(env)
    assert (producer_side.value.variable, producer_side.value.rule) == \
        (variable, worker_side.value.rule)


def test_wait_replicas_default_to_one_under_sentinel_and_none_without() -> None:
    assert (Settings.from_env({}).redis_wait_replicas,
            Settings.from_env(SENTINELS).redis_wait_replicas) == (0, 1)
    settings = Settings.from_env({**SENTINELS, "SENDCLOUD_REDIS_WAIT_REPLICAS": "2",
                                  "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": "250",
                                  "SENDCLOUD_REDIS_SENTINEL_PASSWORD": "sentinel-pw-1"})
    assert settings.redis_target == parse_redis_target(
        {**SENTINELS, "SENDCLOUD_REDIS_WAIT_REPLICAS": "2",
         "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": "250",
         "SENDCLOUD_REDIS_SENTINEL_PASSWORD": "sentinel-pw-1"})
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout_ms) == (2, 250)
    # The sentinels' password is a secret: never printed, and redacted like the others.
    assert "sentinel-pw-1" not in repr(settings)
    assert "sentinel-pw-1" in settings.secrets


def test_redis_url_gives_the_data_nodes_db_credentials_and_tls_not_their_address() -> None:
    assert node_kwargs("rediss://app:pw@ignored.example:6390/3") == \
        {"username": "app", "password": "pw", "db": 3, "ssl": True}
    assert node_kwargs("redis://:pw@ignored.example/2") == {"password": "pw", "db": 2}


def test_a_bad_sentinel_setting_stops_the_cli_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env["SENDCLOUD_REDIS_SENTINELS"] = "10.0.0.1"
    proc = subprocess.run([CLI, "health", "--redis-only"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "SENDCLOUD_REDIS_SENTINELS: must be comma-separated host:port pairs" in proc.stderr


# -- against a real group ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with sentinel_group() as started:
        yield started


@pytest.fixture
def primary(group: SentinelGroup) -> Iterator[redis.Redis]:
    """A direct client of the primary, its database emptied before and after the test (the
    group is this module's own)."""
    client = group.primary.client()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def sentinel_settings(group: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in group.env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env({**group.env})


def test_every_kind_of_client_writes_to_the_master_the_sentinels_name(
    group: SentinelGroup, primary: redis.Redis, sentinel_settings: Settings
) -> None:
    worker_side = redis_client(sentinel_settings, timeout=5, retries=1)
    producer_side = redis_from_env()
    worker_side.set("sentinel:sync", "1")
    producer_side.set("sentinel:producer", "1")

    async def write_async() -> None:
        client = async_redis_client(sentinel_settings, timeout=5, retries=1)
        try:
            await client.set("sentinel:async", "1")
        finally:
            await client.aclose()

    asyncio.run(write_async())
    broker = make_broker(None, redis_client=redis_client(sentinel_settings),
                         settings=sentinel_settings)
    broker.declare_queue("sentinel.check")
    broker.enqueue(dramatiq.Message(queue_name="sentinel.check", actor_name="check", args=(),
                                    kwargs={}, options={}))
    assert primary.exists("sentinel:sync", "sentinel:producer", "sentinel:async") == 3
    assert primary.llen("dramatiq:sentinel.check") == 1
    worker_side.close()
    producer_side.close()
    broker.close()


def test_a_broker_without_the_sentinel_client_is_refused(sentinel_settings: Settings) -> None:
    with pytest.raises(ValueError, match="needs the redis_client"):
        make_broker(sentinel_settings.redis_url, settings=sentinel_settings)


def test_health_reports_the_sentinel_master(group: SentinelGroup, primary: redis.Redis) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    proc = subprocess.run([CLI, "health", "--redis-only"], env={**env, **group.env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"master {MASTER!r} via sentinels" in proc.stdout


def test_a_producer_enqueues_and_a_worker_finishes_through_sentinel(
    group: SentinelGroup, primary: redis.Redis, sentinel_settings: Settings
) -> None:
    settings = dataclasses.replace(fast_settings(sentinel_settings.redis_url),
                                   redis_sentinels=sentinel_settings.redis_sentinels,
                                   redis_master=MASTER, redis_wait_replicas=1)
    sim = Simulator()
    sim.seed_template(TEMPLATE_ID)
    transport = sim.transport()
    runtime = Runtime(settings, redis_client(settings),
                      lambda: SendCloudClient(settings, transport=transport))
    broker = make_broker(None, redis_client=redis_client(settings), settings=settings)
    declare_job_actors(broker, runtime)
    producer = Producer()  # from the environment: the group's sentinels, WAIT for 1 replica
    assert producer.store.wait_replicas == 1
    keys = [producer.send_code(mainland(i), "1234", sign_id=1) for i in range(3)]
    keys.append(producer.send_sms(TEMPLATE_ID, [mainland(10), mainland(11)], {"name": "x"}))
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        assert wait_until(lambda: {r["key"] for r in stream_records(primary)} >= set(keys), 60)
    finally:
        stop_worker(worker)
        broker.close()
        producer.close()
    records = stream_records(primary, SMS_RESULTS_STREAM)
    assert sorted(r["key"] for r in records) == sorted(keys)
    assert {r["outcome"] for r in records} == {"sent"}
    assert len(sim.ledger.entries()) == 5
    # The records reached the replica before they were decided (WAIT).
    replica = group.replica.client()
    try:
        assert replica.xlen(SMS_RESULTS_STREAM) == len(keys)
    finally:
        replica.close()
