"""Real worker processes: ``dramatiq worker.app`` as the Procfile runs it, SIGKILLed mid-run.

The simulator is served over HTTP in this process; the worker reaches it through
``SENDCLOUD_BASE_URL``. Redelivery is made quick with
``SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT`` and ``SENDCLOUD_BROKER_MAINTENANCE_CHANCE``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Producer
from producers.contract import CODES_QUEUE, SMS_QUEUE, SMS_RESULTS_STREAM
from simulator import Simulator
from simulator.server import SimulatorServer, serve_in_thread
from tests.jobs_harness import TEMPLATE_ID, mainland, request_id, stream_records, wait_until
from tests.rabbitmq_server import RabbitVhost

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parent.parent
DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))
DB = 7  # this test's own database on the session's throwaway Redis


@pytest.fixture
def own_db(redis_db: Callable[[int], str]) -> str:
    return redis_db(DB)


@pytest.fixture
def sim_server() -> Iterator[SimulatorServer]:
    sim = Simulator()
    sim.seed_template(TEMPLATE_ID)
    server = serve_in_thread(sim)
    yield server
    server.stop()


def worker_env(redis_url: str, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update({
        "REDIS_URL": redis_url,
        "SENDCLOUD_BASE_URL": base_url,
        "SENDCLOUD_SMS_USER": "sim_sms_user",
        "SENDCLOUD_SMS_KEY": "sim-sms-key-0000",
        "SENDCLOUD_API_USER": "sim_api_user",
        "SENDCLOUD_API_KEY": "sim-api-key-0000",
        "SENDCLOUD_METRICS_PORT": "0",
        "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT": "2",
        "SENDCLOUD_BROKER_MAINTENANCE_CHANCE": "100000",
        "SENDCLOUD_RETRY_BASE_DELAY": "0.05",
        "SENDCLOUD_RETRY_MAX_DELAY": "0.5",
        "SENDCLOUD_CALL_BASE_DELAY": "0.01",
        "SENDCLOUD_CALL_MAX_DELAY": "0.05",
        "LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # The Procfile's command, with one process so a single SIGKILL takes every thread down.
    command = [DRAMATIQ, "worker.app", "--processes", "1", "--threads", "4",
               "--queues", CODES_QUEUE, SMS_QUEUE]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


def records(client: redis.Redis) -> list[dict[str, Any]]:
    return stream_records(client, SMS_RESULTS_STREAM)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The queues' broker: "" for Redis, else a RabbitMQ vhost of the module's own."""
    if request.param == "redis":
        return ""
    vhost: RabbitVhost = request.getfixturevalue("rabbitmq")
    return vhost.url


def test_sigkill_mid_run_then_restart_sends_everything_exactly_once(
    own_db: str, sim_server: SimulatorServer, tmp_path: Path, broker_url: str
) -> None:
    """On Redis the killed worker's messages come back after its heartbeat times out; on
    RabbitMQ as soon as its connections drop."""
    sim = sim_server.sim
    sim.faults.set(latency=0.15)
    client = redis.Redis.from_url(own_db)
    producer = Producer(redis_url=own_db, broker_url=broker_url)
    jobs: dict[str, list[str]] = {}
    for i in range(100):
        jobs[producer.send_code(mainland(i), f"{200000 + i}", sign_id=1)] = [mainland(i)]
    for i in range(20):
        phones = [mainland(1000 + 2 * i), mainland(1001 + 2 * i)]
        jobs[producer.send_sms(TEMPLATE_ID, phones)] = phones
    producer.close()

    env = worker_env(own_db, sim_server.url, SENDCLOUD_BROKER_URL=broker_url)
    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    try:
        assert wait_until(lambda: len(records(client)) >= 15, 60), log.read_text()[-3000:]
    finally:
        kill_group(first, signal.SIGKILL)
    killed_at = len(records(client))

    second = start_worker(env, log)
    try:
        finished = wait_until(lambda: {r["key"] for r in records(client)} >= set(jobs), 120)
        assert finished, log.read_text()[-3000:]
        time.sleep(0.5)  # a straggling duplicate would show up here, not after the kill below
    finally:
        kill_group(second, signal.SIGTERM)

    expected = Counter((request_id(client, k), p) for k, phones in jobs.items() for p in phones)
    assert Counter((e.send_request_id, e.phone) for e in sim.ledger.entries()) == expected
    final = records(client)
    assert Counter(r["key"] for r in final) == Counter(dict.fromkeys(jobs, 1))
    assert {r["outcome"] for r in final} <= {"sent", "duplicate"}
    # The kill really interrupted work: jobs were left in flight and taken over after it.
    takeovers = sum(int(client.hget(f"sendcloud:idem:{k}", "takeovers") or 0) for k in jobs)
    assert killed_at < len(jobs)
    assert takeovers > 0, log.read_text()[-3000:]
    client.close()


def test_a_missing_credential_stops_the_worker_naming_the_variable(
    own_db: str, tmp_path: Path
) -> None:
    env = worker_env(own_db, "http://127.0.0.1:9")
    del env["SENDCLOUD_SMS_KEY"]
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        proc.wait(timeout=60)
    finally:
        kill_group(proc, signal.SIGKILL)
    assert proc.returncode == 2
    output = log.read_text()
    assert "sendcloud-jobs worker: error: SENDCLOUD_SMS_KEY: is required but not set" in output
    assert "Traceback" not in output


def test_a_taken_metrics_port_stops_the_worker_in_one_line(
    own_db: str, tmp_path: Path
) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    env = worker_env(own_db, "http://127.0.0.1:9")
    env["SENDCLOUD_METRICS_PORT"] = str(taken.getsockname()[1])
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        proc.wait(timeout=60)
    finally:
        kill_group(proc, signal.SIGKILL)
        taken.close()
    assert proc.returncode == 2
    output = log.read_text()
    assert f"SENDCLOUD_METRICS_PORT: port {env['SENDCLOUD_METRICS_PORT']}" in output
    assert "Traceback" not in output
