"""``sendcloud-jobs campaign start|status|report|cancel|discard``: bulk SMS campaigns from a file.

``start`` reads numbers one per line, or one column of a CSV file (``--column``: a header name,
or a 1-based column number), and streams them into :func:`producers.start_campaign` with a
progress bar. Running ``start`` again with the same id and file resumes a campaign whose upload
died; another file under the same id is refused. A file without a valid number is refused
before the id is taken, and so is a file of several CSV columns without ``--column``; a first
line that is clearly a header (no digit in it, a number on the next) is skipped and said so.
``--dry-run`` reads and checks the file and writes nothing. ``status --watch`` follows progress
live, ``report`` writes the per-recipient CSV, ``cancel`` stops chunks not yet sent, and
``discard`` removes a campaign of which nothing was sent, freeing its id.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from producers.campaign_input import CampaignInputError, NumberSource
from worker.cli import UsageError
from worker.cli.enqueue import _pair, _pairs
from worker.cli.health import load_settings

_DESCRIPTION = (
    "Bulk SMS campaigns from a file of numbers. start reads one number per line, or one CSV "
    "column (--column), and enqueues them in chunks of 2000; run it again with the same id "
    "and file to resume. A file without a valid number, or of several CSV columns without "
    "--column, is refused before the id is taken; a header line is skipped. start --dry-run "
    "checks a file and writes nothing. status follows a campaign, report lists every "
    "recipient's outcome, cancel stops the chunks not yet sent, and discard removes a campaign "
    "of which nothing was sent, freeing its id."
)
_SAMPLES = 5  # valid numbers and invalid entries a dry run shows


def _producer() -> Any:
    from producers import Producer

    settings = load_settings()
    return Producer(redis_url=settings.redis_url, idempotency_ttl=settings.idempotency_ttl)


def _calling(action: Callable[[Any], int]) -> int:
    """Run ``action(producer)``; campaign errors become one line on stderr."""
    from producers import (
        CampaignBusy,
        CampaignConflict,
        CampaignDiscarded,
        CampaignNotDiscardable,
        CampaignNotFound,
    )

    producer = _producer()
    try:
        return action(producer)
    except (CampaignBusy, CampaignConflict, CampaignDiscarded, CampaignNotDiscardable,
            CampaignNotFound) as exc:
        raise UsageError(str(exc)) from None
    finally:
        producer.close()


# The reader names what it cannot take as the API does (file, column); here they are the
# command's FILE argument and --column option.
_CLI_NAMES = {"file": "FILE", "column": "--column"}


@contextmanager
def _cli_names() -> Iterator[None]:
    try:
        yield
    except CampaignInputError as exc:
        # The rule names its options bare ("column NAME"); here they are spelled as typed.
        rule = exc.rule.replace("column NAME or column NUMBER", "--column NAME or --column NUMBER")
        raise UsageError(f"{_CLI_NAMES.get(exc.field, exc.field)}: {rule}") from None


def _open_file(path: str) -> tuple[IO[bytes], int | None]:
    try:
        binary = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"FILE: cannot read {path!r}: {exc.strerror}") from None
    return binary, None if path == "-" else os.fstat(binary.fileno()).st_size


def _header_note(source: NumberSource) -> str | None:
    if source.skipped_header is None:
        return None
    line, text = source.skipped_header
    return f"line {line} ({text!r}) is a header row: skipped, not counted"


def _no_valid_number(args: argparse.Namespace, source: NumberSource, exc: Any) -> UsageError:
    """A start or dry run that found no valid number, with the file's line and a hint."""
    if exc.first_bad is None:
        return UsageError(f"phones: {args.file!r} holds no entry; nothing was started")
    _, rule, text = exc.first_bad
    hint = ("is --column right?" if args.column is not None
            else f"is {args.file!r} a list of phone numbers?")
    if source.header:
        hint += f" The header row's columns: {', '.join(source.header)}."
    return UsageError(
        f"phones: no valid number in {exc.entries} entries (first bad entry: {text!r} on line "
        f"{source.line_of(1)}: {rule}); {hint} Nothing was started; the id is still free."
    )


