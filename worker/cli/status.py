"""``sendcloud-jobs status poll --once``: one emailStatus poll now, in the foreground.

It is the same poll the scheduler enqueues (same cursor, same shared call budget, same
exactly-once publishing), minus the slot claim: asking for a poll by hand always polls.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker import connections
from worker.cli import UsageError
from worker.email_status.poller import PollAborted, PollSummary
from worker.email_status.window import MAX_SPAN_DAYS
from worker.sendcloud.errors import SendCloudError


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="delivery status of sent mail (emailStatus)",
        description="Delivery status of sent mail, read from SendCloud's emailStatus.",
    )
    commands = status.add_subparsers(dest="status_command", metavar="SUBCOMMAND", required=True)
    poll = commands.add_parser(
        "poll", help="read emailStatus and publish every status change once",
        description="Read emailStatus from the cursor (and the settle lookback) to today and "
        "publish each status change once to the email_status result stream. "
        "Uses SENDCLOUD_BASE_URL, the SendCloud credentials and REDIS_URL.",
    )
    poll.add_argument("--once", action="store_true",
                      help="run one poll now in the foreground (periodic polls run under "
                      "`sendcloud-jobs scheduler`)")
    poll.add_argument("--days", type=_days, default=None, metavar="N",
                      help=f"cover at least the last N request dates, 1-{MAX_SPAN_DAYS} "
                      "(widens the window, never narrows it)")
    poll.add_argument("--json", action="store_true", help="print the summary as JSON")
    poll.set_defaults(func=run_poll)


def _days(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None
    if not 1 <= value <= MAX_SPAN_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SPAN_DAYS}, got {value}")
    return value


def run_poll(args: argparse.Namespace) -> int:
    from worker.email_status.actor import build_poller
    from worker.logs import configure_logging
    from worker.runtime import Runtime
    from worker.sendcloud.client import SendCloudClient
    from worker.settings import Settings

    if not args.once:
        raise UsageError(
            "status poll: pass --once to poll now; periodic polls run under "
            "`sendcloud-jobs scheduler`"
        )
    settings = Settings.from_env()
    configure_logging(settings)
    # An unreachable Redis surfaces at the first command as one line (see worker.cli.main).
    redis_client = connections.redis_client(settings)
    with SendCloudClient(settings) as client:
        poller = build_poller(Runtime(settings, redis_client, lambda: client))
        try:
            summary = poller.poll(days=args.days)
        except (SendCloudError, PollAborted) as exc:
            print(f"sendcloud-jobs: poll failed, cursor unchanged: {exc}", file=sys.stderr)
            return 1
        finally:
            redis_client.close()
    print(json.dumps(summary.as_dict(), indent=2) if args.json else render(summary))
    return 0


def render(summary: PollSummary) -> str:
    gap = summary.gap
    lines = [
        f"window:          {summary.window.describe()} (request dates, Asia/Shanghai)",
        f"pages:           {summary.pages}",
        f"calls:           {summary.calls} ({summary.retries} retried, "
        f"{summary.throttled} throttled)",
        f"records seen:    {summary.records_seen}",
        f"changes emitted: {summary.changes_emitted}",
        "gap:             none" if gap is None else
        f"gap:             {gap.describe()} could not be read: older than 30 days"
        + ("" if summary.gap_reported else " (already reported)"),
        "cursor:          "
        + (summary.started_at.isoformat() if summary.cursor_advanced else "unchanged"),
    ]
    return "\n".join(lines)
