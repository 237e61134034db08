"""A 50,000-number campaign through real ``dramatiq worker.app`` processes and the HTTP
simulator, with faults injected and a worker SIGKILLed mid-campaign: every valid number is
delivered exactly once, the counters add up, and one campaign_finished record is written.

The worker environment is the one tests/test_worker_process.py uses (quick redelivery, short
retries); this test keeps its own Redis database.
"""

from __future__ import annotations

import csv
import io
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producers import (
    CampaignStatus,
    Producer,
    campaign_report,
    campaign_status,
    start_campaign,
)
from producers.campaign import chunk_key
from producers.contract import SMS_RESULTS_STREAM
from producers.results import decode_fields
from simulator import Simulator
from simulator.server import SimulatorServer, serve_in_thread
from tests.jobs_harness import TEMPLATE_ID, mainland
from tests.test_worker_process import kill_group, start_worker, worker_env

pytestmark = pytest.mark.chaos

DB = 9  # this test's own database on the session's throwaway Redis


@pytest.fixture
def campaign_db(redis_db: Callable[[int], str]) -> str:
    return redis_db(DB)


@pytest.fixture
def faulty_sim() -> Iterator[SimulatorServer]:
    sim = Simulator(seed=11)
    sim.seed_template(TEMPLATE_ID)
    sim.faults.set("/smsapi/send", latency=0.1, server_error_rate=0.1, throttle_rate=0.1,
                   reset_rate=0.05, drop_after_accept_rate=0.1)
    server = serve_in_thread(sim)
    yield server
    server.stop()


def wait_for(predicate: Callable[[], bool], deadline: float) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def test_campaign_survives_faults_and_a_killed_worker(
    campaign_db: str, faulty_sim: SimulatorServer, tmp_path: Path
) -> None:
    valid = [mainland(i) for i in range(50_000)]
    numbers = [*valid[:25_000], "000", *valid[:10], *valid[25_000:], "+1 555 0100"]
    producer = Producer(redis_url=campaign_db)
    start = start_campaign("chaos", TEMPLATE_ID, iter(numbers), {"name": "Ann"},
                           producer=producer)
    assert (start.valid, start.invalid, start.duplicates, start.chunks) == (50_000, 2, 10, 25)

    def status() -> CampaignStatus:
        return campaign_status("chaos", producer=producer)

    env = worker_env(campaign_db, faulty_sim.url)
    log = tmp_path / "workers.log"
    doomed, survivor = start_worker(env, log), start_worker(env, log)
    replacement = None
    try:
        assert wait_for(lambda: status().chunks_done >= 4, 60), log.read_text()[-3000:]
        kill_group(doomed, signal.SIGKILL)
        replacement = start_worker(env, log)
        assert wait_for(lambda: status().finished, 120), (status(), log.read_text()[-3000:])
    finally:
        for proc in (doomed, survivor, replacement):
            if proc is not None:
                kill_group(proc, signal.SIGTERM)

    client = redis.Redis.from_url(campaign_db)
    # The kill interrupted chunks in flight: they were taken over by another worker.
    takeovers = sum(int(client.hget(f"sendcloud:idem:{chunk_key('chaos', i)}", "takeovers") or 0)
                    for i in range(25))
    assert takeovers > 0, log.read_text()[-3000:]
    ledger = Counter(e.phone for e in faulty_sim.sim.ledger.entries())
    assert ledger == Counter(valid)  # every valid number exactly once, nothing else

    final = campaign_status("chaos", producer=producer)
    assert (final.accepted, final.failed, final.pending, final.chunks_done) == (50_000, 0, 0, 25)
    records = [decode_fields(raw) for _, raw in client.xrange(SMS_RESULTS_STREAM)]
    chunk_records = [r for r in records if r.get("campaign_id") == "chaos" and r["kind"] == "sms"]
    assert len(chunk_records) == 25
    [finished] = [r for r in records if r["outcome"] == "campaign_finished"]
    assert (finished["accepted"], finished["invalid"], finished["duplicates"]) == (
        50000, 2, 10)
    assert records.index(finished) > max(records.index(r) for r in chunk_records)

    out = io.StringIO()
    campaign_report("chaos", out, producer=producer)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert Counter(r["phone"] for r in rows if r["outcome"] != "invalid") == Counter(valid)
    assert {r["outcome"] for r in rows} <= {"sent", "duplicate", "invalid"}
    sms_ids = {e.phone: e.sms_id for e in faulty_sim.sim.ledger.entries()}
    sent = [r for r in rows if r["outcome"] == "sent"]
    assert sent and all(r["smsId"] == sms_ids[r["phone"]] for r in sent)
    assert sorted(r["phone"] for r in rows if r["outcome"] == "invalid") == [
        "+1 555 0100", "000"]
    producer.close()
