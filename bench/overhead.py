"""Worker overhead: ``send_code`` jobs/second through the real worker vs. a bare Dramatiq actor.

Usage: ``.venv/bin/python -m bench.overhead [--n 5000] [--processes 1] [--threads 8]``

Both sides run in the same run, against the same simulator (a child process, zero latency,
over HTTP) and a throwaway redis-server, with the Procfile's ``codes`` command at the same
processes x threads:

* ours: ``dramatiq worker.app`` (idempotency claim/finish, result records, logging at INFO,
  Prometheus metrics), jobs enqueued with ``producers.send_code``;
* bare: ``dramatiq bench.bare_app`` (:mod:`bench.bare_app`), the same signed POST and nothing else.

Each side's n jobs are enqueued first; the rate is (n - 1) / (last - first delivery), read from
the simulator's ledger, so worker start-up is not counted. The figure is ``ratio`` = ours /
bare (target >= 0.8), the median over ``--rounds`` rounds (bare and ours alternate).

Where the time goes, per job and side: CPU milliseconds of the worker processes, redis-server
and the simulator (from /proc, over the counted part of the drain); the worker's kernel part of
it and its threads' context switches (each wait for the GIL or a socket is one); Redis commands
from ``INFO commandstats`` (script calls, and every command with the scripts' inner ones); and
a single-threaded in-process run of each side's job function alone (no Dramatiq,
``--profile-n`` jobs), its CPU per job split by a cProfile CPU-time profile into Redis calls,
the HTTP call, logging, signing and the rest. The worker's CPU per job minus the job
function's is what the middleware (metrics, job context, time limit) and the broker's
fetch/ack cost.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from bench.common import (
    SIM_CREDENTIALS,
    SimHost,
    Target,
    WorkerGroup,
    common_arguments,
    context_switches,
    cpu_seconds,
    log_dir,
    mainland,
    rabbitmq_vhost,
    report,
    system_cpu_seconds,
    throwaway_redis,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer
from producers.contract import SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash

CODE = "123456"
SIGN_ID = 1
# Commands the bench itself sends while waiting; not part of either side's cost.
_OBSERVER_COMMANDS = frozenset({"info", "config|resetstat", "config", "xlen", "zcount", "ping",
                                "client|setinfo", "client", "hello", "select", "flushdb"})


def _code_payload(i: int) -> dict[str, Any]:
    now = time.time()
    return {"key": f"bare-{i}", "phone": mainland(i), "code": CODE, "sign_id": SIGN_ID,
            "sign_name": None, "msg_type": 0, "enqueued_at": now, "expires_at": now + 600}


def enqueue(side: str, redis_url: str, n: int, broker_url: str = "") -> None:
    if side in ("ours", "rabbitmq"):
        producer = Producer(redis_url=redis_url, broker_url=broker_url)
        try:
            for i in range(n):
                producer.send_code(mainland(i), CODE, sign_id=SIGN_ID)
        finally:
            producer.close()
        return
    from bench.bare_app import ACTOR, QUEUE

    broker = RedisBroker(url=redis_url)
    try:
        for i in range(n):
            broker.enqueue(Message(queue_name=QUEUE, actor_name=ACTOR,
                                   args=(_code_payload(i),), kwargs={}, options={}))
    finally:
        broker.close()


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    calls: dict[str, int] = {}
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_")
        if command not in _OBSERVER_COMMANDS:
            calls[command] = int(values["calls"])
    return calls


def run_side(side: str, *, redis_url: str, sim: SimHost, n: int, processes: int,
             threads: int, logs: Path, broker_url: str = "") -> dict[str, Any]:
    """Drain n pre-enqueued jobs with one worker group; its rate and Redis commands per job.
    ``rabbitmq``: our worker with the queues in RabbitMQ (``broker_url``)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # our own throwaway server
    sim.admin.reset()
    enqueue(side, redis_url, n, broker_url)
    if side in ("ours", "rabbitmq"):
        argv = worker_command("codes", processes=processes, threads=threads)
    else:
        from bench.bare_app import QUEUE

        argv = worker_command("codes", processes=processes, threads=threads,
                              module="bench.bare_app", queues=[QUEUE])
    env = worker_env(redis_url, sim.url, SENDCLOUD_BROKER_URL=broker_url)
    group = WorkerGroup(side, argv, env, logs / f"{side}.log")
    redis_pid = int(client.info("server")["process_id"])
    client.config_resetstat()
    deadline = 120 + n / 20
    # The first tenth warms up (worker start, one TLS context and connection per thread): the
    # rate and CPU per job are taken over the rest.
    warm = max(1, n // 10)

    def finished() -> bool:
        if sim.count("code") < n:
            return False
        return side == "bare" or client.xlen(SMS_RESULTS_STREAM) >= n

    with worker_groups(group):
        warmed = wait_for(lambda: sim.count("code") >= warm, deadline, interval=0.05)
        pids = {"worker": group.worker_pids(), "redis": [redis_pid], "simulator": [sim.pid or 0]}
        cpu_before = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        sys_before = sum(system_cpu_seconds(p) for p in pids["worker"])
        switches_before = sum(context_switches(p) for p in pids["worker"])
        counted_from = sim.count("code")
        done = warmed and wait_for(finished, deadline, interval=0.2)
        cpu = {name: sum(cpu_seconds(p) for p in ps) - cpu_before[name]
               for name, ps in pids.items()}
        worker_sys = sum(system_cpu_seconds(p) for p in pids["worker"]) - sys_before
        switches = sum(context_switches(p) for p in pids["worker"]) - switches_before
        calls = _command_calls(client)
    client.close()
    if not done:
        raise RuntimeError(f"{side}: {sim.count('code')}/{n} delivered within {deadline:.0f} s:"
                           f"\n{group.log_tail()}")
    times = sorted(row[3] for row in sim.entries("code"))
    span = times[-1] - times[counted_from - 1]
    counted = len(times) - counted_from
    script_calls = calls.get("evalsha", 0) + calls.get("eval", 0)
    return {
        "delivered": len(times),
        "counted": counted,
        "span_s": round(span, 3),
        "jobs_per_s": round(counted / span, 1) if span > 0 else None,
        "cpu_ms_per_job": {name: round(seconds / counted * 1000, 3)
                           for name, seconds in cpu.items()},
        "worker_sys_ms_per_job": round(worker_sys / counted * 1000, 3),
        "worker_switches_per_job": round(switches / counted, 1),
        "script_calls_per_job": round(script_calls / n, 2),
        "redis_commands_per_job": round(sum(calls.values()) / n, 2),
        "commands_per_job": {k: round(v / n, 2) for k, v in sorted(calls.items()) if v >= n / 10},
    }


# -- in-process profile ------------------------------------------------------------------------

# (category, filename suffix, function name): cumulative time of these entry points. They do
# not nest in one another on the job path, so their sum is at most the total.
_CATEGORIES = (
    ("redis", "redis/client.py", "execute_command"),
    ("redis", "redis/client.py", "execute"),
    # The job ledger's scripts run on a connection of each thread's (PinnedScripts).
    ("redis", "producers/replication.py", "_execute"),
    ("http", "httpx/_client.py", "request"),
    # Ours hands its request straight to httpx's transport.
    ("http", "worker/sendcloud/client.py", "_send"),
    ("logging", "structlog/_base.py", "_proxy_to_logger"),
    ("signing", "worker/sendcloud/signing.py", "sign"),
)


def _attribute(profile: cProfile.Profile, cpu_ms: float) -> dict[str, float]:
    """``cpu_ms`` (the unprofiled CPU per job) split in the profile's proportions.

    cProfile's own overhead inflates every call, so its absolute times are not used.
    """
    stats = pstats.Stats(profile, stream=io.StringIO())
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    spent = dict.fromkeys((c for c, _, _ in _CATEGORIES), 0.0)
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        for category, suffix, name in _CATEGORIES:
            if function == name and filename.endswith(suffix):
                spent[category] += row[3]
    spent["other"] = max(0.0, total - sum(spent.values()))
    return {f"{k}_cpu_ms": round(v / total * cpu_ms, 3) for k, v in spent.items()}


def _timed(call: Callable[[int], object], jobs: int) -> tuple[float, float, cProfile.Profile]:
    """Wall and CPU ms per job unprofiled (first half), and a CPU-time profile of the second half.

    The process runs nothing else (the simulator and Redis are other processes), so its CPU
    time is this thread's: the job path's own cost, without the waits for Redis and HTTP.
    """
    half = jobs // 2
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(half):
        call(i)
    wall = (time.perf_counter() - wall) / max(half, 1) * 1000
    cpu = (time.process_time() - cpu) / max(half, 1) * 1000
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for i in range(half, jobs):
        call(i)
    profile.disable()
    return wall, cpu, profile


def profile_job_paths(redis_url: str, sim: SimHost, jobs: int, logs: Path) -> dict[str, Any]:
    """One thread, one job at a time: the job function of each side, without Dramatiq."""
    from producers.contract import SEND_CODE_ACTOR
    from worker.jobs.codes import CodeJob
    from worker.jobs.runner import JobRunner
    from worker.logs import configure_logging
    from worker.runtime import Runtime
    from worker.sendcloud.client import SendCloudClient
    from worker.settings import Settings

    env = {**SIM_CREDENTIALS, "REDIS_URL": redis_url, "SENDCLOUD_BASE_URL": sim.url}
    os.environ.update(env)
    settings = Settings.from_env(env).require_credentials()
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    sim.admin.reset()
    with (logs / "profile.log").open("w") as log_stream:
        configure_logging(settings, stream=log_stream)
        runtime = Runtime(settings, client, lambda: SendCloudClient(settings))
        runner, job = JobRunner(runtime), CodeJob()
        store = IdempotencyStore(client)
        payloads: list[dict[str, Any]] = []
        for i in range(jobs):
            payload = {**_code_payload(100_000 + i), "key": f"code-profile-{i}"}
            store.reserve(payload["key"], payload_hash(payload), "code")
            payloads.append(payload)

        def ours(i: int) -> None:
            runner.run(job, payloads[i], uuid.uuid4().hex)

        bare_module = importlib.import_module("bench.bare_app")
        ours_wall, ours_cpu, ours_profile = _timed(ours, jobs)
        bare_wall, bare_cpu, bare_profile = _timed(
            lambda i: bare_module.bare_send_code.fn(_code_payload(200_000 + i)), jobs)
    client.close()
    return {
        "actor": SEND_CODE_ACTOR,
        "ours_wall_ms_per_job": round(ours_wall, 3),
        "bare_wall_ms_per_job": round(bare_wall, 3),
        "ours_cpu_ms_per_job": round(ours_cpu, 3),
        "bare_cpu_ms_per_job": round(bare_cpu, 3),
        "ours_profile": _attribute(ours_profile, ours_cpu),
        "bare_profile": _attribute(bare_profile, bare_cpu),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=5000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="bare/ours pairs (median ratio)")
    parser.add_argument("--profile-n", type=int, default=400,
                        help="jobs per side in the in-process profile (0: skip)")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="rabbitmq: our worker on RabbitMQ against ours on Redis, same run")
    args = parser.parse_args(argv)
    if args.broker == "rabbitmq":
        return rabbitmq_main(args)
    logs = log_dir(args.log_dir)
    rounds: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    with throwaway_redis() as redis_url, SimHost() as sim:
        for _ in range(args.rounds):
            sides = {side: run_side(side, redis_url=redis_url, sim=sim, n=args.n,
                                    processes=args.processes, threads=args.threads, logs=logs)
                     for side in ("bare", "ours")}
            rounds.append(sides)
        if args.profile_n > 0:
            profile = profile_job_paths(redis_url, sim, args.profile_n, logs)
    ratios = [r["ours"]["jobs_per_s"] / r["bare"]["jobs_per_s"] for r in rounds]
    last = rounds[-1]
    figures: dict[str, Any] = {
        "ours_jobs_per_s": statistics.median(r["ours"]["jobs_per_s"] for r in rounds),
        "bare_jobs_per_s": statistics.median(r["bare"]["jobs_per_s"] for r in rounds),
        "ratio": round(statistics.median(ratios), 3),
        "ours_script_calls_per_job": last["ours"]["script_calls_per_job"],
        "bare_script_calls_per_job": last["bare"]["script_calls_per_job"],
        "ours_redis_commands_per_job": last["ours"]["redis_commands_per_job"],
        "bare_redis_commands_per_job": last["bare"]["redis_commands_per_job"],
    }
    for side in ("ours", "bare"):
        for name, value in last[side]["cpu_ms_per_job"].items():
            figures[f"{side}_{name}_cpu_ms_per_job"] = value
        figures[f"{side}_worker_sys_ms_per_job"] = last[side]["worker_sys_ms_per_job"]
        figures[f"{side}_worker_switches_per_job"] = last[side]["worker_switches_per_job"]
    if profile:
        for side in ("ours", "bare"):
            figures[f"{side}_job_fn_cpu_ms_per_job"] = profile[f"{side}_cpu_ms_per_job"]
            for name, value in profile[f"{side}_profile"].items():
                figures[f"{side}_job_fn_{name}"] = value
    report("overhead",
           {"n": args.n, "processes": args.processes, "threads": args.threads,
            "rounds": args.rounds, "profile_n": args.profile_n, "logs": str(logs)},
           # Targets (bench/README.md): 0.85 with one process, 0.8 with two.
           figures, [Target("ratio", ">=", 0.85 if args.processes == 1 else 0.8)],
           {"rounds": rounds, "ratios": [round(r, 3) for r in ratios], "profile": profile},
           results_dir=args.results_dir)
    return 0


