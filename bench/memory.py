"""Memory: RSS of each worker process as many jobs run; it must level off, not keep growing.

Usage: ``.venv/bin/python -m bench.memory [--n 100000]``

The Procfile's ``worker`` entry (as it is: its processes and threads) drains ``--n`` one-phone
``send_sms`` jobs against the simulator (a child process, zero latency) and a throwaway
redis-server. Jobs are enqueued by another process while the workers run, as a web app would.
VmRSS of every dramatiq worker process (``/proc/<pid>/status``) is sampled every
``--sample-every`` seconds with the number of jobs done (the simulator's ledger).

Figures: each process's RSS at 10%, 50% and 100% of the jobs (the largest of the processes),
and the growth from 50% to 100%: ``growth_50_100_pct`` is the largest of the processes' growth
(target < 10%: a leak of even 1 KiB per job would add ~50 MiB over the second half at the
default size).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.common import (
    TEMPLATE_ID,
    SimHost,
    Target,
    WorkerGroup,
    common_arguments,
    log_dir,
    mainland,
    report,
    rss_kib,
    throwaway_redis,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer

MARKS = (10, 50, 100)


def _enqueue(redis_url: str, n: int) -> None:
    """Child process: n one-phone SMS jobs."""
    producer = Producer(redis_url=redis_url)
    try:
        for i in range(n):
            producer.send_sms(TEMPLATE_ID, [mainland(i)], {"name": "bench"})
    finally:
        producer.close()


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=100_000)
    parser.add_argument("--sample-every", type=float, default=0.5, metavar="S")
    args = parser.parse_args(argv)
    logs = log_dir(args.log_dir)
    samples: list[dict[str, Any]] = []
    with throwaway_redis() as redis_url, SimHost() as sim:
        client = redis.Redis.from_url(redis_url)
        group = WorkerGroup("worker", worker_command("worker"), worker_env(redis_url, sim.url),
                            logs / "worker.log")
        with worker_groups(group):
            group.wait_ready(client)
            pids = group.worker_pids()
            enqueuer = multiprocessing.get_context("spawn").Process(
                target=_enqueue, args=(redis_url, args.n))
            enqueuer.start()
            started = time.monotonic()
            deadline = started + 600 + args.n / 50
            while True:
                done = sim.count("sms")
                samples.append({"t": round(time.monotonic() - started, 2), "done": done,
                                "rss_kib": {str(p): rss_kib(p) for p in pids}})
                if done >= args.n:
                    break
                if time.monotonic() > deadline or group.process is None or \
                        group.process.poll() is not None:
                    raise RuntimeError(f"{done}/{args.n} jobs done:\n{group.log_tail()}")
                if enqueuer.exitcode not in (None, 0):
                    raise RuntimeError(f"the enqueue failed ({enqueuer.exitcode})")
                time.sleep(args.sample_every)
            enqueuer.join(timeout=60)
        client.close()
    at_mark: dict[int, dict[str, int | None]] = {}
    for mark in MARKS:
        wanted = args.n * mark / 100
        sample = next(s for s in samples if s["done"] >= wanted)
        at_mark[mark] = sample["rss_kib"]
    growth = {
        pid: round((at_mark[100][pid] or 0) / rss50 * 100 - 100, 2)
        for pid, rss50 in at_mark[50].items() if rss50
    }
    figures: dict[str, Any] = {
        f"rss_at_{mark}pct_mib": max((_mib(v) or 0.0) for v in at_mark[mark].values())
        for mark in MARKS
    }
    figures["growth_50_100_pct"] = max(growth.values()) if growth else None
    figures["processes"] = len(pids)
    step = max(1, len(samples) // 200)
    report("memory",
           {"n": args.n, "command": " ".join(group.argv[3:]), "logs": str(logs)},
           figures, [Target("growth_50_100_pct", "<", 10)],
           {"rss_mib_by_process": {str(m): {p: _mib(v) for p, v in at_mark[m].items()}
                                   for m in MARKS},
            "growth_50_100_pct_by_process": growth, "samples": samples[::step]},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