def _start(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from producers import NoValidNumber, start_campaign

    console = Console(stderr=True)
    binary, size = _open_file(args.file)
    if args.dry_run:
        with binary, _cli_names():
            return _dry_run(args, NumberSource(binary, args.column, args.skip_header))

    def run(producer: Any) -> int:
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeElapsedColumn())
        with binary, Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"campaign {args.campaign_id}", total=size)
            source = NumberSource(binary, args.column, args.skip_header,
                                  lambda n: progress.advance(task, n))
            try:
                with _cli_names():
                    result = start_campaign(args.campaign_id, args.template_id, source,
                                            _pairs(args.var), msg_type=args.msg_type,
                                            tag=_pairs(args.tag), producer=producer)
            except NoValidNumber as exc:
                raise _no_valid_number(args, source, exc) from None
        note = _header_note(source)
        if note:
            print(note)
        print(f"campaign {result.campaign_id}: {result.input} entries, {result.valid} valid, "
              f"{result.invalid} invalid, {result.duplicates} duplicates; {result.chunks} chunks, "
              f"{result.enqueued} enqueued now, {result.skipped} already enqueued"
              + (" (resumed)" if result.resumed else ""))
        return 0

    return _calling(run)


def _dry_run(args: argparse.Namespace, source: NumberSource) -> int:
    """Read and check the whole file as a start would; no Redis connection at all."""
    from producers import preview_campaign

    preview = preview_campaign(args.campaign_id, args.template_id, source, _pairs(args.var),
                               msg_type=args.msg_type, tag=_pairs(args.tag), samples=_SAMPLES)
    note = _header_note(source)
    if note:
        print(note)
    print(f"dry run of campaign {preview.campaign_id} (nothing written): {preview.input} "
          f"entries, {preview.valid} valid, {preview.invalid} invalid, {preview.duplicates} "
          f"duplicates; {preview.chunks} chunks")
    if preview.first_valid:
        print(f"first valid numbers: {', '.join(preview.first_valid)}")
    if preview.first_invalid:
        print("first invalid entries:")
        for position, rule, text in preview.first_invalid:
            print(f"  line {source.line_of(position)}: {text!r}: {rule}")
    if preview.valid:
        return 0
    from producers import NoValidNumber

    first = preview.first_invalid[0] if preview.first_invalid else None
    raise _no_valid_number(args, source, NoValidNumber(preview.input, first))


def _table(status: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"campaign {status.campaign_id}: {_state(status)}", show_header=False)
    rows = [
        ("entries read", status.input), ("valid", status.valid), ("invalid", status.invalid),
        ("duplicates", status.duplicates),
        ("chunks done / enqueued / total",
         f"{status.chunks_done} / {status.chunks_enqueued} / {status.chunks}"),
        ("accepted", status.accepted), ("failed", status.failed),
        ("cancelled", status.cancelled), ("needs review", status.review),
        ("pending", status.pending),
        ("delivered", status.delivered), ("undelivered", status.undelivered),
        ("rejected", status.rejected), ("awaiting a receipt", status.delivery_pending),
    ]
    from worker.receipts.matcher import hook_reason

    for code, count in status.delivery_codes.items():
        rows.append((f"  {code} {hook_reason(code)}", count))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _state(status: Any) -> str:
    state = "finished" if status.finished else status.state
    if status.cancel_requested and not status.finished:
        state += ", cancelling"
    return state if status.sealed or status.finished else state + " (upload not complete)"


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from producers import campaign_status

    console = Console()

    def run(producer: Any) -> int:
        status = campaign_status(args.campaign_id, producer=producer)
        if not args.watch:
            console.print(_table(status))
            return 0
        with Live(_table(status), console=console, auto_refresh=False) as live:
            while not status.finished:
                time.sleep(args.interval)
                status = campaign_status(args.campaign_id, producer=producer)
                live.update(_table(status), refresh=True)
        return 0

    return _calling(run)


def _report(args: argparse.Namespace) -> int:
    from producers import campaign_report

    def run(producer: Any) -> int:
        if args.output in (None, "-"):
            rows = campaign_report(args.campaign_id, sys.stdout, producer=producer)
        else:
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                rows = campaign_report(args.campaign_id, out, producer=producer)
        print(f"{rows} recipients reported", file=sys.stderr)
        return 0

    return _calling(run)


