"""Campaign benchmark: enqueueing a million numbers, and draining them through real workers.

Usage: ``.venv/bin/python -m bench.campaign [--n 1000000] [--latency 0.1] [--skip-drain]``

A throwaway redis-server; the simulator over HTTP in a child process; the Procfile's ``worker``
entry (``dramatiq worker.app --processes 2 --threads 8``) as a process group. Measured:

* enqueue: ``start_campaign`` reading a file of ``--n`` lines (0.1 % invalid, 0.1 % repeated)
  in a child process: seconds and peak RSS (``ru_maxrss``). The baseline, in another child of
  the same run, reads the same file, cuts it into the same 2000-line chunks without validating or
  deduplicating, and enqueues each as the same SMS message with ``broker.enqueue``. The ratios
  to it are what to compare across machines; absolute times on this shared machine are noisy.
* drain: the campaign's chunks sent by the workers to the simulator answering ``/smsapi/send``
  after ``--latency`` seconds, from the first chunk claimed to the campaign's ``finished_at``
  (both stamped in Redis), against the ideal ``ceil(N / 2000) * latency / (processes *
  threads)``; and how often the simulator's ledger holds each number (must be exactly once).

Writes bench/results/campaign.json and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    REPO,
    TEMPLATE_ID,
    SimHost,
    Target,
    WorkerGroup,
    common_arguments,
    drain_seconds,
    log_dir,
    rabbitmq_vhost,
    report,
    throwaway_redis,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)

CAMPAIGN_ID = "bench"
CHUNK = 2000


def write_numbers(path: Path, count: int, seed: int = 1) -> None:
    """``count`` lines: mostly distinct mainland numbers, 0.1 % invalid, 0.1 % repeats."""
    rnd = random.Random(seed)
    with path.open("w") as out:
        recent: list[str] = []
        for i in range(count):
            if i % 1000 == 500:
                line = f"12-{i}"
            elif i % 1000 == 999 and recent:
                line = rnd.choice(recent)
            else:
                line = f"1{rnd.randint(3, 9)}{rnd.randrange(10**9):09d}"
                if len(recent) < 1000:
                    recent.append(line)
            out.write(line + "\n")


# -- children: one enqueue each, measured from inside ------------------------------------------

def child(mode: str, redis_url: str, path: str) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from producers import Producer, start_campaign
    from producers.contract import SEND_SMS_ACTOR, SMS_QUEUE

    broker = RedisBroker(url=redis_url)
    # The campaign on RabbitMQ (bench.campaign --broker rabbitmq): its queues in the vhost.
    amqp = os.environ.get("SENDCLOUD_BROKER_URL", "")
    started = time.perf_counter()
    summary: dict[str, Any]
    with open(path) as lines:
        if mode == "campaign":
            producer = (Producer(redis_url=redis_url, broker_url=amqp) if amqp
                        else Producer(broker=broker))
            result = start_campaign(CAMPAIGN_ID, TEMPLATE_ID, lines, producer=producer)
            summary = {"valid": result.valid, "invalid": result.invalid,
                       "duplicates": result.duplicates, "chunks": result.chunks}
        elif mode == "report":
            from producers import campaign_report

            with open(os.devnull, "w") as out:
                rows = campaign_report(CAMPAIGN_ID, out, producer=Producer(broker=broker))
            summary = {"rows": rows}
        elif mode == "validate":
            # The campaign's per-number work alone: normalise and deduplicate, no Redis.
            from producers.validation import normalize_mainland

            seen: set[int] = set()
            for line in lines:
                phone = normalize_mainland(line.strip())
                if phone is not None:
                    seen.add(int(phone))
            summary = {"valid": len(seen)}
        else:
            chunks = 0
            phones: list[str] = []
            for line in lines:
                phones.append(line.strip())
                if len(phones) == CHUNK:
                    _enqueue_raw(broker, dramatiq, SMS_QUEUE, SEND_SMS_ACTOR, phones, chunks)
                    chunks, phones = chunks + 1, []
            if phones:
                _enqueue_raw(broker, dramatiq, SMS_QUEUE, SEND_SMS_ACTOR, phones, chunks)
                chunks += 1
            summary = {"chunks": chunks}
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, **summary}))


def _enqueue_raw(broker: Any, dramatiq: Any, queue: str, actor: str, phones: list[str],
                 index: int) -> None:
    payload = {"key": f"raw:{index}", "template_id": TEMPLATE_ID, "phones": phones,
               "vars": None, "msg_type": 0, "tag": None, "enqueued_at": time.time(),
               "campaign_id": "raw", "chunk_index": index}
    broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=actor, args=(payload,),
                                    kwargs={}, options={}))


def run_child(mode: str, redis_url: str, path: Path, amqp: str = "") -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "SENDCLOUD_BROKER_URL"}
    env.update({"PYTHONPATH": str(REPO), **({"SENDCLOUD_BROKER_URL": amqp} if amqp else {})})
    out = subprocess.run([sys.executable, "-m", "bench.campaign", "--child", mode, redis_url,
                          str(path)], cwd=REPO, env=env, check=True, capture_output=True,
                         text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- drain ----------------------------------------------------------------------------------------

def drain(redis_url: str, latency: float, processes: int, threads: int, deadline: float,
          logs: Path, amqp: str = "") -> dict[str, Any]:
    from producers.campaign import campaign_key
    from producers.contract import SMS_QUEUE

    client = redis.Redis.from_url(redis_url)
    meta = campaign_key(CAMPAIGN_ID)
    chunks = int(client.hget(meta, "chunks") or 0)
    with SimHost(latency={"/smsapi/send": latency}) as sim:
        group = WorkerGroup(
            "worker",
            worker_command("worker", processes=processes, threads=threads, queues=[SMS_QUEUE]),
            worker_env(redis_url, sim.url, LOG_LEVEL="WARNING",
                       **({"SENDCLOUD_BROKER_URL": amqp} if amqp else {})),
            logs / "worker.log",
        )
        with worker_groups(group):
            if not wait_for(lambda: client.hexists(meta, "finished_at"), deadline, 0.2):
                raise RuntimeError(f"not drained in {deadline} s: {client.hgetall(meta)}\n"
                                   f"{group.log_tail()}")
        delivered, most = sim.spread()
    seconds = drain_seconds(client, CAMPAIGN_ID)
    ideal = chunks * latency / (processes * threads)
    return {
        "drain_seconds": round(seconds, 2), "drain_ideal_seconds": round(ideal, 3),
        "drain_ratio_to_ideal": round(seconds / ideal, 2) if ideal else None,
        "drain_chunks": chunks, "drain_concurrency": processes * threads,
        "delivered_numbers": delivered,
        "max_deliveries_per_number": most,
        "accepted": int(client.hget(meta, "accepted") or 0),
    }


def _redis_mb(client: redis.Redis) -> float:
    return round(int(client.info("memory")["used_memory"]) / 2**20, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=1_000_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="after the drain, time the CSV report of every number (a child)")
    parser.add_argument("--drain-deadline", type=float, default=900.0)
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="rabbitmq: the campaign with its queues in RabbitMQ against the "
                        "same on Redis, same run")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.broker == "rabbitmq":
        return rabbitmq_main(args)
    logs = log_dir(args.log_dir)
    with throwaway_redis() as redis_url, tempfile.TemporaryDirectory() as tmp:
        base = redis_url.rsplit("/", 1)[0]
        path = Path(tmp) / "numbers.txt"
        write_numbers(path, args.n)
        baseline = run_child("baseline", f"{base}/1", path)
        validate = run_child("validate", f"{base}/1", path)
        client = redis.Redis.from_url(f"{base}/1")
        client.flushdb()  # the baseline's messages; what Redis holds next is the campaign's
        empty = int(client.info("memory")["used_memory"])
        campaign = run_child("campaign", f"{base}/0", path)
        figures: dict[str, Any] = {
            "enqueue_seconds": round(campaign["seconds"], 2),
            "enqueue_peak_rss_mb": round(campaign["peak_rss_mb"], 1),
            "baseline_enqueue_seconds": round(baseline["seconds"], 2),
            "baseline_peak_rss_mb": round(baseline["peak_rss_mb"], 1),
            "enqueue_time_ratio": round(campaign["seconds"] / baseline["seconds"], 2),
            "enqueue_rss_ratio": round(campaign["peak_rss_mb"] / baseline["peak_rss_mb"], 2),
            "validate_dedupe_seconds": round(validate["seconds"], 2),
            "validate_share_of_enqueue": round(validate["seconds"] / campaign["seconds"], 2),
            "valid": campaign["valid"], "invalid": campaign["invalid"],
            "duplicates": campaign["duplicates"], "chunks": campaign["chunks"],
        }
        figures["redis_mb_after_enqueue"] = _redis_mb(client)
        if not args.skip_drain:
            figures.update(drain(f"{base}/0", args.latency, args.processes, args.threads,
                                 args.drain_deadline, logs))
            figures["redis_mb_after_drain"] = _redis_mb(client)
            figures["redis_peak_mb"] = round(
                int(client.info("memory")["used_memory_peak"]) / 2**20, 1)
            if args.report:
                report_run = run_child("report", f"{base}/0", path)
                figures["report_seconds"] = round(report_run["seconds"], 2)
                figures["report_peak_rss_mb"] = round(report_run["peak_rss_mb"], 1)
                figures["report_rows"] = report_run["rows"]
            # Everything the campaign left: chunk records, stream entries, phones, queues.
            held = int(client.info("memory")["used_memory"]) - empty
            figures["redis_bytes_per_number_after_drain"] = round(held / args.n, 1)
    targets = [Target("enqueue_peak_rss_mb", "<", 200)]
    if not args.skip_drain:
        targets += [Target("max_deliveries_per_number", "<=", 1),
                    Target("delivered_numbers", ">=", campaign["valid"]),
                    Target("redis_bytes_per_number_after_drain", "<=", 64),
                    Target("drain_ratio_to_ideal", "<=", 2.0)]
        if args.report:
            targets.append(Target("report_peak_rss_mb", "<", 200))
    report("campaign",
           {"n": args.n, "latency": args.latency, "processes": args.processes,
            "threads": args.threads, "logs": str(logs)},
           figures, targets, {"campaign_child": campaign, "baseline_child": baseline,
            "validate_child": validate},
           results_dir=args.results_dir)
    return 0


def rabbitmq_main(args: argparse.Namespace) -> int:
    """The same campaign enqueued and drained twice in one run, with the queues in Redis, then
    in RabbitMQ (a vhost of the run's own); ratios are RabbitMQ's against Redis's."""
    logs = log_dir(args.log_dir)
    sides: dict[str, dict[str, Any]] = {}
    with throwaway_redis() as redis_url, rabbitmq_vhost("bench.campaign") as vhost, \
            tempfile.TemporaryDirectory() as tmp:
        base = redis_url.rsplit("/", 1)[0]
        path = Path(tmp) / "numbers.txt"
        write_numbers(path, args.n)
        for side, db, url in (("redis", 0, ""), ("rabbitmq", 1, vhost.url)):
            enqueued = run_child("campaign", f"{base}/{db}", path, url)
            drained = drain(f"{base}/{db}", args.latency, args.processes, args.threads,
                            args.drain_deadline, logs / side, url)
            sides[side] = {"enqueue_seconds": round(enqueued["seconds"], 2), **drained}
    redis_side, rabbit_side = sides["redis"], sides["rabbitmq"]
    figures: dict[str, Any] = {
        "redis_enqueue_seconds": redis_side["enqueue_seconds"],
        "rabbitmq_enqueue_seconds": rabbit_side["enqueue_seconds"],
        # Time ratios: above 1, RabbitMQ takes longer.
        "enqueue_time_ratio": round(rabbit_side["enqueue_seconds"]
                                    / redis_side["enqueue_seconds"], 2),
        "redis_drain_seconds": redis_side["drain_seconds"],
        "rabbitmq_drain_seconds": rabbit_side["drain_seconds"],
        "drain_time_ratio": round(rabbit_side["drain_seconds"] / redis_side["drain_seconds"], 2),
        "redis_drain_ratio_to_ideal": redis_side["drain_ratio_to_ideal"],
        "rabbitmq_drain_ratio_to_ideal": rabbit_side["drain_ratio_to_ideal"],
        "max_deliveries_per_number": max(s["max_deliveries_per_number"] for s in sides.values()),
        "delivered_numbers_each": min(s["delivered_numbers"] for s in sides.values()),
    }
    report("campaign-rabbitmq",
           {"n": args.n, "latency": args.latency, "processes": args.processes,
            "threads": args.threads, "broker": "rabbitmq", "logs": str(logs)},
           figures, [Target("max_deliveries_per_number", "<=", 1)], {"sides": sides},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
