"""``sendcloud-jobs demo``: the whole pipeline in one process, no Redis server or account needed.

See worker/cli/demo_scenario.py for what runs. It never uses ``REDIS_URL``: demo jobs on a
deployment's queues would be sent by its workers. ``--redis-url URL`` runs it on a real Redis
database that holds no sendcloud-jobs data, in queues no worker serves, and removes what it
wrote at the end.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

OUTCOME_STYLES = {"sent": "green", "done": "green", "campaign_finished": "green",
                  "expired": "yellow", "duplicate": "cyan", "failed": "red",
                  "needs_review": "magenta"}  # fmt: skip


def summary_table(result: Any) -> Table:
    table = Table(title="Result streams sendcloud:results:* (this run)", title_justify="left")
    table.add_column("stream")
    table.add_column("kind / event")
    table.add_column("outcome / status")
    table.add_column("records", justify="right")
    for name, counts in result.streams.items():
        if not counts:
            table.add_row(name, "-", "-", "0")
        for (kind, outcome), n in sorted(counts.items()):
            style = OUTCOME_STYLES.get(outcome, "")
            shown = f"[{style}]{outcome}[/]" if style else outcome
            table.add_row(name, kind, shown, str(n))
    return table


def facts_table(result: Any) -> Table:
    c = result.campaign
    table = Table(title="What that shows", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "campaign",
        f"{c.input} entries: {c.valid} valid, {c.invalid} invalid, {c.duplicates} duplicates; "
        f"{c.accepted} accepted by SendCloud in {c.chunks} chunk(s)",
    )
    sms = result.streams.get("sms", {})
    codes = sum(n for (kind, outcome), n in sms.items() if outcome == "sent" and kind != "sms")
    if sms.get(("sms", "duplicate")):
        table.add_row(
            "lost reply",
            "SendCloud's reply to the campaign's request was lost; the retry reused its "
            "sendRequestId and SendCloud answered 'duplicate request'",
        )
    table.add_row(
        "exactly once",
        f"the simulator delivered {result.simulator_sms} SMS = {c.accepted} campaign numbers "
        f"+ {codes} codes; the code enqueued twice under one key went out once",
    )
    table.add_row("expired code", "never sent: it waited in the queue past its expiry")
    table.add_row("emailStatus", result.poll_note)
    table.add_row("broker", result.broker)
    if result.removed_keys:
        table.add_row("cleaned up", f"removed the {result.removed_keys} keys the demo wrote")
    table.add_row("took", f"{result.elapsed:.1f} s")
    return table


def _demo(args: argparse.Namespace) -> int:
    from worker.cli.demo_scenario import Demo, DemoError

    console = Console()
    console.rule("sendcloud-jobs demo")
    console.print(
        "Producers enqueue jobs; Dramatiq workers call SendCloud (here: the bundled simulator); "
        "every job ends as one record on a Redis result stream.\n"
    )
    try:
        result = Demo(console, redis_url=args.redis_url).run()
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    console.print()
    console.print(summary_table(result))
    console.print(facts_table(result))
    console.print(
        "\nNext: [bold]sendcloud-jobs --help[/], docs/architecture.md, and "
        "[bold]docker compose -f docker/compose.yml --env-file docker/simulator.env "
        "--profile simulator up[/] to run it as a service."
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline in-process against the simulator (no Redis needed)",
        description=__doc__,
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="run on this Redis instead of the embedded one: a database with no sendcloud-jobs "
        "data (REDIS_URL is never used, so a deployment's workers never see demo jobs)",
    )
    parser.set_defaults(func=_demo)
