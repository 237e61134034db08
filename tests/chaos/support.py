"""What the chaos scenarios share: worker settings, the reconciler process, the truth check."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.common import TEMPLATE_ID, SimHost, WorkerGroup, mainland
from producers import Producer
from producers.contract import SMS_RESULTS_STREAM
from producers.results import decode_fields
from tests.chaos.conftest import ChaosSize
from tests.jobs_harness import request_id

#: Quick heartbeats, leases, retries and reconciler passes, so events resolve in seconds.
SETTINGS = {
    "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT": "3",
    "SENDCLOUD_BROKER_MAINTENANCE_CHANCE": "100000",
    "SENDCLOUD_RETRY_BASE_DELAY": "0.5",
    "SENDCLOUD_RETRY_MAX_DELAY": "3",
    "SENDCLOUD_CALL_ATTEMPTS": "1",
    "SENDCLOUD_JOB_MAX_ATTEMPTS": "40",
    "SENDCLOUD_JOB_LEASE": "8",
    "SENDCLOUD_RECONCILE_INTERVAL": "1",
    "SENDCLOUD_RECONCILE_GRACE": "2",
    "SENDCLOUD_RECONCILE_QUEUED_AFTER": "5",
    "SENDCLOUD_METRICS_PORT": "0",
    "dramatiq_worker_timeout": "200",
}
FAULTS = {"server_error_rate": 0.1, "drop_after_accept_rate": 0.05}


def reconciler_group(env: dict[str, str], log: Path) -> WorkerGroup:
    command = str(Path(sys.executable).parent / "sendcloud-jobs")
    return WorkerGroup("reconcile", [command, "reconcile"], env, log)


def results(client: redis.Redis) -> list[dict[str, Any]]:
    return [decode_fields(raw) for _, raw in client.xrange(SMS_RESULTS_STREAM) or [] if raw]


#: Outcomes that tell the app nothing went out, and those that say every recipient was taken.
NOTHING_WENT_OUT = frozenset({"failed", "expired", "cancelled"})
ALL_WENT_OUT = frozenset({"sent", "duplicate"})


def check_truth(client: redis.Redis, sim: SimHost, jobs: dict[str, list[str]]) -> Counter[str]:
    """Every assertion of a run; the outcomes by kind and outcome, for the closing figures.

    Every job has exactly one final record; no phone reached the simulator twice; a job that
    says it went out went out to each of its phones once; one that says nothing went out sent
    nothing; ``needs_review`` (it may have gone out) sent at most once.
    """
    records = [r for r in results(client) if r.get("key") in jobs]
    assert Counter(r["key"] for r in records) == Counter(dict.fromkeys(jobs, 1))
    sent = Counter((rid, phone) for _, phone, rid, _ in sim.entries())
    assert max(sent.values(), default=1) == 1, "a phone was sent twice"
    for record in records:
        rid = request_id(client, record["key"])
        sends = [sent[(rid, phone)] for phone in jobs[record["key"]]]
        if record["outcome"] in NOTHING_WENT_OUT:
            assert not any(sends), record
        elif record["outcome"] in ALL_WENT_OUT:
            assert all(sends), record
        else:
            assert record["outcome"] == "needs_review", record
    expected = {(request_id(client, k), p) for k, phones in jobs.items() for p in phones}
    assert set(sent) <= expected, "the simulator took a send no job made"
    return Counter(f"{r['kind']}:{r['outcome']}" for r in records)


def enqueue(producer: Producer, size: ChaosSize) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for i in range(size.codes // 2):
        phone = mainland(700_000_000 + i)
        jobs[producer.send_code(phone, f"{200000 + i}", sign_id=1, expires_in=3000)] = [phone]
    for i in range(size.codes // 10):
        phones = [mainland(800_000_000 + 10 * i + j) for j in range(10)]
        jobs[producer.send_sms(TEMPLATE_ID, phones)] = phones
    return jobs
