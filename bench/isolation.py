"""Isolation: verification-code latency when idle and while a large campaign drains.

Usage: ``.venv/bin/python -m bench.isolation [--n 1000000] [--codes 200] [--interval 0.05]``

A throwaway redis-server, the simulator in a child process (``--sms-latency`` seconds on
``/smsapi/send``, none on ``/smsapi/sendCode``) and the Procfile's ``worker`` and ``codes``
entries as separate process groups, exactly as the Procfile runs them.

1. idle: ``--codes`` codes, one every ``--interval`` seconds, nothing else running;
2. loaded: a campaign of ``--n`` numbers is started from another process (as a web app's
   back office would), and while it drains a code is sent every ``--interval`` seconds.

A code's latency is the simulator ledger's ``at`` (when the send took effect) minus the time
just before ``producers.send_code`` was called; both clocks are this machine's. Figures: p50 and
p99 of each phase, and their ratio (target: loaded p99 < 250 ms).

``--worker-timeout MS`` sets Dramatiq's ``dramatiq_worker_timeout`` for the codes group: the
longest a consumer with an empty queue sleeps between polls (Dramatiq's default is 1000 ms,
reached after a few empty polls), which bounds how late an idle worker notices a new code.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from contextlib import nullcontext
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
    percentile,
    report,
    throwaway_redis,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer, campaign_status, start_campaign
from producers.idempotency import record_key
from worker.jobs.idempotency import deployment_namespace, send_request_id

CAMPAIGN_ID = "isolation-bench"
SIGN_ID = 1
# Code phones come from a range of their own, apart from the campaign's numbers.
CODE_PHONES_FROM = 900_000_000
WARM_UP_FROM = 990_000_000 - CODE_PHONES_FROM


def _enqueue_campaign(redis_url: str, n: int) -> None:
    """Child process: start the campaign (the enqueue streams; workers drain as it goes)."""
    producer = Producer(redis_url=redis_url)
    try:
        start_campaign(CAMPAIGN_ID, TEMPLATE_ID, (mainland(i) for i in range(n)),
                       producer=producer)
    finally:
        producer.close()


#: Each code job's key, by the sendRequestId the simulator records it under.
_KEYS: dict[str, str] = {}


def _send_code(producer: Producer, index: int, sent: dict[str, float]) -> None:
    started = time.time()
    key = producer.send_code(mainland(CODE_PHONES_FROM + index), "123456", sign_id=SIGN_ID)
    # The workers share this Redis, so they give the job the deployment's namespace.
    rid = send_request_id(key, deployment_namespace(producer.redis, ""))
    _KEYS[rid] = key
    sent[rid] = started


def _latencies_ms(sent: dict[str, float], delivered: dict[str | None, float]) -> list[float]:
    return [(delivered[rid] - t0) * 1000 for rid, t0 in sent.items() if rid in delivered]


def _claimed_at(client: redis.Redis, rids: Sequence[str]) -> dict[str | None, float]:
    """When a worker first claimed each job (its idempotency record's first_attempt_at),
    by sendRequestId."""
    with client.pipeline(transaction=False) as pipe:
        for rid in rids:
            pipe.hget(record_key(_KEYS[rid]), "first_attempt_at")
        values = pipe.execute()
    return {rid: float(value) for rid, value in zip(rids, values, strict=True) if value}


def _summary(latencies: Sequence[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"count": len(latencies), "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1), "max_ms": round(max(latencies), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=1_000_000)
    parser.add_argument("--codes", type=int, default=200, help="codes sent in the idle phase")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between codes")
    parser.add_argument("--sms-latency", type=float, default=0.1,
                        help="simulator latency of /smsapi/send, seconds")
    parser.add_argument("--own-code-simulator", action="store_true",
                        help="serve codes from a second simulator process, so the bulk sends "
                        "do not queue the codes behind them inside one simulator")
    parser.add_argument("--worker-timeout", type=int, default=100, metavar="MS",
                        help="dramatiq_worker_timeout of the codes group (default: 100, as the "
                        "Procfile's codes entry sets it)")
    args = parser.parse_args(argv)
    logs = log_dir(args.log_dir)
    idle: dict[str, float] = {}
    loaded: dict[str, float] = {}
    campaign: dict[str, Any] = {}
    with (throwaway_redis() as redis_url,
          SimHost(latency={"/smsapi/send": args.sms_latency}) as bulk_sim,
          (SimHost() if args.own_code_simulator else nullcontext(bulk_sim)) as sim):
        client = redis.Redis.from_url(redis_url)
        env = worker_env(redis_url, bulk_sim.url)
        codes_env = worker_env(redis_url, sim.url)
        if args.worker_timeout is not None:
            codes_env["dramatiq_worker_timeout"] = str(args.worker_timeout)
        worker = WorkerGroup("worker", worker_command("worker"), env, logs / "worker.log")
        codes = WorkerGroup("codes", worker_command("codes"), codes_env, logs / "codes.log")
        producer = Producer(redis_url=redis_url)
        with worker_groups(worker, codes):
            worker.wait_ready(client)
            codes.wait_ready(client)
            # Warm-up, not counted: each worker thread makes its HTTP client (a TLS context)
            # on its first job; a long-running worker has long done so.
            warm: dict[str, float] = {}
            for i in range(2 * codes.threads * codes.processes):
                _send_code(producer, WARM_UP_FROM + i, warm)
            if not wait_for(lambda: sim.count("code") >= len(warm), 60):
                raise RuntimeError(f"warm-up codes not delivered:\n{codes.log_tail()}")
            for i in range(args.codes):
                _send_code(producer, i, idle)
                time.sleep(args.interval)
            if not wait_for(lambda: sim.count("code") >= len(warm) + len(idle), 60):
                raise RuntimeError(f"idle codes not all delivered:\n{codes.log_tail()}")

            context = multiprocessing.get_context("spawn")
            enqueuer = context.Process(target=_enqueue_campaign, args=(redis_url, args.n))
            started = time.time()
            enqueuer.start()
            if not wait_for(lambda: bulk_sim.count("sms") > 0, 120):
                raise RuntimeError(f"the campaign never started sending:\n{worker.log_tail()}")
            drain_started = time.time()
            index = args.codes
            # At least one loaded code, even when a small campaign drains between two polls.
            while not loaded or not campaign_status(CAMPAIGN_ID, producer=producer).finished:
                _send_code(producer, index, loaded)
                index += 1
                time.sleep(args.interval)
                if enqueuer.exitcode not in (None, 0):
                    raise RuntimeError(f"the campaign enqueue failed ({enqueuer.exitcode})")
            finished = time.time()
            enqueuer.join(timeout=60)
            expected = len(warm) + len(idle) + len(loaded)
            if not wait_for(lambda: sim.count("code") >= expected, 120):
                raise RuntimeError(f"loaded codes not all delivered:\n{codes.log_tail()}")
            status = campaign_status(CAMPAIGN_ID, producer=producer)
            campaign = {"numbers": args.n, "accepted": status.accepted, "chunks": status.chunks,
                        "delivered_sms": bulk_sim.count("sms"),
                        "start_to_finish_s": round(finished - started, 2),
                        "drain_s": round(finished - drain_started, 2)}
        producer.close()
        delivered = {rid: at for _, _, rid, at in sim.entries("code")}
        claimed = _claimed_at(client, [*idle, *loaded])
        client.close()
    idle_stats = _summary(_latencies_ms(idle, delivered))
    loaded_stats = _summary(_latencies_ms(loaded, delivered))
    # Where a loaded code waits: in the queue (enqueue -> a worker claims it) or in the send
    # (claim -> the simulator took it: HTTP, the simulator's own queueing and CPU).
    pickup = _summary(_latencies_ms(loaded, claimed))
    sending = _summary([(delivered[rid] - claimed[rid]) * 1000 for rid in loaded
                        if rid in delivered and rid in claimed])
    figures: dict[str, Any] = {
        "idle_p50_ms": idle_stats["p50_ms"],
        "idle_p99_ms": idle_stats["p99_ms"],
        "loaded_p50_ms": loaded_stats["p50_ms"],
        "loaded_p99_ms": loaded_stats["p99_ms"],
        "loaded_codes": loaded_stats["count"],
        "loaded_pickup_p99_ms": pickup["p99_ms"],
        "loaded_send_p99_ms": sending["p99_ms"],
        "p99_loaded_over_idle": (round(loaded_stats["p99_ms"] / idle_stats["p99_ms"], 2)
                                 if loaded_stats["p99_ms"] and idle_stats["p99_ms"] else None),
        "campaign_numbers": args.n,
        "campaign_drain_s": campaign["drain_s"],
    }
    report("isolation",
           {"n": args.n, "codes": args.codes, "interval": args.interval,
            "sms_latency": args.sms_latency, "worker_timeout_ms": args.worker_timeout,
            "own_code_simulator": args.own_code_simulator,
            "worker": " ".join(worker.argv[3:]), "codes_command": " ".join(codes.argv[3:]),
            "logs": str(logs)},
           figures, [Target("loaded_p99_ms", "<", 250)],
           {"idle": idle_stats, "loaded": loaded_stats, "loaded_pickup": pickup,
            "loaded_send": sending, "campaign": campaign},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
