"""Chaos: Redis killed with -9 and restarted from its AOF mid-run, twice; a worker stalled.

Real ``dramatiq worker.app`` processes (the Procfile's ``worker`` and ``codes`` entries), the
reconciler (``sendcloud-jobs reconcile``, as the ``scheduler`` runs it), a redis-server of the
test's own with ``appendonly yes`` and ``appendfsync everysec`` (a killed process loses what
its AOF buffer had not yet written; a crashed host, up to a second), and the simulator in a
child process with latency and injected faults, so that calls are in flight and retries wait
in delay queues when Redis dies.

After each run: every number and code reached the simulator exactly once, every job has
exactly one final record, and no final outcome contradicts the simulator's ledger (no
``failed`` or ``expired`` for a send that took effect). Waits poll against deadlines.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import (
    SimHost,
    WorkerGroup,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer
from producers.idempotency import record_key
from tests.chaos.conftest import ChaosSize
from tests.chaos.support import (
    FAULTS,
    SETTINGS,
    check_truth,
    enqueue,
    reconciler_group,
    results,
)
from tests.redis_server import RedisServer, start_redis_server

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

#: Servers started by restart(): each outlives the one it replaced, and is stopped at teardown.
_RESTARTED: list[RedisServer] = []


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = start_redis_server(appendonly=True, workdir=str(tmp_path / "redis"))
    if server is None:
        pytest.fail("redis-server is not installed")
    yield server
    for started in [server, *_RESTARTED]:
        started.stop()
    _RESTARTED.clear()


def restart(server: RedisServer) -> RedisServer:
    again = start_redis_server(appendonly=True, port=server.port, workdir=server.workdir)
    assert again is not None
    _RESTARTED.append(again)
    return again


def test_redis_killed_and_restarted_from_its_aof_twice(
    chaos_size: ChaosSize, aof_redis: RedisServer, sim_host: SimHost, tmp_path: Path
) -> None:
    server = aof_redis
    for endpoint, latency in (("/smsapi/send", 1.0), ("/smsapi/sendCode", 0.3)):
        sim_host.admin.set_faults(endpoint, latency=latency, **FAULTS)
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    producer = Producer(broker=RedisBroker(client=client), redis=client)
    jobs = enqueue(producer, chaos_size)
    time.sleep(1.5)  # past one fsync of appendfsync everysec: every accepted job is in the AOF

    env = worker_env(server.url, sim_host.url, **SETTINGS)
    sms = WorkerGroup("worker", worker_command("worker", processes=1, threads=4), env,
                      tmp_path / "worker.log")
    codes = WorkerGroup("codes", worker_command("codes", processes=1, threads=4), env,
                        tmp_path / "codes.log")
    reconcile = reconciler_group(env, tmp_path / "reconcile.log")
    step = max(1, len(jobs) // 6)

    def logs() -> str:
        return "\n----\n".join(g.log_tail() for g in (sms, codes, reconcile))

    with worker_groups(sms, codes, reconcile):
        for _ in range(2):
            seen = sim_host.count()
            assert wait_for(lambda s=seen: sim_host.count() >= s + step, chaos_size.deadline), \
                logs()
            server.kill()
            time.sleep(2)
            server = restart(server)
        client = redis.Redis.from_url(server.url, socket_timeout=5)

        def all_final() -> bool:
            try:
                return {r["key"] for r in results(client)} >= set(jobs)
            except redis.ConnectionError:
                return False

        assert wait_for(all_final, chaos_size.deadline, interval=0.5), logs()
    outcomes = check_truth(client, sim_host, jobs)
    # A retry that could not be enqueued while Redis was away is handled, not a crash.
    worker_logs = "".join(g.log_path.read_text(errors="replace") for g in (sms, codes))
    assert "Unexpected failure in after_process_message" not in worker_logs
    assert "job.retry_not_enqueued" in worker_logs or "reconcile.redriven" in \
        reconcile.log_path.read_text(errors="replace")
    print(f"redis restart x2: {len(jobs)} jobs, {sim_host.count()} sends, {dict(outcomes)}")
    server.stop()


@pytest.mark.parametrize(("lease", "heartbeat_timeout"), [
    # The lease runs out during the stall; Dramatiq's heartbeat sweep would come much later:
    # the reconciler sends a fresh copy, which takes the expired claim over.
    ("4", "120"),
    # The stall outlasts the heartbeat timeout but not the lease: Dramatiq redelivers the same
    # message, which takes its own live claim over; the stalled attempt is fenced off.
    ("120", "3"),
], ids=["lease-shorter-than-stall", "lease-longer-than-stall"])
def test_a_stalled_worker_writes_nothing(
    chaos_size: ChaosSize, chaos_redis_url: str, sim_host: SimHost, tmp_path: Path,
    lease: str, heartbeat_timeout: str,
) -> None:
    """SIGSTOP of the codes worker mid-call until its jobs are taken over; SIGCONT lets the
    stale attempts wake into 501s and lost claims."""
    sim_host.admin.set_faults("/smsapi/sendCode", latency=1.0, server_error_rate=0.2)
    sim_host.admin.set_faults("/smsapi/send", latency=1.0, server_error_rate=0.2)
    client = redis.Redis.from_url(chaos_redis_url)
    producer = Producer(broker=RedisBroker(client=client), redis=client)
    jobs = enqueue(producer, chaos_size)
    env = worker_env(chaos_redis_url, sim_host.url, **{
        **SETTINGS, "SENDCLOUD_JOB_LEASE": lease,
        "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT": heartbeat_timeout,
    })
    stalled = WorkerGroup("codes", worker_command("codes", processes=1, threads=4), env,
                          tmp_path / "stalled.log")
    healthy = WorkerGroup("worker", worker_command("worker", processes=1, threads=4,
                          queues=["sendcloud.codes", "sendcloud.sms"]), env,
                          tmp_path / "healthy.log")
    reconcile = reconciler_group(env, tmp_path / "reconcile.log")

    def logs() -> str:
        return "\n----\n".join(g.log_tail() for g in (stalled, healthy, reconcile))

    def takeovers() -> int:
        return sum(int(client.hget(record_key(k), "takeovers") or 0) for k in jobs)

    def in_flight() -> int:
        with client.pipeline(transaction=False) as pipe:
            for k in jobs:
                pipe.hget(record_key(k), "state")
            return sum(state == b"in_flight" for state in pipe.execute())

    with worker_groups(stalled, reconcile):
        stalled.wait_ready(client)
        # Stopped mid-call: only the stalled group runs, so a job in flight is one of its
        # own (each call takes a second); stopped between calls, it would hold nothing.
        assert wait_for(lambda: sim_host.count() >= 4 and in_flight() > 0,
                        chaos_size.deadline), logs()
        stalled.signal(signal.SIGSTOP)
        with worker_groups(healthy):
            # Stopped until its jobs are taken over (after the lease or the heartbeat timeout,
            # whichever is shorter), however long a busy machine takes; then they wake.
            assert wait_for(lambda: takeovers() > 0, chaos_size.deadline, interval=0.2), logs()
            stalled.signal(signal.SIGCONT)
            assert wait_for(lambda: {r["key"] for r in results(client)} >= set(jobs),
                            chaos_size.deadline, interval=0.5), logs()
    outcomes = check_truth(client, sim_host, jobs)
    print(f"SIGSTOP, lease {lease} s, heartbeat timeout {heartbeat_timeout} s: "
          f"{len(jobs)} jobs, {sim_host.count()} sends, {takeovers()} takeovers, "
          f"{dict(outcomes)}")
