"""Chaos: the Redis primary killed with -9 mid-run; Sentinel promotes the replica; work goes on.

A group of the test's own (tests/sentinel_servers.py: a primary, a replica, three sentinels);
real ``dramatiq worker.app`` processes (the Procfile's ``worker`` and ``codes`` entries) and the
reconciler, all configured with SENDCLOUD_REDIS_SENTINELS alone (REDIS_URL's host points
nowhere), so every client finds the master through the sentinels; the simulator in a child
process with latency and faults, so calls are in flight when the primary dies.

With SENDCLOUD_REDIS_WAIT_REPLICAS=1 (the default under Sentinel), claims and finishes are
decided only once the replica has them. After the failover the new master has no replica
until the old primary comes back (restarted empty, as its replica): claims are given back
meanwhile, and the work resumes when it has synced.

Every campaign number and code reaches the simulator exactly once, every job has exactly one
final record, and no outcome contradicts the simulator's ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.common import SimHost, WorkerGroup, mainland, wait_for, worker_command, worker_env
from bench.common import worker_groups as running
from producers import Producer, start_campaign
from producers.campaign import chunk_key
from producers.redis_client import parse_redis_target, redis_from_target
from tests.chaos.conftest import ChaosSize
from tests.chaos.support import FAULTS, SETTINGS, check_truth, enqueue, reconciler_group, results
from tests.jobs_harness import TEMPLATE_ID
from tests.sentinel_servers import SentinelGroup, sentinel_group

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

CAMPAIGN_ID = "failover"


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentinelGroup]:
    with sentinel_group() as started:
        for name, value in started.env.items():
            monkeypatch.setenv(name, value)  # the in-process producer, as an app would
        yield started


def sized(chaos_size: ChaosSize) -> ChaosSize:
    """The default run is kept short (three campaign chunks, 100 codes); --chaos-full as is."""
    if chaos_size.numbers > 10_000:
        return chaos_size
    return ChaosSize(numbers=6_000, codes=100, deadline=chaos_size.deadline)


def test_primary_killed_sentinel_promotes_the_replica_and_nothing_is_lost_or_doubled(
    chaos_size: ChaosSize, group: SentinelGroup, sim_host: SimHost, tmp_path: Path
) -> None:
    size = sized(chaos_size)
    for endpoint, latency in (("/smsapi/send", 1.0), ("/smsapi/sendCode", 0.3)):
        sim_host.admin.set_faults(endpoint, latency=latency, **FAULTS)
    client = redis_from_target(parse_redis_target(group.env), socket_timeout=5)
    producer = Producer()
    numbers = [mainland(900_000_000 + i) for i in range(size.numbers)]
    start = start_campaign(CAMPAIGN_ID, TEMPLATE_ID, numbers, producer=producer)
    jobs = enqueue(producer, size)
    chunk_phones = {chunk_key(CAMPAIGN_ID, i): numbers[i * 2000:(i + 1) * 2000]
                    for i in range(start.chunks)}

    # A shorter lease than the suite's: jobs in flight at the kill are driven again sooner.
    env = worker_env(group.env["REDIS_URL"], sim_host.url,
                     **{**SETTINGS, "SENDCLOUD_JOB_LEASE": "5"}, **group.env)
    # One chunk at a time: the campaign is still going when the primary dies.
    sms = WorkerGroup("worker", worker_command("worker", processes=1, threads=1), env,
                      tmp_path / "worker.log")
    codes = WorkerGroup("codes", worker_command("codes", processes=1, threads=4), env,
                        tmp_path / "codes.log")
    reconcile = reconciler_group(env, tmp_path / "reconcile.log")

    def logs() -> str:
        return "\n----\n".join(g.log_tail() for g in (sms, codes, reconcile))

    began = time.monotonic()
    with running(sms, codes, reconcile):
        assert wait_for(lambda: sim_host.count("code") >= size.codes // 5, size.deadline), logs()
        old_port = group.primary.port
        before, campaign_before = sim_host.count(), sim_host.count("sms")
        group.primary.kill()
        killed_at = time.monotonic()
        print(f"killed {killed_at - began:.1f} s after the workers started")
        new_port = group.wait_for_failover(old_port)
        failover_s = time.monotonic() - killed_at
        # Back empty, as a replica of the new master: until it has synced, claims and finishes
        # find no replica to WAIT for, and are given back.
        group.restart(group.primary, replica_of=new_port)

        def all_final() -> bool:
            try:
                return {r["key"] for r in results(client)} >= set(jobs) | set(chunk_phones)
            except redis.ConnectionError:
                return False

        assert wait_for(all_final, size.deadline, interval=0.5), logs()
        drained_s = time.monotonic() - killed_at
    assert new_port != old_port
    assert sim_host.count() > before, "no work went on after the failover"
    outcomes = check_truth(client, sim_host, {**jobs, **chunk_phones})
    campaign_sends = [phone for kind, phone, _, _ in sim_host.entries() if kind == "sms"
                      and phone in set(numbers)]
    assert sorted(campaign_sends) == sorted(numbers), "a campaign number was lost or doubled"
    print(f"sentinel failover: {len(jobs) + len(chunk_phones)} jobs, {sim_host.count()} sends, "
          f"{before} before the kill ({campaign_before} by the sms queue), failover in "
          f"{failover_s:.1f} s, all final {drained_s:.1f} s after the kill, {dict(outcomes)}")
    producer.close()
    client.close()
