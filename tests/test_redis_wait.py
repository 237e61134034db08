"""WAIT on the writes that decide whether an SMS may go out, against a replica that is stopped.

A real Sentinel group (tests/sentinel_servers.py); the replica is SIGSTOPped so that it cannot
acknowledge anything, and SIGCONTed after. With SENDCLOUD_REDIS_WAIT_REPLICAS=1:

* a reservation raises NotReplicated and leaves nothing: no record, no message, no index entry;
* a claim is given back uncounted and the job retried, and SendCloud is not called;
* a finish is run again (writing no second record) and then the job retried; the retry finds
  the job final and sends nothing.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import redis

from producers import NotReplicated, Producer
from producers.contract import RECONCILE_KEY, SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash, record_key
from simulator import Simulator
from tests.jobs_harness import TEMPLATE_ID, fast_settings, mainland, stream_records
from tests.sentinel_servers import MASTER, SentinelGroup, sentinel_group
from worker.connections import redis_client
from worker.jobs import JOB_TYPES
from worker.jobs.idempotency import FINISH_REPLICATION_TRIES
from worker.jobs.runner import JobRunner
from worker.runtime import Runtime
from worker.sendcloud.client import SendCloudClient
from worker.settings import Settings

SMS = next(job for job in JOB_TYPES if job.actor_name == "sendcloud_send_sms")
# Long enough for a running replica on a busy machine; each refusal against the stopped
# replica waits it out in full.
WAIT_MS = 1000
CLI = str(Path(sys.executable).parent / "sendcloud-jobs")


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with sentinel_group() as started:
        yield started


@pytest.fixture
def primary(group: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The primary, emptied before and after; the environment points at the group, and the
    replica runs again whatever the test did."""
    for name, value in group.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SENDCLOUD_REDIS_WAIT_TIMEOUT_MS", str(WAIT_MS))
    client = group.primary.client()
    client.flushdb()
    group.wait_replica_in_sync()
    yield client
    group.replica.resume()
    client.flushdb()
    client.close()


@pytest.fixture
def settings(group: SentinelGroup) -> Settings:
    env = {**group.env, "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": str(WAIT_MS)}
    loaded = Settings.from_env(env)
    return dataclasses.replace(
        fast_settings(loaded.redis_url), redis_sentinels=loaded.redis_sentinels,
        redis_master=MASTER, redis_wait_replicas=1, redis_wait_timeout_ms=WAIT_MS,
    )  # fmt: skip


class PausesReplica(httpx.BaseTransport):
    """The simulator, but the replica stops while SendCloud takes the call: the claim before
    it was replicated, the finish after it cannot be."""

    def __init__(self, inner: httpx.BaseTransport, group: SentinelGroup) -> None:
        self.inner = inner
        self.group = group

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.group.replica.pause()
        return self.inner.handle_request(request)


def sms_payload(key: str) -> dict[str, Any]:
    return {"key": key, "template_id": TEMPLATE_ID, "phones": [mainland(1)], "vars": None,
            "msg_type": 0, "tag": None, "enqueued_at": time.time()}


def runner_for(settings: Settings, sim: Simulator, transport: httpx.BaseTransport) -> JobRunner:
    sim.seed_template(TEMPLATE_ID)
    runtime = Runtime(settings, redis_client(settings),
                      lambda: SendCloudClient(settings, transport=transport))
    return JobRunner(runtime)


def test_a_reservation_not_replicated_raises_and_leaves_nothing(
    group: SentinelGroup, primary: redis.Redis
) -> None:
    producer = Producer()
    assert producer.store.wait_replicas == 1
    group.replica.pause()
    with pytest.raises(NotReplicated, match="reached 0 of the 1 replica"):
        producer.send_code(mainland(1), "1234", sign_id=1, idempotency_key="code-a")
    with pytest.raises(NotReplicated):  # a split call: every part's record is taken back
        producer.add_members("news@maillist.sendcloud.org",
                             [f"m{i}@example.com" for i in range(1500)], idempotency_key="mem-a")
    assert primary.exists(record_key("code-a"), record_key("mem-a:part0"),
                          record_key("mem-a:part1")) == 0
    assert primary.zcard(RECONCILE_KEY) == 0
    assert primary.llen("dramatiq:sendcloud.codes") == 0
    assert primary.llen("dramatiq:sendcloud.members") == 0

    group.replica.resume()
    assert producer.send_code(mainland(1), "1234", sign_id=1, idempotency_key="code-a") == "code-a"
    assert primary.llen("dramatiq:sendcloud.codes") == 1
    producer.close()


def test_a_reservation_of_a_record_already_there_is_not_taken_back(
    group: SentinelGroup, primary: redis.Redis
) -> None:
    store = IdempotencyStore(primary, wait_replicas=1, wait_timeout_ms=WAIT_MS)
    store.reserve("sms-a", "h1", "sms")
    group.replica.pause()
    with pytest.raises(NotReplicated):
        store.reserve("sms-a", "h1", "sms")
    assert store.get("sms-a") is not None  # the earlier, replicated reservation stays


def test_a_claim_not_replicated_is_given_back_and_the_job_retried_unsent(
    group: SentinelGroup, primary: redis.Redis, settings: Settings
) -> None:
    sim = Simulator()
    runner = runner_for(settings, sim, sim.transport())
    payload = sms_payload("sms-claim")
    IdempotencyStore(primary).reserve("sms-claim", payload_hash(payload), "sms")
    group.replica.pause()
    with pytest.raises(dramatiq.Retry):
        runner.run(SMS, payload, "m1")
    record = {k.decode(): v.decode() for k, v in primary.hgetall(record_key("sms-claim")).items()}
    assert (record["state"], record["attempts"], record["last_error"]) == \
        ("queued", "0", "claim not replicated")
    assert sim.ledger.entries() == []

    group.replica.resume()
    assert runner.run(SMS, payload, "m1") == "sent"
    assert len(sim.ledger.entries()) == 1


def test_a_finish_not_replicated_is_rerun_then_retried_and_never_written_twice(
    group: SentinelGroup, primary: redis.Redis, settings: Settings
) -> None:
    sim = Simulator()
    runner = runner_for(settings, sim, PausesReplica(sim.transport(), group))
    payload = sms_payload("sms-finish")
    IdempotencyStore(primary).reserve("sms-finish", payload_hash(payload), "sms")
    with pytest.raises(dramatiq.Retry):
        runner.run(SMS, payload, "m1")
    record = primary.hgetall(record_key("sms-finish"))
    assert record[b"state"] == b"done"
    assert int(record[b"finish_repeats"]) == FINISH_REPLICATION_TRIES - 1
    assert len(stream_records(primary, SMS_RESULTS_STREAM)) == 1

    group.replica.resume()
    # The retry of the same message finds the job final: nothing sent, nothing written.
    assert runner.run(SMS, payload, "m1") is None
    assert len(stream_records(primary, SMS_RESULTS_STREAM)) == 1
    assert len(sim.ledger.entries()) == 1


def test_the_cli_says_in_one_line_that_a_reservation_was_not_replicated(
    group: SentinelGroup, primary: redis.Redis
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update(group.env, SENDCLOUD_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS))
    group.replica.pause()
    proc = subprocess.run(
        [CLI, "enqueue", "code", "--phone", mainland(2), "--sign-id", "3", "--code", "1234",
         "--key", "cli-1"], env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "the reservation of 'cli-1' reached 0 of the 1 replica(s)" in proc.stderr
    assert primary.exists(record_key("cli-1")) == 0
