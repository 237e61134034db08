"""End to end, as deployed: an SMS sent through the API of a real ``sendcloud-jobs web``,
drained by a real ``dramatiq worker.app`` process against the simulator over HTTP, and its
result read back through the API."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from producers.contract import SMS_QUEUE
from simulator.server import SimulatorServer
from tests.jobs_harness import TEMPLATE_ID, mainland, wait_until
from tests.test_web_server import CLI, Web, web_env
from tests.test_web_server import web_server as web_server  # the fixture
from tests.test_worker_process import kill_group, start_worker, worker_env
from tests.test_worker_process import sim_server as sim_server  # the fixture


def test_an_sms_sent_through_the_api_is_drained_by_a_worker_and_read_back(
    web_server: Callable[..., Web], sim_server: SimulatorServer, redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    web = web_server(redis_url)
    key = subprocess.run([CLI, "web", "api-key", "create", "--name", "e2e", "--scope", "admin"],
                         env=web_env(redis_url), capture_output=True, text=True,
                         check=True).stdout.strip()
    phones = [mainland(1), mainland(2)]
    with httpx.Client(base_url=f"{web.url}/v1",
                      headers={"Authorization": f"Bearer {key}"}) as api:
        sent = api.post("/sms", json={"template_id": TEMPLATE_ID, "phones": phones},
                        headers={"Idempotency-Key": "e2e-order-1"})
        assert sent.status_code == 202, sent.text
        log = tmp_path / "worker.log"
        worker = start_worker(worker_env(redis_url, sim_server.url), log)
        try:
            def finished() -> bool:
                return api.get("/jobs/e2e-order-1").json()["state"] == "done"

            assert wait_until(finished, 120), log.read_text()[-3000:]
        finally:
            kill_group(worker, signal.SIGTERM)
        job = api.get("/jobs/e2e-order-1").json()
        # The same key and body again: the job is done, so nothing is enqueued or sent again.
        again = api.post("/sms", json={"template_id": TEMPLATE_ID, "phones": phones},
                         headers={"Idempotency-Key": "e2e-order-1"})
    assert again.status_code == 202 and again.json()["key"] == "e2e-order-1"
    assert redis_client.llen(f"dramatiq:{SMS_QUEUE}") == 0
    assert job["result"]["outcome"] == "sent"
    assert [r["phone"] for r in job["result"]["recipients"]] == phones
    assert all(r["sms_id"] for r in job["result"]["recipients"])
    assert sorted(entry.phone for entry in sim_server.sim.ledger.entries()) == phones
