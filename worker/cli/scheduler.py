"""``sendcloud-jobs scheduler``: the process that enqueues an emailStatus poll every N minutes.

Run one (the Procfile's ``scheduler`` entry). A second one by mistake is harmless: each slot is
claimed in Redis before its poll is enqueued. Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from worker import connections
from worker.cli import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scheduler", help="enqueue an emailStatus poll every SENDCLOUD_POLL_INTERVAL_MINUTES",
        description="Enqueue one emailStatus poll per time slot (default every 10 minutes, "
        "SendCloud's cache period) onto the status queue. Uses REDIS_URL.",
    )
    parser.add_argument("--interval", type=float, default=None, metavar="MINUTES",
                        help="minutes between polls (default SENDCLOUD_POLL_INTERVAL_MINUTES)")
    parser.set_defaults(func=run_scheduler)


def run_scheduler(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import structlog
    from apscheduler.triggers.interval import IntervalTrigger

    from worker.broker import make_broker
    from worker.cli.reconcile import build_reconciler
    from worker.email_status.scheduler import build_scheduler
    from worker.logs import configure_logging
    from worker.settings import Settings

    settings = Settings.from_env()
    if args.interval is not None:
        if args.interval < 0.1:
            raise UsageError(f"--interval: must be at least 0.1 minutes, got {args.interval}")
        settings = replace(settings, poll_interval_minutes=args.interval)
    configure_logging(settings)
    redis_client = connections.redis_client(settings)
    # Fail at start-up, as one line (see worker.cli.main), rather than at the first tick.
    redis_client.ping()
    broker = make_broker(settings.redis_url, redis_client=redis_client, settings=settings)
    scheduler = build_scheduler(broker, redis_client, settings)
    # The reconciler runs in the same single process: it needs no workers of its own.
    reconciler = build_reconciler(redis_client, broker, settings)
    scheduler.add_job(reconciler.run_once, IntervalTrigger(seconds=settings.reconcile_interval),
                      id="reconcile", max_instances=1, coalesce=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    structlog.get_logger(__name__).info(
        "scheduler_started", interval_minutes=settings.poll_interval_minutes
    )
    try:
        scheduler.start()
    finally:
        broker.close()
        redis_client.close()
    return 0
