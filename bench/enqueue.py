"""Producer overhead: ``send_code`` calls/second against a bare ``broker.enqueue`` of the same
message, one thread, one throwaway redis-server, in the same run.

Usage: ``.venv/bin/python -m bench.enqueue [--n 20000] [--rounds 3]``

ours: ``Producer.send_code`` (validation, the idempotency reservation script with the job's
copy, the enqueue). bare: a ``dramatiq.Message`` of the same payload enqueued with
``RedisBroker.enqueue``, nothing else. Each round runs both sides on fresh keys, alternating;
``ratio`` = ours / bare calls per second, the median over rounds (target >= 0.8).
Round trips per call are counted from ``INFO commandstats`` (calls of every command).

Writes bench/results/enqueue.json and prints a short table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import Target, common_arguments, report, throwaway_redis
from producers import Producer
from producers.brokers import BROKER_NAMESPACE
from producers.contract import SEND_CODE_ACTOR


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _ours(producer: Producer, n: int, round_no: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        producer.send_code(f"138{i:08d}", "123456", sign_id=1,
                           idempotency_key=f"bench-{round_no}-{i}")  # fmt: skip
    return n / (time.perf_counter() - started)


def _bare(broker: RedisBroker, n: int, round_no: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        payload: dict[str, Any] = {
            "key": f"bench-{round_no}-{i}", "phone": f"138{i:08d}", "code": "123456",
            "sign_id": 1, "sign_name": None, "msg_type": 0, "enqueued_at": time.time(),
            "expires_at": time.time() + 600, "expires_in": 600.0,
        }  # fmt: skip
        broker.enqueue(dramatiq.Message(queue_name="sendcloud.codes", actor_name=SEND_CODE_ACTOR,
                                        args=(payload,), kwargs={}, options={}))
    return n / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ratios, ours_rates, bare_rates = [], [], []
    with throwaway_redis() as redis_url:
        client = redis.Redis.from_url(redis_url)
        producer = Producer(redis_url=redis_url)
        bare = RedisBroker(url=redis_url, namespace=BROKER_NAMESPACE)
        bare.declare_queue("sendcloud.codes")
        calls = {}
        for round_no in range(args.rounds):
            before = _commands(client)
            bare_rate = _bare(bare, args.n, round_no)
            calls["bare"] = (_commands(client) - before) / args.n
            client.flushdb()
            before = _commands(client)
            ours_rate = _ours(producer, args.n, round_no)
            calls["ours"] = (_commands(client) - before) / args.n
            client.flushdb()
            ours_rates.append(ours_rate)
            bare_rates.append(bare_rate)
            ratios.append(ours_rate / bare_rate)
        producer.close()
        bare.close()
        client.close()
    figures = {
        "ratio": round(statistics.median(ratios), 2),
        "ours_calls_per_s": round(statistics.median(ours_rates)),
        "bare_calls_per_s": round(statistics.median(bare_rates)),
        "ours_redis_commands_per_call": round(calls["ours"], 2),
        "bare_redis_commands_per_call": round(calls["bare"], 2),
    }
    report("enqueue", {"n": args.n, "rounds": args.rounds}, figures,
           [Target("ratio", ">=", 0.8)], {"ratios": [round(r, 3) for r in ratios]},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
