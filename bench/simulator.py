"""Simulator CPU per 2000-number send, and whether it stays flat as the ledger grows.

Usage: ``.venv/bin/python -m bench.simulator [--n 2000000]``

``--n`` numbers are sent as 2000-number ``smsapi/send`` requests through ``Simulator.serve``
(form parsing, signature check, validation, delivery into the ledger, the JSON reply) in this
process, without HTTP, so the figure is the simulator's own work. CPU time (``process_time``)
of each request is taken; the figures are the median over the first and the last 10 % of the
requests, and their ratio (1.0: flat). Building and signing the requests is not timed.

Writes bench/results/simulator.json and prints a short table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.parse
from collections.abc import Sequence

from bench.common import Target, common_arguments, report
from simulator import Simulator
from simulator.protocol import RawRequest
from worker.sendcloud.signing import sign

CHUNK = 2000


def request(sim: Simulator, index: int) -> RawRequest:
    params = {
        "smsUser": sim.sms_user, "templateId": "1", "msgType": "0",
        "phone": ",".join(f"13{index * CHUNK + j:09d}" for j in range(CHUNK)),
        "timestamp": str(int(time.time() * 1000)), "sendRequestId": f"bench-{index}",
    }  # fmt: skip
    params["signature"] = sign(params, "sim-sms-key-0000")
    return RawRequest(method="POST", path="/smsapi/send", query="",
                      body=urllib.parse.urlencode(params).encode(),
                      content_type="application/x-www-form-urlencoded")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, n=2_000_000)
    args = parser.parse_args(argv)
    sim = Simulator()
    sim.seed_template(1)
    sends = max(args.n // CHUNK, 10)
    cpu_ms: list[float] = []
    for index in range(sends):
        raw = request(sim, index)
        started = time.process_time()
        reply = sim.serve(raw)
        cpu_ms.append((time.process_time() - started) * 1000)
        if reply.status != 200 or b'"statusCode": 200' not in reply.body[:60]:
            raise RuntimeError(f"send {index} refused: {reply.body[:200]!r}")
    tenth = max(sends // 10, 1)
    first = statistics.median(cpu_ms[:tenth])
    last = statistics.median(cpu_ms[-tenth:])
    figures = {
        "cpu_ms_per_send_first_10pct": round(first, 2),
        "cpu_ms_per_send_last_10pct": round(last, 2),
        "cpu_ms_per_send_median": round(statistics.median(cpu_ms), 2),
        "last_over_first": round(last / first, 2),
        "numbers": sends * CHUNK,
        "ledger_entries": len(sim.ledger),
    }
    report("simulator", {"n": sends * CHUNK, "chunk": CHUNK}, figures,
           [Target("cpu_ms_per_send_last_10pct", "<=", 5.0)], results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