def rabbitmq_main(args: argparse.Namespace) -> int:
    """Ours with the queues in RabbitMQ (a vhost of the run's own on the machine's RabbitMQ)
    against ours on Redis, alternating in each round; ``ratio`` = RabbitMQ / Redis jobs/s."""
    logs = log_dir(args.log_dir)
    rounds: list[dict[str, Any]] = []
    with rabbitmq_vhost("bench.overhead") as vhost, throwaway_redis() as redis_url, \
            SimHost() as sim:
        for _ in range(args.rounds):
            rounds.append({side: run_side(
                side, redis_url=redis_url, sim=sim, n=args.n, processes=args.processes,
                threads=args.threads, logs=logs, broker_url=url,
            ) for side, url in (("ours", ""), ("rabbitmq", vhost.url))})  # fmt: skip
            vhost.reset()
    ratios = [r["rabbitmq"]["jobs_per_s"] / r["ours"]["jobs_per_s"] for r in rounds]
    last = rounds[-1]
    figures: dict[str, Any] = {
        "rabbitmq_jobs_per_s": statistics.median(r["rabbitmq"]["jobs_per_s"] for r in rounds),
        "redis_jobs_per_s": statistics.median(r["ours"]["jobs_per_s"] for r in rounds),
        "ratio": round(statistics.median(ratios), 3),
        "rabbitmq_redis_commands_per_job": last["rabbitmq"]["redis_commands_per_job"],
        "redis_redis_commands_per_job": last["ours"]["redis_commands_per_job"],
    }
    for side, name in (("rabbitmq", "rabbitmq"), ("ours", "redis")):
        for part, value in last[side]["cpu_ms_per_job"].items():
            figures[f"{name}_{part}_cpu_ms_per_job"] = value
    report("overhead-rabbitmq",
           {"n": args.n, "processes": args.processes, "threads": args.threads,
            "rounds": args.rounds, "broker": "rabbitmq", "logs": str(logs)},
           figures, [], {"rounds": rounds, "ratios": [round(r, 3) for r in ratios]},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
