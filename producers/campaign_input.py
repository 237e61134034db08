"""The numbers of a campaign from a file: whole lines, or one column of a CSV file.

Shared by ``sendcloud-jobs campaign start`` and the HTTP API's upload, so both read a file the
same way: blank lines skipped, a UTF-8 byte-order mark dropped, a first line that is clearly a
header (no digit in it, a number on the next) skipped and noted, and a line of several CSV
columns refused unless a column is named. Reading is streaming: constant memory for any size.

A file the reader cannot take raises :class:`CampaignInputError` (a
:class:`~producers.errors.ProducerValidationError`) naming ``file`` or ``column`` and the rule.
"""

from __future__ import annotations

import csv
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import IO

from producers.errors import ProducerValidationError
from producers.validation import normalize_mainland

_PROGRESS_EVERY = 10_000  # lines between calls of advance(bytes)


class CampaignInputError(ProducerValidationError):
    """The file cannot be read as a list of numbers: ``field`` is ``file`` (its content) or
    ``column`` (the column asked for); nothing was written."""



class NumberSource:
    """The entries of a file of numbers: whole lines, or one CSV column; blank lines skipped.

    Iterating it reads the file once (``advance(bytes)`` is called every few thousand lines for
    the progress bar) and notes what messages need: the header row, a first line skipped as a
    header, and the line of each entry (:meth:`line_of`).
    """

    def __init__(self, binary: IO[bytes], column: str | None, skip_header: bool,
                 advance: Callable[[int], None] = lambda n: None) -> None:
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
            raise CampaignInputError(
                "file", f"line {self.line} has {len(cells)} CSV columns ({listed}); say which "
                "holds the numbers with column NAME or column NUMBER")

    def _column_index(self, reader: Iterator[list[str]]) -> int:
        column = self.column or ""
        if column.isdigit():
            if int(column) < 1:
                raise CampaignInputError("column", "a column number starts at 1")
            if self.skip_header:
                self.header = [name.strip() for name in next(reader, [])]
            return int(column) - 1
        self.header = [name.strip() for name in next(reader, [])]
        if column not in self.header:
            raise CampaignInputError(
                "column", f"no column {column!r} in the header row {self.header!r}")
        return self.header.index(column)


def read_numbers(
    binary: IO[bytes], column: str | None, skip_header: bool,
    advance: Callable[[int], None] = lambda n: None,
) -> Iterator[str]:
    """The entries of ``binary``: see :class:`NumberSource`."""
    return iter(NumberSource(binary, column, skip_header, advance))

