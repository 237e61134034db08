"""``sendcloud-jobs campaign start|status|report|cancel``: bulk SMS campaigns from a file.

``start`` reads numbers one per line, or one column of a CSV file (``--column``: a header name,
or a 1-based column number), and streams them into :func:`producers.start_campaign` with a
progress bar. Running ``start`` again with the same id and file resumes a campaign whose upload
died; another file under the same id is refused. ``status --watch`` follows progress live,
``report`` writes the per-recipient CSV, ``cancel`` stops chunks not yet sent.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from worker.cli import UsageError
from worker.cli.enqueue import _pair, _pairs
from worker.cli.health import load_settings

_PROGRESS_EVERY = 10_000  # lines between progress bar updates


def _producer() -> Any:
    from producers import Producer

    settings = load_settings()
    return Producer(redis_url=settings.redis_url, idempotency_ttl=settings.idempotency_ttl)


def _calling(action: Callable[[Any], int]) -> int:
    """Run ``action(producer)``; campaign errors become one line on stderr."""
    from producers import CampaignBusy, CampaignConflict, CampaignNotFound

    producer = _producer()
    try:
        return action(producer)
    except (CampaignBusy, CampaignConflict, CampaignNotFound) as exc:
        raise UsageError(str(exc)) from None
    finally:
        producer.close()


def read_numbers(
    binary: IO[bytes], column: str | None, skip_header: bool, advance: Callable[[int], None]
) -> Iterator[str]:
    """The numbers of ``binary``: whole lines, or one CSV column. Blank lines are skipped;
    ``advance(bytes)`` is called every few thousand lines for the progress bar."""
    pending = 0
    count = 0

    def lines() -> Iterator[str]:
        nonlocal pending, count
        first = True
        for raw in binary:
            pending += len(raw)
            count += 1
            if count % _PROGRESS_EVERY == 0:
                advance(pending)
                pending = 0
            text = raw.decode("utf-8", errors="replace")
            if first:
                text, first = text.removeprefix("\ufeff"), False
            yield text

    if column is None:
        rows: Iterator[str] = (line.strip() for line in lines())
        if skip_header:
            next(rows, None)
        yield from (line for line in rows if line)
    else:
        reader = csv.reader(lines())
        index = _column_index(column, reader, skip_header)
        for row in reader:
            cell = row[index].strip() if index < len(row) else ""
            if cell or any(row):
                yield cell
    advance(pending)


def _column_index(column: str, reader: Iterator[list[str]], skip_header: bool) -> int:
    if column.isdigit():
        if int(column) < 1:
            raise UsageError("--column: a column number starts at 1")
        if skip_header:
            next(reader, None)
        return int(column) - 1
    header = [name.strip() for name in next(reader, [])]
    if column not in header:
        raise UsageError(f"--column: no column {column!r} in the header row {header!r}")
    return header.index(column)


def _start(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from producers import start_campaign

    console = Console(stderr=True)
    try:
        binary = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"FILE: cannot read {args.file!r}: {exc.strerror}") from None
    size = None if args.file == "-" else os.fstat(binary.fileno()).st_size

    def run(producer: Any) -> int:
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeElapsedColumn())
        with binary, Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"campaign {args.campaign_id}", total=size)
            numbers = read_numbers(binary, args.column, args.skip_header,
                                   lambda n: progress.advance(task, n))
            result = start_campaign(args.campaign_id, args.template_id, numbers,
                                    _pairs(args.var), msg_type=args.msg_type,
                                    tag=_pairs(args.tag), producer=producer)
        print(f"campaign {result.campaign_id}: {result.input} entries, {result.valid} valid, "
              f"{result.invalid} invalid, {result.duplicates} duplicates; {result.chunks} chunks, "
              f"{result.enqueued} enqueued now, {result.skipped} already enqueued"
              + (" (resumed)" if result.resumed else ""))
        return 0

    return _calling(run)


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
    ]
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

    from producers import cancel_campaign

    def run(producer: Any) -> int:
        Console().print(_table(cancel_campaign(args.campaign_id, producer=producer)))
        return 0

    return _calling(run)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("campaign", help="bulk SMS campaigns from a file of numbers",
                                   description=__doc__)
    commands = parser.add_subparsers(dest="campaign_command", metavar="COMMAND", required=True)

    start = commands.add_parser("start", help="enqueue (or resume) a campaign from a file")
    start.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    start.add_argument("file", metavar="FILE", help="numbers, one per line, or a CSV; - for stdin")
    start.add_argument("--template-id", type=int, required=True)
    start.add_argument("--column", metavar="NAME|NUMBER",
                       help="read this CSV column: a header name, or a 1-based column number")
    start.add_argument("--skip-header", action="store_true",
                       help="the first line is a header (implied by a --column name)")
    start.add_argument("--var", action="append", type=_pair, metavar="NAME=VALUE",
                       help="template variable, the same for every recipient")
    start.add_argument("--msg-type", type=int, default=0, help="0 SMS (default), 1 MMS")
    start.add_argument("--tag", action="append", type=_pair, metavar="NAME=VALUE")
    start.set_defaults(func=_start)

    status = commands.add_parser("status", help="totals and progress")
    status.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    status.add_argument("--watch", action="store_true", help="refresh until the campaign ends")
    status.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")
    status.set_defaults(func=_status)

    report = commands.add_parser("report", help="CSV: phone,outcome,smsId,statusCode,message")
    report.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    report.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    report.set_defaults(func=_report)

    cancel = commands.add_parser("cancel", help="stop every chunk not yet sent")
    cancel.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    cancel.set_defaults(func=_cancel)
