"""Throughput of one emailStatus poll over 100,000 records, against the in-process simulator.

Usage: .venv/bin/python bench/poller.py [--records N] [--out bench/results/poller.json]

Runs, in one process, on a throwaway redis-server:

1. baseline: the raw client paging through the window (no change detection, no limiter),
   run before and after the polls and averaged;
2. poll: one full poll (compare-and-emit in Lua, shared limiter at the default budget);
3. replay: the same pages served from memory, so only the poller's own work is timed
   (normalising, the Lua compare-and-emit, Redis), once without and once with the limiter:
   with it, calls/minute shows the limiter holding the budget.

Against the simulator, each call costs what the simulator spends filtering 100,000 records,
so runs 1 and 2 mostly time the simulator; run 3 is the poller's own ceiling.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import Simulator
from tests.redis_server import start_redis_server
from worker.email_status.poller import EmailStatusPoller, PollConfig, PollSummary
from worker.email_status.ratelimit import RateLimiter, default_burst
from worker.email_status.records import SHANGHAI
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.models import EmailStatusPage
from worker.settings import Settings

SETTINGS = replace(
    Settings(),
    base_url="http://sendcloud.bench",
    sms_user="sim_sms_user",
    sms_key="sim-sms-key-0000",
    api_user="sim_api_user",
    api_key="sim-api-key-0000",
)


@dataclass
class Replay:
    """Pages already read, served again by offset: the poller's side of the work only."""

    pages: dict[int, EmailStatusPage]

    def email_status(self, *, start: int = 0, **_: Any) -> EmailStatusPage:
        return self.pages[start]


def busiest_minute(times: list[float]) -> int:
    """Calls in the busiest 60-second window of a sorted list of call times."""
    busiest, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 60.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def limiter_soak(conn: redis.Redis, budget: int, seconds: float, threads: int = 4
                 ) -> dict[str, Any]:
    """Several callers share one budget for longer than a minute, as several workers would.

    A poll of 1000 pages ends in about 24 s, and ``calls / seconds`` over a run that short counts
    the opening burst as if it recurred; the budget is about any 60-second window.
    """
    limiter_key = "bench:soak"
    stamps: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller() -> None:
        limiter = RateLimiter(conn, budget, key=limiter_key)
        while time.monotonic() < deadline:
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stamps.sort()
    return {"seconds": seconds, "callers": threads, "calls": len(stamps),
            "max_calls_in_any_60s": busiest_minute(stamps), "budget_per_minute": budget,
            "burst": default_burst(budget)}


def read_all(client: SendCloudClient, first: date, last: date) -> tuple[dict[int, Any], float]:
    pages: dict[int, Any] = {}
    offset = 0
    started = time.perf_counter()
    while True:
        page = client.email_status(start_date=first, end_date=last, start=offset, limit=100)
        pages[offset] = page
        offset += len(page.records)
        if not page.records or offset >= page.total:
            return pages, time.perf_counter() - started


def timed_poll(poller: EmailStatusPoller) -> tuple[PollSummary, float]:
    started = time.perf_counter()
    summary = poller.poll()
    return summary, time.perf_counter() - started


def figures(summary: PollSummary, seconds: float, budget: int | None) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "calls": summary.calls,
        "records_seen": summary.records_seen,
        "changes_emitted": summary.changes_emitted,
        "records_per_second": round(summary.records_seen / seconds, 1),
        "calls_per_minute": round(summary.calls / seconds * 60, 1),
        "limiter_budget_per_minute": budget,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--soak-seconds", type=float, default=75.0,
                        help="how long several callers drive the limiter (over a minute)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "poller.json"))
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    server = start_redis_server()
    if server is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    conn = redis.Redis.from_url(server.url)
    try:
        sim = Simulator()
        now = datetime.now(SHANGHAI)
        # Spread over the last ~28 hours, all inside the poll's 3-day settle window.
        sim.seed_email_status(args.records, start=now - timedelta(seconds=args.records))
        client = SendCloudClient(SETTINGS, transport=sim.transport())
        today = now.date()
        first = today - timedelta(days=2)

        client.email_status(start_date=first, end_date=today, limit=1)  # warm-up
        pages, baseline_before_s = read_all(client, first, today)
        budget = SETTINGS.poll_rate_per_minute
        config = PollConfig(stream_maxlen=args.records * 2)

        def poller(source: Any, limited: bool) -> EmailStatusPoller:
            limiter = RateLimiter(conn, budget) if limited else None
            return EmailStatusPoller(source=source, redis=conn, config=config, limiter=limiter)

        poll_summary, poll_s = timed_poll(poller(client, True))
        conn.flushdb()  # the bench's own throwaway server
        replay_summary, replay_s = timed_poll(poller(Replay(pages), False))
        conn.flushdb()
        limited_summary, limited_s = timed_poll(poller(Replay(pages), True))
        # The baseline again after the polls, so machine noise shows as a spread, not a bias.
        _, baseline_after_s = read_all(client, first, today)
        baseline_s = (baseline_before_s + baseline_after_s) / 2
        baseline_rps = args.records / baseline_s
        assert poll_summary.changes_emitted == replay_summary.changes_emitted == args.records

        result = {
            "what": "one emailStatus poll over N seeded records, in-process simulator",
            "records": args.records,
            "pages": len(pages),
            "python": platform.python_version(),
            "redis": conn.info("server")["redis_version"],
            "baseline_raw_client_paging": {
                "seconds": round(baseline_s, 3),
                "seconds_before_and_after": [round(baseline_before_s, 3),
                                             round(baseline_after_s, 3)],
                "calls": len(pages),
                "records_per_second": round(baseline_rps, 1),
                "calls_per_minute": round(len(pages) / baseline_s * 60, 1),
            },
            "poll_vs_simulator_with_limiter": figures(poll_summary, poll_s, budget),
            "poll_replayed_pages_no_limiter": figures(replay_summary, replay_s, None),
            "poll_replayed_pages_with_limiter": figures(limited_summary, limited_s, budget),
            "limiter_soak": limiter_soak(conn, budget, args.soak_seconds),
        }
        result["ratio_poll_to_baseline"] = round(
            result["poll_vs_simulator_with_limiter"]["records_per_second"] / baseline_rps, 3
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        conn.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
