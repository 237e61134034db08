"""Delivery receipts end to end, every part a real process: the simulator sends a campaign's
SMSHook events, with duplicates and reordering, to ``sendcloud-jobs web``; ``sendcloud-jobs
receipts`` matches them; the campaign's counts must be the simulator's mix exactly, with one
delivery record per number.

5,000 numbers by default; ``SENDCLOUD_RECEIPTS_E2E_NUMBERS=100000`` (``make receipts-full``)
runs the full-size check.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import (
    TEMPLATE_ID,
    SimHost,
    WorkerGroup,
    mainland,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer, campaign_status, start_campaign
from producers.contract import SMS_DELIVERY_STREAM
from producers.results import decode_fields
from tests.redis_server import free_port
from worker.web.inbox import MAIL_INBOX, SMS_INBOX

pytestmark = pytest.mark.chaos

HOOK_KEY = "e2e-sms-hook-app-key"
E2E_DB = 12
NUMBERS = int(os.environ.get("SENDCLOUD_RECEIPTS_E2E_NUMBERS", "5000"))


def command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "sendcloud-jobs"), *args]


def test_a_campaigns_receipts_arrive_once_each_whatever_the_hooks_repeat(
    redis_db: Callable[[int], str], tmp_path: Path,
) -> None:
    e2e_redis_url = redis_db(E2E_DB)  # a database of its own: the processes share it
    port = free_port()
    with SimHost(templates=[TEMPLATE_ID]) as sim:
        sim.admin.configure_hooks(
            sms_url=f"http://127.0.0.1:{port}/hooks/sms", sms_key=HOOK_KEY,
            duplicate_ratio=0.1, reorder_ratio=0.1, encoding="mixed", seed=13,
            min_delay=0.0, max_delay=0.5, connections=8)
        env = worker_env(e2e_redis_url, sim.url, SENDCLOUD_SMS_HOOK_KEY=HOOK_KEY,
                         SENDCLOUD_METRICS_PORT="0", SENDCLOUD_RECEIPT_RETRY="0.5",
                         SENDCLOUD_RECEIPT_MATCH_WAIT="120")
        web = WorkerGroup("web", command("web", "--port", str(port)), env, tmp_path / "web.log")
        receipts = WorkerGroup("receipts", command("receipts"), env, tmp_path / "receipts.log")
        workers = WorkerGroup("worker", worker_command("worker", processes=1, threads=8), env,
                              tmp_path / "worker.log")
        client = redis.Redis.from_url(e2e_redis_url)

        def logs() -> str:
            return "\n----\n".join(g.log_tail() for g in (web, receipts, workers))

        with worker_groups(web, receipts, workers):
            assert wait_for(lambda: _healthy(port), 30), logs()
            producer = Producer(broker=RedisBroker(client=client), redis=client)
            numbers = [mainland(i) for i in range(NUMBERS)]
            start_campaign("receipts-e2e", TEMPLATE_ID, iter(numbers), producer=producer)
            deadline = 60 + NUMBERS / 100
            assert wait_for(lambda: campaign_status("receipts-e2e", producer=producer).finished,
                            deadline), logs()
            assert sim.admin.wait_for_hooks(timeout=min(deadline, 600)), (sim.admin.hook_stats(),
                                                                           logs())
            stats = sim.admin.hook_stats()

            def counted() -> bool:
                s = campaign_status("receipts-e2e", producer=producer)
                return s.delivered + s.undelivered + s.rejected == NUMBERS and \
                    client.xlen(SMS_INBOX) == 0

            assert wait_for(counted, deadline), (campaign_status("receipts-e2e",
                                                                 producer=producer), logs())
        status = campaign_status("receipts-e2e", producer=producer)
        expected = stats["sms"]["expected"]
        assert (status.delivered, status.undelivered, status.rejected) == (
            expected["delivered"], expected["undelivered"], expected["rejected"])
        assert stats["given_up"] == 0, stats
        records = [decode_fields(f) for _, f in client.xrange(SMS_DELIVERY_STREAM)
                   if f.get(b"kind") == b"delivery"]
        per_number = Counter(r["phone"] for r in records)
        assert len(records) == NUMBERS and set(per_number.values()) == {1}
        assert {r["campaign_id"] for r in records} == {"receipts-e2e"}
        # The simulator repeated and reordered what it sent: the receipts did not.
        duplicates = stats["duplicates"]["same_token"] + stats["duplicates"]["fresh_token"]
        assert duplicates >= NUMBERS // 20 and stats["reordered"] >= NUMBERS // 20, stats
        outcomes = sim.admin.sms_outcomes()
        names = {"deliver": "delivered", "delivererror": "undelivered",
                 "workererror": "rejected"}
        assert all(names[outcomes[r["sms_id"]][0]] == r["event"] for r in records)
        assert client.xlen(MAIL_INBOX) == 0
        client.close()


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
