"""Webhook receiver: hooks/second and answer times of ``sendcloud-jobs web`` under wrk, against
a no-op Starlette endpoint served the same way (``bench/bare_web.py``), in the same run.

Usage: ``.venv/bin/python -m bench.hooks [--n 60000] [--duration 10] [--rounds 3] [--rate 500]``

Both servers run as processes, as deployed: ours is the ``sendcloud-jobs web`` command (JSON
logs to a file, a throwaway redis-server), the baseline ``python -m bench.bare_web`` through
the same ``worker.web.server``. ``--n`` distinct SMSHook ``deliver`` bodies are signed first
(unique tokens, timestamps from Redis's clock), so every hook ours answers is verified and
stored, none deduplicated; Redis is emptied before each run of ours. wrk (``bench/hooks.lua``)
sends each body once.

* Throughput: each round loads both as fast as ``--connections`` allow for ``--duration`` s,
  alternating which goes first. ``ratio`` = ours / bare hooks per second (median over rounds);
  ``*_cpu_us_per_hook``: the server process's CPU per answered hook (from ``/proc``).
* Fixed rate: ``--rate`` hooks/s for ``--rate-duration`` s on an open schedule (each send takes
  the next slot, whichever connection is free); ``ours_p99_ms_at_rate`` is wrk's p99 from
  send to answer. ``late_sends`` counts sends over 1 ms behind their slot (0: the rate held).

A run whose ours answered anything but 200, or stored fewer hooks than it answered, is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import Target, common_arguments, log_dir, report, throwaway_redis
from tests.redis_server import free_port
from tests.webhooks import SMS_KEY, form_body, redis_ms, sms_deliver
from worker.web.inbox import SMS_INBOX

LUA = Path(__file__).with_name("hooks.lua")
PATH = "/hooks/sms"


def _env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update(REDIS_URL=redis_url, SENDCLOUD_SMS_HOOK_KEY=SMS_KEY, LOG_FORMAT="json",
               LOG_LEVEL="INFO")  # fmt: skip
    return env


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (``/proc/<pid>/stat``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Run a server command on a free port (``{port}`` in argv), until it answers."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([a.replace("{port}", str(port)) for a in argv], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz", timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:3]} did not start; see {log}") from None
                time.sleep(0.1)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_bodies(path: Path, n: int, now_ms: int) -> None:
    with path.open("wb") as out:
        for i in range(n):
            out.write(form_body(sms_deliver(now_ms, sms_id=f"1700000000000_{i}$13{i:09d}")))
            out.write(b"\n")


def wrk(server: Server, bodies: Path, *, duration: float, connections: int, threads: int,
        rate: int = 0) -> dict[str, Any]:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
            "--timeout", "5s", "-s", str(LUA), server.url + PATH, "--",
            str(bodies), PATH, str(rate), str(threads)]  # fmt: skip
    cpu = server.cpu_seconds()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    cpu = server.cpu_seconds() - cpu
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stdout[-2000:]} {run.stderr}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_us_per_hook"] = cpu * 1e6 / max(1, result["requests"])
    return result


def _ours(client: redis.Redis, server: Server, bodies: Path, **load: Any) -> dict[str, Any]:
    client.flushdb()
    result = wrk(server, bodies, **load)
    # Answers still in flight when wrk stopped may be stored too: stored >= answered.
    result["stored"] = int(client.xlen(SMS_INBOX))
    errors = sum(result["errors"].values())
    if errors or result["wrapped"] or result["stored"] < result["requests"]:
        raise RuntimeError(f"not every hook was answered 200 and stored once (raise --n?): "
                           f"{json.dumps(result)}")
    return result


def _ms(us: float) -> float:
    return round(us / 1000, 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=60_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=int, default=500, help="hooks/s of the fixed-rate run")
    parser.add_argument("--rate-duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.hooks needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    logs = log_dir(args.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    load = {"connections": args.connections, "threads": args.threads}
    rounds: list[dict[str, Any]] = []
    with throwaway_redis() as redis_url:
        client = redis.Redis.from_url(redis_url)
        bodies = logs / "hook-bodies.txt"
        write_bodies(bodies, args.n, redis_ms(client))
        env = _env(redis_url)
        ours_cmd = [str(Path(sys.executable).parent / "sendcloud-jobs"), "web", "--port", "{port}"]
        bare_cmd = [sys.executable, "-m", "bench.bare_web", "--port", "{port}"]
        with served(ours_cmd, env, logs / "web.log") as ours, \
                served(bare_cmd, env, logs / "bare_web.log") as bare:
            for round_no in range(args.rounds):
                runs = {}
                for side in (("ours", "bare") if round_no % 2 == 0 else ("bare", "ours")):
                    runs[side] = (_ours(client, ours, bodies, duration=args.duration, **load)
                                  if side == "ours" else
                                  wrk(bare, bodies, duration=args.duration, **load))
                rounds.append(runs)
            paced = {"duration": args.rate_duration, "rate": args.rate, **load}
            ours_rate = _ours(client, ours, bodies, **paced)
            bare_rate = wrk(bare, bodies, **paced)
        client.close()
    ratios = [r["ours"]["per_s"] / r["bare"]["per_s"] for r in rounds]
    figures = {
        "ratio": round(statistics.median(ratios), 3),
        "ours_hooks_per_s": round(statistics.median(r["ours"]["per_s"] for r in rounds)),
        "bare_hooks_per_s": round(statistics.median(r["bare"]["per_s"] for r in rounds)),
        # The server process's CPU per answered hook: steadier than rates on a shared machine.
        "ours_cpu_us_per_hook": round(statistics.median(
            r["ours"]["cpu_us_per_hook"] for r in rounds)),
        "bare_cpu_us_per_hook": round(statistics.median(
            r["bare"]["cpu_us_per_hook"] for r in rounds)),
        "ours_p99_ms_at_rate": _ms(ours_rate["latency_us"]["p99"]),
        "ours_p50_ms_at_rate": _ms(ours_rate["latency_us"]["p50"]),
        "bare_p99_ms_at_rate": _ms(bare_rate["latency_us"]["p99"]),
        "ours_hooks_per_s_at_rate": round(ours_rate["per_s"], 1),
        "late_sends": ours_rate["late"],
    }
    params = {"n": args.n, "duration": args.duration, "rounds": args.rounds, **load,
              "rate": args.rate, "rate_duration": args.rate_duration}  # fmt: skip
    report("hooks", params, figures,
           [Target("ratio", ">=", 0.7), Target("ours_p99_ms_at_rate", "<", 50)],
           {"ratios": [round(r, 3) for r in ratios], "rounds": rounds,
            "at_rate": {"ours": ours_rate, "bare": bare_rate}},
           results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
