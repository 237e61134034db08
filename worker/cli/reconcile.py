"""``sendcloud-jobs reconcile``: drive again the jobs whose messages were lost.

The ``scheduler`` process runs the same pass every ``SENDCLOUD_RECONCILE_INTERVAL`` seconds;
this command is for operators (``--once`` after an incident) and for a deployment that runs no
scheduler. See :mod:`worker.jobs.reconciler`.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis

from worker import connections

if TYPE_CHECKING:
    import dramatiq

    from worker.jobs.reconciler import Reconciler
    from worker.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconcile", help="send again the jobs left past due (lost messages, dead workers)",
        description="Find jobs not yet final that are past their lease or due time and enqueue "
        "a fresh copy of each; a copy is harmless, the job's claim decides. Uses REDIS_URL.",
    )
    parser.add_argument("--once", action="store_true", help="one pass, print what it did, exit")
    parser.set_defaults(func=run_reconcile)


def build_reconciler(
    redis_client: redis.Redis, broker: dramatiq.Broker, settings: Settings
) -> Reconciler:
    from worker.jobs.reconciler import Reconciler

    return Reconciler(redis_client, broker, grace=settings.reconcile_grace,
                      queued_after=settings.reconcile_queued_after,
                      interval=settings.reconcile_interval)


def run_reconcile(args: argparse.Namespace) -> int:
    import structlog

    from worker.broker import make_broker
    from worker.logs import configure_logging
    from worker.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings)
    redis_client = connections.redis_client(settings)
    redis_client.ping()
    broker = make_broker(settings.redis_url, redis_client=redis_client, settings=settings)
    reconciler = build_reconciler(redis_client, broker, settings)
    log = structlog.get_logger("worker.cli.reconcile")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while True:
            if args.once:
                summary = reconciler.run_once()
                print(json.dumps({"looked_at": summary.looked_at,
                                  "redriven": summary.redriven, "waiting": summary.waiting,
                                  "dropped": summary.dropped, "orphaned": summary.orphaned,
                                  "locked_out": summary.locked_out}))
                return 0
            try:
                reconciler.run_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis is away: exactly when the reconciler is needed next. Keep trying.
                log.warning("reconcile.redis_unreachable", error=type(exc).__name__)
            if stop.wait(settings.reconcile_interval):
                return 0
    except KeyboardInterrupt:
        return 130
    finally:
        broker.close()
        redis_client.close()
