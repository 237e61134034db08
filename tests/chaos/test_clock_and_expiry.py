"""Chaos: a worker whose clock is hours off, and codes whose replies are lost before they expire.

Real ``dramatiq worker.app`` processes, the reconciler process and the simulator in a child
process. The skewed worker runs with a ``sitecustomize`` that shifts ``time.time`` (and so
Dramatiq's heartbeats and retry etas, the client's request timestamps, its log times) in that
process only; the honest worker and Redis keep the true time.

After each run the truth check of :mod:`tests.chaos.support` holds: one final record per job,
no phone sent twice, no ``failed`` or ``expired`` for a send that took effect.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import redis

from bench.common import (
    SimHost,
    WorkerGroup,
    mainland,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer
from tests.chaos.conftest import ChaosSize
from tests.chaos.support import SETTINGS, check_truth, enqueue, reconciler_group, results
from tests.jobs_harness import request_id

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

SITECUSTOMIZE = '''\
import os
import time

_offset = float(os.environ.get("CHAOS_CLOCK_OFFSET", "0"))
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
'''
BOTH_QUEUES = ["sendcloud.codes", "sendcloud.sms"]


@pytest.mark.parametrize("offset_hours", [-2, 2])
def test_a_worker_hours_off_changes_no_outcome(
    chaos_size: ChaosSize, chaos_redis_url: str, sim_host: SimHost, tmp_path: Path,
    offset_hours: int,
) -> None:
    """Two hours slow, its heartbeats look dead to the honest worker, which takes its jobs
    over mid-call; two hours fast, its retries carry etas two hours ahead, which the honest
    worker would hold that long: the reconciler drives them. Either way every job is sent
    once and ends ``sent`` or ``duplicate``: with Redis's clock deciding, no window closes."""
    for endpoint, latency in (("/smsapi/send", 0.5), ("/smsapi/sendCode", 0.2)):
        sim_host.admin.set_faults(endpoint, latency=latency, server_error_rate=0.2)
    client = redis.Redis.from_url(chaos_redis_url)
    producer = Producer(redis_url=chaos_redis_url)
    jobs = enqueue(producer, chaos_size)
    producer.close()
    (tmp_path / "skew").mkdir()
    (tmp_path / "skew" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = worker_env(chaos_redis_url, sim_host.url, **SETTINGS)
    skewed_env = {**env, "PYTHONPATH": str(tmp_path / "skew"),
                  "CHAOS_CLOCK_OFFSET": str(offset_hours * 3600)}
    skewed = WorkerGroup("skewed", worker_command("worker", processes=1, threads=4,
                         queues=BOTH_QUEUES), skewed_env, tmp_path / "skewed.log")
    honest = WorkerGroup("honest", worker_command("worker", processes=1, threads=4,
                         queues=BOTH_QUEUES), env, tmp_path / "honest.log")
    reconcile = reconciler_group(env, tmp_path / "reconcile.log")

    def logs() -> str:
        return "\n----\n".join(g.log_tail() for g in (skewed, honest, reconcile))

    with worker_groups(skewed, honest, reconcile):
        assert wait_for(lambda: {r["key"] for r in results(client)} >= set(jobs),
                        chaos_size.deadline, interval=0.5), logs()
    outcomes = check_truth(client, sim_host, jobs)
    assert {o.split(":")[1] for o in outcomes} <= {"sent", "duplicate"}, outcomes
    # The skewed worker's clock really was off (it said so at start, and SendCloud's 461 made
    # its client re-sync), and it did run jobs.
    skewed_log = skewed.log_path.read_text(errors="replace")
    skew = re.search(r"Redis's clock is ([-+][0-9.]+) s", skewed_log)
    assert skew is not None and abs(float(skew[1]) + offset_hours * 3600) < 60, logs()
    assert "sendcloud.clock_resynced" in skewed_log and "job.finished" in skewed_log, logs()
    print(f"clock {offset_hours:+d} h: {len(jobs)} jobs, {sim_host.count()} sends, "
          f"{dict(outcomes)}")


def test_codes_whose_replies_are_lost_before_they_expire(
    chaos_size: ChaosSize, chaos_redis_url: str, sim_host: SimHost, tmp_path: Path
) -> None:
    """A code whose reply was lost, and whose next attempt would come after its expiry, may
    have been sent: it ends ``needs_review``, never ``expired``. One refused with a 501 (which
    SendCloud did not take) ends ``expired``."""
    sim_host.admin.set_faults("/smsapi/sendCode", latency=0.2, drop_after_accept_rate=0.3,
                              server_error_rate=0.3)
    client = redis.Redis.from_url(chaos_redis_url)
    producer = Producer(redis_url=chaos_redis_url)
    codes = {}
    for i in range(chaos_size.codes // 2):
        phone = mainland(900_000_000 + i)
        codes[producer.send_code(phone, f"{300000 + i}", sign_id=1, expires_in=120)] = [phone]
    producer.close()
    # Every code gets its first attempt well inside its 120 s (the queue drains in seconds),
    # and every retry would come at least 300 s later (backoff is half its step and more):
    # after expiry, so each failed first attempt decides the code's outcome at once.
    env = worker_env(chaos_redis_url, sim_host.url, **{
        **SETTINGS, "SENDCLOUD_RETRY_BASE_DELAY": "600", "SENDCLOUD_RETRY_MAX_DELAY": "600",
    })
    codes_group = WorkerGroup("codes", worker_command("codes", processes=1, threads=8), env,
                              tmp_path / "codes.log")
    reconcile = reconciler_group(env, tmp_path / "reconcile.log")
    with worker_groups(codes_group, reconcile):
        assert wait_for(lambda: {r["key"] for r in results(client)} >= set(codes),
                        chaos_size.deadline, interval=0.5), codes_group.log_tail()
    outcomes = check_truth(client, sim_host, codes)
    sent = Counter((rid, phone) for _, phone, rid, _ in sim_host.entries())
    for record in results(client):
        if record["outcome"] == "needs_review":
            # Every one of them was taken by SendCloud (its reply was dropped after the send).
            rid = request_id(client, record["key"])
            assert sent[(rid, codes[record["key"]][0])] == 1, record
    assert outcomes["code:needs_review"] > 0 and outcomes["code:expired"] > 0, outcomes
    print(f"lost replies, then expiry: {len(codes)} codes, {sim_host.count()} sends, "
          f"{dict(outcomes)}")
