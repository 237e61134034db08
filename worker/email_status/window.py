"""Which request dates one emailStatus poll reads, and what it could not reach.

emailStatus filters by the date an email was *requested*, not by when its status changed, and
takes whole dates in China Standard Time. So a poll reads every request date from (the last
successful poll, minus an overlap) to today, and always at least the last ``settle_days`` dates:
an email requested two days ago can still turn from "requested" to "soft bounce" today, and the
cursor alone would never look back at its date.

The reach is 30 days. The docs contradict themselves: ``days`` "cannot be more than 30 days",
and the start/end interval "cannot be more than 30 days", yet a tip says "Time span cannot be
longer than 3 months". This module keeps to 30 (today and the 29 dates before it), which is
valid under either reading. Request dates older than that, which a long downtime left unread,
are reported as a :class:`Gap`: their late status changes can no longer be seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from worker.email_status.records import SHANGHAI

#: The most dates one query may span, today included (see the module docstring).
MAX_SPAN_DAYS = 30


@dataclass(frozen=True)
class Gap:
    """Request dates (inclusive) a poll should have re-read but could no longer reach."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def describe(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()} ({self.days} days)"


@dataclass(frozen=True)
class Window:
    """The request dates (inclusive, Shanghai) one poll reads."""

    start: date
    end: date
    gap: Gap | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def describe(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()} ({self.days} days)"


def earliest_reachable(today: date) -> date:
    return today - timedelta(days=MAX_SPAN_DAYS - 1)


def plan_window(
    now: datetime,
    cursor: datetime | None,
    *,
    overlap: timedelta,
    settle_days: int,
    days: int | None = None,
) -> Window:
    """The window for a poll starting at ``now``.

    ``cursor`` is when the last successful poll started (None before the first one).
    ``days`` asks for at least the last ``days`` dates; it widens the window, never narrows
    it, so forcing a poll cannot skip what the cursor says is still unread.
    """
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    if settle_days < 1:
        raise ValueError(f"settle_days: must be at least 1, got {settle_days}")
    if days is not None and not 1 <= days <= MAX_SPAN_DAYS:
        raise ValueError(f"days: must be between 1 and {MAX_SPAN_DAYS}, got {days}")
    today = now.astimezone(SHANGHAI).date()
    earliest = earliest_reachable(today)
    wanted = today - timedelta(days=min(settle_days, MAX_SPAN_DAYS) - 1)
    if days is not None:
        wanted = min(wanted, today - timedelta(days=days - 1))
    if cursor is not None:
        if cursor.tzinfo is None:
            raise ValueError("cursor: must be timezone-aware")
        wanted = min(wanted, (cursor - overlap).astimezone(SHANGHAI).date())
    if wanted >= earliest:
        return Window(start=wanted, end=today)
    return Window(start=earliest, end=today, gap=Gap(wanted, earliest - timedelta(days=1)))