def _cancel(args: argparse.Namespace) -> int:
    from rich.console import Console

    from producers import campaign_status, cancel_campaign

    def run(producer: Any) -> int:
        before = campaign_status(args.campaign_id, producer=producer)
        after = cancel_campaign(args.campaign_id, producer=producer)
        Console().print(_table(after))
        print(cancel_note(before, after))
        return 0

    return _calling(run)


def cancel_note(before: Any, after: Any) -> str:
    """What a cancel did, in words: a cancel that came too late must say so."""
    name = f"campaign {after.campaign_id}"
    if before.finished:
        return (f"{name} had already finished: nothing left to cancel ({before.accepted} "
                "numbers accepted by SendCloud)")
    if before.cancel_requested:
        return f"{name}: a cancel was already requested; {after.pending} numbers still pending"
    return (f"{name}: cancel requested; chunks not yet sent end as cancelled, a chunk already "
            f"with SendCloud finishes normally ({after.pending} numbers pending)")


def _discard(args: argparse.Namespace) -> int:
    from producers import discard_campaign

    def run(producer: Any) -> int:
        done = discard_campaign(args.campaign_id, producer=producer)
        print(f"campaign {done.campaign_id} discarded: {done.chunks} chunks, nothing sent "
              f"({done.stopped} queued jobs will end unsent); the id can be started again")
        return 0

    return _calling(run)


def _purge(args: argparse.Namespace) -> int:
    from producers import purge_campaign

    if not args.yes:
        raise UsageError("campaign purge deletes the campaign's report for good: add --yes")

    def run(producer: Any) -> int:
        chunks = purge_campaign(args.campaign_id, producer=producer)
        print(f"campaign {args.campaign_id} purged: {chunks} chunks and their results deleted")
        return 0

    return _calling(run)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("campaign", help="bulk SMS campaigns from a file of numbers",
                                   description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="campaign_command", metavar="COMMAND", required=True)

    start = commands.add_parser("start", help="enqueue (or resume) a campaign from a file")
    start.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    start.add_argument("file", metavar="FILE", help="numbers, one per line, or a CSV; - for stdin")
    start.add_argument("--template-id", type=int, required=True,
                       help="the SendCloud SMS template sent to every number")
    start.add_argument("--column", metavar="NAME|NUMBER",
                       help="read this CSV column: a header name, or a 1-based column number")
    start.add_argument("--skip-header", action="store_true",
                       help="the first line is a header (implied by a --column name)")
    start.add_argument("--var", action="append", type=_pair, metavar="NAME=VALUE",
                       help="template variable, the same for every recipient")
    start.add_argument("--msg-type", type=int, default=0, help="0 SMS (default), 1 MMS")
    start.add_argument("--tag", action="append", type=_pair, metavar="NAME=VALUE",
                       help="a tag SendCloud keeps with every chunk (repeatable)")
    start.add_argument("--dry-run", action="store_true",
                       help="read and check the file, print counts and samples; write nothing")
    start.set_defaults(func=_start)

    status = commands.add_parser("status", help="totals and progress")
    status.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    status.add_argument("--watch", action="store_true", help="refresh until the campaign ends")
    status.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between refreshes with --watch (default 1)")
    status.set_defaults(func=_status)

    report = commands.add_parser(
        "report", help="CSV: phone,outcome,smsId,statusCode,message,delivery,deliveryCode")
    report.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    report.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    report.set_defaults(func=_report)

    cancel = commands.add_parser("cancel", help="stop every chunk not yet sent")
    cancel.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    cancel.set_defaults(func=_cancel)

    discard = commands.add_parser(
        "discard", help="remove a campaign of which nothing was sent; its id is free again",
        description="Remove a campaign of which nothing was sent (every chunk still queued, "
        "or ended cancelled), so that its id can be started again with other input. Its "
        "queued jobs end unsent. A campaign a worker has begun to send is refused: cancel it.")
    discard.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    discard.set_defaults(func=_discard)

    purge = commands.add_parser(
        "purge", help="delete a finished campaign's data before its retention would",
        description="Delete a finished campaign's numbers, per-chunk results and job records "
        "(they expire after SENDCLOUD_CAMPAIGN_TTL, 30 days, anyway). Its report is gone "
        "afterwards; its campaign_finished record stays on the result stream.")
    purge.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    purge.add_argument("--yes", action="store_true", help="really delete it")
    purge.set_defaults(func=_purge)
