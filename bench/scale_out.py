"""Scale-out benchmark: campaign throughput as worker groups are added, up to SendCloud's limit.

Usage: ``.venv/bin/python -m bench.scale_out [--groups 1,2,3] [--broker redis|rabbitmq]``

Each worker group stands for one host: the Procfile's ``worker`` entry (``dramatiq worker.app``,
``--processes 1 --threads T``) in a process group of its own, with its own environment (metrics
port and directory, log file), sharing nothing with the others but the broker and Redis, as
separate machines would. The simulator answers ``/smsapi/send`` after ``--latency`` seconds
and serves at most ``--capacity`` of them at once (the rest wait their turn): SendCloud's side
has a limit, as a real provider does.

For each count of groups in ``--groups``, a fresh campaign of ``--n`` numbers is enqueued and
drained by that many groups; its drain time runs from the first chunk claimed to the
campaign's ``finished_at`` (both stamped with Redis's clock). Figures:

* ``numbers_per_s_<k>``: throughput with k groups; ``speedup_<k>``: over one group, same run;
* ``ideal_speedup_<k>``: ``min(k * T, capacity) / min(T, capacity)``, what the simulator's
  capacity allows; ``efficiency_<k>`` = speedup / ideal speedup (targets while ``k * T`` is
  within the capacity: adding a host adds its threads' worth);
* ``capacity_share_<k>``: throughput over the simulator's limit, ``capacity * 2000 / latency``
  numbers a second; ``plateau`` = the throughput of the most groups over that of the fewest
  groups already at the capacity (near 1: more hosts add nothing once SendCloud is the limit);
* ``max_deliveries_per_number``: over every round, from the simulator's ledger (must be 1).

With ``--broker rabbitmq`` the queues are in a RabbitMQ vhost of the run's own. Writes
bench/results/scale_out[-rabbitmq].json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    TEMPLATE_ID,
    SimHost,
    Target,
    WorkerGroup,
    common_arguments,
    drain_seconds,
    log_dir,
    mainland,
    rabbitmq_vhost,
    report,
    throwaway_redis,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)

CHUNK = 2000


def consumers(vhost: Any, queue: str, hosts: int) -> Callable[[], int] | None:
    """On RabbitMQ, how many consumers ``queue`` has (each host's one counts once every host
    is up); on Redis (no ``vhost``) None, and readiness is read from the broker's heartbeats."""
    if vhost is None:
        return None
    return lambda: int(vhost.consumers(queue)) // hosts


