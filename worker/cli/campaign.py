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
import csv
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import IO, Any

from producers.validation import normalize_mainland
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
_PROGRESS_EVERY = 10_000  # lines between progress bar updates
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


class NumberSource:
    """The entries of a file of numbers: whole lines, or one CSV column; blank lines skipped.

    Iterating it reads the file once (``advance(bytes)`` is called every few thousand lines for
    the progress bar) and notes what messages need: the header row, a first line skipped as a
    header, and the line of each entry (:meth:`line_of`).
    """

    def __init__(self, binary: IO[bytes], column: str | None, skip_header: bool,
                 advance: Callable[[int], None]) -> None:
        self.binary = binary
        self.column = column
        self.skip_header = skip_header
        self.advance = advance
        self.header: list[str] | None = None  # the CSV header row, when one was read
        self.skipped_header: tuple[int, str] | None = None  # (line, entry) taken for a header
        self.line = 0  # physical lines read so far
        self.entries = 0  # entries yielded so far
        # (entry, line - entry) from that entry on: a short list, it grows only at blank lines
        # and header rows, so line_of costs no memory per entry.
        self._offsets: list[tuple[int, int]] = [(1, 0)]

    def line_of(self, entry: int) -> int:
        """The line (1-based) of entry ``entry`` (1-based), once it was read."""
        at = bisect_right(self._offsets, (entry, sys.maxsize)) - 1
        return entry + self._offsets[max(at, 0)][1]

    def __iter__(self) -> Iterator[str]:
        entries = self._cells()
        first = next(entries, None)
        if first is None:
            return
        first_line = self.line
        pending = [(first_line, first)]
        if self._may_be_header(first):
            second = next(entries, None)
            if second is not None:
                if normalize_mainland(second) is not None:
                    self.skipped_header = (first_line, first)
                    pending = []
                pending.append((self.line, second))
        for line, entry in pending:
            yield self._count(line, entry)
        for entry in entries:
            yield self._count(self.line, entry)

    def _count(self, line: int, entry: str) -> str:
        self.entries += 1
        if line - self.entries != self._offsets[-1][1]:
            self._offsets.append((self.entries, line - self.entries))
        return entry

    def _may_be_header(self, entry: str) -> bool:
        """A first entry that may be a header row's cell: some text, no digit; the caller
        checks that the next entry is a number. With --skip-header or a --column name the
        header was taken already."""
        if self.skip_header or (self.column is not None and not self.column.isdigit()):
            return False
        return bool(entry) and not any(ch.isdigit() for ch in entry)

    def _lines(self) -> Iterator[str]:
        pending = 0
        first = True
        for raw in self.binary:
            pending += len(raw)
            self.line += 1
            if self.line % _PROGRESS_EVERY == 0:
                self.advance(pending)
                pending = 0
            text = raw.decode("utf-8", errors="replace")
            if first:
                text, first = text.removeprefix("\ufeff"), False
            yield text
        self.advance(pending)

    def _cells(self) -> Iterator[str]:
        if self.column is None:
            rows = (line.strip() for line in self._lines())
            if self.skip_header:
                header = next(rows, None)
                if header:
                    self._one_column(header)
            checked = False
            for line in rows:
                if line:
                    if not checked:
                        self._one_column(line)
                        checked = True
                    yield line
        else:
            reader = csv.reader(self._lines())
            index = self._column_index(reader)
            for row in reader:
                cell = row[index].strip() if index < len(row) else ""
                if cell or any(row):
                    yield cell

    def _one_column(self, line: str) -> None:
        """Without --column every line is one entry: a CSV row of several is a mistake."""
        cells = [cell.strip() for cell in next(csv.reader([line]), [])]
        if sum(1 for cell in cells if cell) > 1:
            listed = ", ".join(repr(cell) for cell in cells)
            raise UsageError(f"FILE: line {self.line} has {len(cells)} CSV columns ({listed}); "
                             "say which holds the numbers with --column NAME or --column NUMBER")

    def _column_index(self, reader: Iterator[list[str]]) -> int:
        column = self.column or ""
        if column.isdigit():
            if int(column) < 1:
                raise UsageError("--column: a column number starts at 1")
            if self.skip_header:
                self.header = [name.strip() for name in next(reader, [])]
            return int(column) - 1
        self.header = [name.strip() for name in next(reader, [])]
        if column not in self.header:
            raise UsageError(f"--column: no column {column!r} in the header row {self.header!r}")
        return self.header.index(column)


def read_numbers(
    binary: IO[bytes], column: str | None, skip_header: bool, advance: Callable[[int], None]
) -> Iterator[str]:
    """The entries of ``binary``: see :class:`NumberSource`."""
    return iter(NumberSource(binary, column, skip_header, advance))


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
        with binary:
            return _dry_run(args, NumberSource(binary, args.column, args.skip_header,
                                               lambda n: None))

    def run(producer: Any) -> int:
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeElapsedColumn())
        with binary, Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"campaign {args.campaign_id}", total=size)
            source = NumberSource(binary, args.column, args.skip_header,
                                  lambda n: progress.advance(task, n))
            try:
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
