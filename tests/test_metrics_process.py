"""Metrics as a deployment sees them: a real ``dramatiq worker.app`` with 2 processes, scraped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producers import Producer
from simulator import Simulator
from simulator.server import SimulatorServer, serve_in_thread
from tests.jobs_harness import wait_until
from tests.redis_server import free_port
from worker import metrics

DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))


@pytest.fixture
def sim_server() -> Iterator[SimulatorServer]:
    server = serve_in_thread(Simulator())
    yield server
    server.stop()


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def test_two_worker_processes_export_one_set_of_metrics(
    redis_url: str, sim_server: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update(
        REDIS_URL=redis_url,
        SENDCLOUD_BASE_URL=sim_server.url,
        SENDCLOUD_SMS_USER="sim_sms_user",
        SENDCLOUD_SMS_KEY="sim-sms-key-0000",
        SENDCLOUD_API_USER="sim_api_user",
        SENDCLOUD_API_KEY="sim-api-key-0000",
        SENDCLOUD_METRICS_PORT=str(port),
        dramatiq_prom_db=str(tmp_path),
    )
    proc = subprocess.Popen(
        [DRAMATIQ, "worker.app", "--processes", "2", "--threads", "2",
         "--queues", "sendcloud.codes"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    producer = Producer(redis_url=redis_url)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for i in range(4):
            producer.send_code(f"1380000000{i}", "1234", sign_id=1)
        sent = 'sendcloud_job_outcomes_total{kind="code",outcome="sent"} 4.0'
        assert wait_until(lambda: sent in scrape(url), deadline=60), scrape(url)
        body = scrape(url)
    finally:
        producer.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    assert 'sendcloud_api_calls_total{endpoint="/smsapi/sendCode",status_code="200"} 4.0' in body
    assert (
        'dramatiq_messages_total{actor_name="sendcloud_send_code",queue_name="sendcloud.codes"} 4.0'
        in body
    )
    assert f'{metrics.QUEUE_DEPTH}{{queue="sendcloud.codes.XQ"}} 0.0' in body  # none died
    assert f"{metrics.REDIS_UP} 1.0" in body