def one_round(groups: int, *, index: int, redis_url: str, vhost: Any, sim: SimHost, n: int,
              threads: int, deadline: float, logs: Path) -> dict[str, Any]:
    """Enqueue a campaign of ``n`` numbers of its own, drain it with ``groups`` groups (the
    queues in RabbitMQ's ``vhost`` when one is given)."""
    from producers import Producer, start_campaign
    from producers.campaign import campaign_key
    from producers.contract import SMS_QUEUE

    amqp = vhost.url if vhost is not None else ""
    campaign_id = f"scale-{groups}-{index}"
    client = redis.Redis.from_url(redis_url)
    hosts = [
        WorkerGroup(
            f"host{h}",
            worker_command("worker", processes=1, threads=threads, queues=[SMS_QUEUE]),
            worker_env(redis_url, sim.url, LOG_LEVEL="WARNING",
                       **({"SENDCLOUD_BROKER_URL": amqp} if amqp else {})),
            logs / f"{campaign_id}-host{h}.log",
        )
        for h in range(groups)
    ]
    meta = campaign_key(campaign_id)
    with worker_groups(*hosts):
        # Every host consumes before the campaign starts: a host still booting is not a host.
        for host in hosts:
            host.wait_ready(client, consumers=consumers(vhost, SMS_QUEUE, len(hosts)))
        producer = Producer(redis_url=redis_url, broker_url=amqp)
        try:
            numbers = (mainland(index * 10_000_000 + i) for i in range(n))
            start_campaign(campaign_id, TEMPLATE_ID, numbers, producer=producer)
        finally:
            producer.close()
        if not wait_for(lambda: client.hexists(meta, "finished_at"), deadline, 0.2):
            tails = "\n".join(h.log_tail(800) for h in hosts)
            raise RuntimeError(f"{campaign_id} not drained in {deadline} s:\n{tails}")
    seconds = drain_seconds(client, campaign_id)
    client.close()
    return {"groups": groups, "seconds": round(seconds, 2),
            "numbers_per_s": round(n / seconds, 1) if seconds > 0 else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=200_000)
    parser.add_argument("--groups", default="1,2,3,4",
                        help="worker-group counts to run, comma-separated (default 1,2,3,4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per group (default 4)")
    parser.add_argument("--latency", type=float, default=0.5,
                        help="seconds the simulator takes per /smsapi/send (default 0.5)")
    parser.add_argument("--capacity", type=int, default=8,
                        help="sends the simulator serves at once (default 8)")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(part) for part in args.groups.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--groups: comma-separated whole numbers, got {args.groups!r}")
    if not counts or counts[0] < 1 or 1 not in counts:
        parser.error("--groups must include 1 (the baseline) and only counts >= 1")
    for name in ("threads", "capacity", "n"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.latency <= 0:
        parser.error(f"--latency must be above 0 (the capacity needs a time), got {args.latency}")
    logs = log_dir(args.log_dir)
    rounds: list[dict[str, Any]] = []
    on_rabbitmq = args.broker == "rabbitmq"
    with throwaway_redis() as redis_url, \
            (rabbitmq_vhost("bench.scale_out") if on_rabbitmq else nullcontext()) as vhost, \
            SimHost(latency={"/smsapi/send": args.latency}) as sim:
        sim.admin.set_faults("/smsapi/send", latency=args.latency, capacity=args.capacity)
        for index, groups in enumerate(counts):
            rounds.append(one_round(groups, index=index, redis_url=redis_url, vhost=vhost,
                                    sim=sim, n=args.n, threads=args.threads,
                                    deadline=args.deadline, logs=logs))
        delivered, most = sim.spread()
    base = rounds[0]
    figures: dict[str, Any] = {"max_deliveries_per_number": most,
                               "delivered_numbers": delivered}
    for result in rounds:
        k = result["groups"]
        figures[f"numbers_per_s_{k}"] = result["numbers_per_s"]
        speedup = result["numbers_per_s"] / base["numbers_per_s"]
        ideal = min(k * args.threads, args.capacity) / min(args.threads, args.capacity)
        figures[f"speedup_{k}"] = round(speedup, 2)
        figures[f"ideal_speedup_{k}"] = round(ideal, 2)
        figures[f"efficiency_{k}"] = round(speedup / ideal, 2)
        figures[f"capacity_share_{k}"] = round(
            result["numbers_per_s"] / (args.capacity * CHUNK / args.latency), 2)
    targets = [Target("max_deliveries_per_number", "<=", 1),
               Target("delivered_numbers", ">=", args.n * len(counts))]
    below = [k for k in counts if k > 1 and k * args.threads <= args.capacity]
    targets += [Target(f"efficiency_{k}", ">=", 0.8) for k in below]
    beyond = [r for r in rounds if r["groups"] * args.threads >= args.capacity]
    if len(beyond) > 1:
        figures["plateau"] = round(beyond[-1]["numbers_per_s"] / beyond[0]["numbers_per_s"], 2)
        targets.append(Target("plateau", "<=", 1.15))
    name = "scale_out" if args.broker == "redis" else "scale_out-rabbitmq"
    report(name, {"n": args.n, "groups": counts, "threads": args.threads,
                  "latency": args.latency, "capacity": args.capacity, "broker": args.broker,
                  "logs": str(logs)},
           figures, targets, {"rounds": rounds}, results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
