"""One emailStatus poll: read every page of the window, publish each status change once.

A poll plans its window from the cursor (see ``worker.email_status.window``), pages through
emailStatus with ``start``/``limit``, and hands each page to one Lua script that, per email,
compares the state's fingerprint (modifiedTime, status, subStatus) with the last one published
and, only when it differs, stores the new one and XADDs the record to
``sendcloud:results:email_status``. Compare, store and XADD are one atomic step, so pollers
running at the same time, overlapping windows and re-reads of the settle lookback all publish
each change exactly once. A state whose modifiedTime is older than the one already published is
dropped, so a slow poller cannot re-publish a superseded status.

The last-published fingerprints live in one hash per request date that expires 32 days after
that date, just past the 30 days emailStatus can still return it, so the state stays bounded.

The mail webhook (:mod:`worker.receipts.mail`) reports the same status changes
(delivered, invalid, soft bounce) as they happen. Each is published once per email and status,
by whichever source saw it first: both set the field ``<emailId>#<status>`` in the same
seen-hash, in the same script as their XADD, and publish only when they set it.

Every call first takes a slot from the shared
:class:`~worker.email_status.ratelimit.RateLimiter`. A 50000 (or any other transient failure)
backs off, holds back every process sharing the limiter, and retries the same page; a poll that
gives up raises and leaves the cursor where it was, so the next one reads the whole window again
(publishing nothing twice).

Pages are read by offset. If SendCloud files new emails into the window while a poll pages
through it, an item can shift across a page boundary and be skipped by this poll; the next poll
re-reads the same dates and publishes it then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import redis
import structlog

from producers.contract import EMAIL_STATUS_STREAM, KEY_PREFIX
from worker.email_status.ratelimit import RateLimiter
from worker.email_status.records import (
    SHANGHAI,
    StatusRecord,
    fingerprint,
    normalise,
    request_date,
)
from worker.email_status.window import Gap, Window, plan_window
from worker.sendcloud.errors import SendCloudError, ThrottledError
from worker.settings import Settings

log = structlog.get_logger(__name__)

CURSOR_KEY = f"{KEY_PREFIX}poller:cursor"
SEEN_KEY_PREFIX = f"{KEY_PREFIX}poller:seen:"
GAPS_KEY = f"{KEY_PREFIX}poller:gaps"
GAP_REASON = "request dates older than 30 days can no longer be queried"
#: How long a request date's fingerprints are kept after that date.
SEEN_RETENTION = timedelta(days=32)
#: Status changes that the poller and the mail webhook both report: each is published once per
#: email, by whichever source saw it first, marked in the seen-hash by status_marker.
SHARED_STATUSES = frozenset({"delivered", "invalid", "soft_bounce"})
MAX_PAGE_SIZE = 100

# KEYS: stream, then one seen-hash per record. ARGV: maxlen, then six per record: TTL in
# seconds, email id, fingerprint, modified time, the status change's marker ("" for none; see
# status_marker) and the entry's fields as a flat JSON array [name, value, ...] (one argument
# instead of two dozen keeps the call cheap to encode). Returns the ids it published.
_EMIT = """
local maxlen = ARGV[1]
local published = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local pos = (i - 2) * 6 + 2
  local id, fp, mtime, marker = ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], ARGV[pos + 4]
  local prev = redis.call('HGET', key, id)
  local fresh = prev ~= fp
  if fresh and prev then
    local prev_mtime = string.match(prev, '^([^|]*)|') or ''
    fresh = mtime >= prev_mtime
  end
  if fresh then
    redis.call('HSET', key, id, fp)
    redis.call('EXPIRE', key, ARGV[pos])
    -- The mail webhook may have published this status change first (worker.email_status.hooks).
    if marker == '' or redis.call('HSETNX', key, marker, '1') == 1 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
                 unpack(cjson.decode(ARGV[pos + 5])))
      published[#published + 1] = id
    end
  end
end
return published
"""

# Moves the cursor forward only: a slow poll finishing late must not pull it back.
_ADVANCE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'until', ARGV[1], 'until_iso', ARGV[2], 'window', ARGV[3],
           'polled_at', ARGV[4])
return 1
"""


def status_marker(email_id: str, status: str) -> str:
    """The seen-hash field that says ``status`` was published for ``email_id``; "" when the
    status is not one both sources report."""
    return f"{email_id}#{status}" if status in SHARED_STATUSES else ""


class StatusPage(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def records(self) -> Sequence[StatusRecord]: ...


class EmailStatusSource(Protocol):
    """What a poll needs of ``worker.sendcloud.client.SendCloudClient``."""

    def email_status(
        self,
        *,
        start_date: date | None = ...,
        end_date: date | None = ...,
        label_id: str | None = ...,
        api_user_list: Sequence[str] | None = ...,
        status: int | None = ...,
        start: int = ...,
        limit: int = ...,
    ) -> StatusPage: ...


class PollAborted(Exception):
    """A page kept failing after every retry; the cursor did not move."""


@dataclass(frozen=True)
class PollConfig:
    overlap: timedelta = timedelta(minutes=15)
    settle_days: int = 3
    page_size: int = MAX_PAGE_SIZE
    api_users: tuple[str, ...] = ()
    label_id: str | None = None
    status: int | None = None
    #: Attempts per page before the poll gives up (throttling and other transient failures).
    attempts: int = 8
    backoff: float = 2.0
    max_backoff: float = 60.0
    stream: str = EMAIL_STATUS_STREAM
    stream_maxlen: int = 100_000

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: must be between 1 and {MAX_PAGE_SIZE}")
        if self.attempts < 1:
            raise ValueError("attempts: must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> PollConfig:
        return cls(
            overlap=timedelta(minutes=settings.poll_overlap_minutes),
            settle_days=settings.poll_settle_days,
            api_users=settings.poll_api_users,
            label_id=settings.poll_label_id,
            status=settings.poll_status,
            stream_maxlen=settings.results_maxlen,
        )


@dataclass
class PollSummary:
    window: Window
    started_at: datetime
    cursor_before: datetime | None
    pages: int = 0
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    records_seen: int = 0
    changes_emitted: int = 0
    finished_at: datetime | None = None
    cursor_advanced: bool = False
    gap_reported: bool = False

    @property
    def gap(self) -> Gap | None:
        return self.window.gap

    def as_dict(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "window_days": self.window.days,
            "pages": self.pages,
            "calls": self.calls,
            "retries": self.retries,
            "throttled": self.throttled,
            "records_seen": self.records_seen,
            "changes_emitted": self.changes_emitted,
            "gap": None if gap is None else {"start": gap.start.isoformat(),
                                             "end": gap.end.isoformat(), "days": gap.days},
            "cursor_before": None if self.cursor_before is None
            else self.cursor_before.isoformat(),
            "cursor_advanced": self.cursor_advanced,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


def _now() -> datetime:
    return datetime.now(SHANGHAI)


@dataclass
class EmailStatusPoller:
    source: EmailStatusSource
    redis: redis.Redis
    config: PollConfig = field(default_factory=PollConfig)
    limiter: RateLimiter | None = None
    clock: Callable[[], datetime] = _now
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._emit = self.redis.register_script(_EMIT)
        self._advance = self.redis.register_script(_ADVANCE)

    # -- cursor ----------------------------------------------------------------------------

    def cursor(self) -> datetime | None:
        """When the last successful poll started, or None before the first."""
        raw = self.redis.hget(CURSOR_KEY, "until")
        if raw is None:
            return None
        return datetime.fromtimestamp(float(raw), SHANGHAI)

    # -- the poll --------------------------------------------------------------------------

    def poll(self, *, days: int | None = None) -> PollSummary:
        started = self.clock().astimezone(SHANGHAI)
        cursor = self.cursor()
        window = plan_window(
            started, cursor, overlap=self.config.overlap,
            settle_days=self.config.settle_days, days=days,
        )
        summary = PollSummary(window=window, started_at=started, cursor_before=cursor)
        bound = log.bind(window=window.describe())
        bound.info("poll_started", cursor=None if cursor is None else cursor.isoformat())
        if window.gap is not None:
            summary.gap_reported = self._report_gap(window.gap, cursor, started)
        offset = 0
        while True:
            page = self._fetch(window, offset, summary)
            summary.pages += 1
            records = list(page.records)
            summary.records_seen += len(records)
            if records:
                summary.changes_emitted += self._publish(records, window.end)
            offset += len(records)
            if not records or offset >= page.total:
                break
        summary.cursor_advanced = bool(self._advance(
            keys=[CURSOR_KEY],
            args=[repr(started.timestamp()), started.isoformat(), window.describe(),
                  self.clock().astimezone(SHANGHAI).isoformat()],
        ))
        summary.finished_at = self.clock().astimezone(SHANGHAI)
        bound.info(
            "poll_finished", pages=summary.pages, calls=summary.calls,
            records_seen=summary.records_seen, changes_emitted=summary.changes_emitted,
            throttled=summary.throttled,
        )
        return summary

    def _fetch(self, window: Window, offset: int, summary: PollSummary) -> StatusPage:
        """One page, retried in place: throttling must not restart the poll from page one."""
        cfg = self.config
        failures = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            summary.calls += 1
            try:
                return self.source.email_status(
                    start_date=window.start,
                    end_date=window.end,
                    api_user_list=list(cfg.api_users) or None,
                    label_id=cfg.label_id,
                    status=cfg.status,
                    start=offset,
                    limit=cfg.page_size,
                )
            except SendCloudError as exc:
                if not exc.transient:
                    raise
                failures += 1
                throttled = isinstance(exc, ThrottledError)
                summary.throttled += int(throttled)
                if failures >= cfg.attempts:
                    raise PollAborted(
                        f"emailStatus page at start={offset} failed {failures} times: {exc}"
                    ) from exc
                summary.retries += 1
                delay = min(cfg.max_backoff, cfg.backoff * 2 ** (failures - 1))
                log.warning(
                    "poll_page_retry", start=offset, attempt=failures, delay_s=delay,
                    error=type(exc).__name__, status_code=exc.code,
                )
                if throttled and self.limiter is not None:
                    # Everyone sharing the budget went too fast, not just this poller.
                    self.limiter.penalize(delay)
                self.sleep(delay)

    def _publish(self, records: Sequence[StatusRecord], fallback: date) -> int:
        polled_at = self.clock()
        entries = []
        for record in records:
            day = request_date(record, fallback)
            expire_at = datetime.combine(day, datetime.min.time(), SHANGHAI) + SEEN_RETENTION
            entries.append(_Entry(
                seen_key=f"{SEEN_KEY_PREFIX}{day.isoformat()}",
                # Relative to the poll's clock (not Redis'), and never less than a day, so a
                # record SendCloud still returns is never forgotten at once.
                ttl=max(86400, int((expire_at - polled_at).total_seconds())),
                member=record.email_id,
                fingerprint=fingerprint(record),
                modified_time=(record.modified_time or "").strip(),
                fields=normalise(record, polled_at),
            ))
        return self._emit_once(entries)

    def _emit_once(self, entries: Sequence[_Entry]) -> int:
        """XADD each entry whose fingerprint is new, atomically; returns how many were added."""
        keys = [self.config.stream]
        args: list[str | int] = [self.config.stream_maxlen]
        for entry in entries:
            keys.append(entry.seen_key)
            pairs = [item for pair in entry.fields.items() for item in pair]
            marker = status_marker(entry.member, entry.fields.get("status", ""))
            args += [entry.ttl, entry.member, entry.fingerprint, entry.modified_time,
                     "" if entry.seen_key == GAPS_KEY else marker,
                     json.dumps(pairs, ensure_ascii=False)]
        return len(self._emit(keys=keys, args=args))

    def _report_gap(self, gap: Gap, cursor: datetime | None, now: datetime) -> bool:
        """Log the gap, and publish it on the stream once (later polls may plan it again)."""
        log.warning(
            "poll_gap", gap_start=gap.start.isoformat(), gap_end=gap.end.isoformat(),
            days=gap.days, cursor=None if cursor is None else cursor.isoformat(),
            reason=GAP_REASON,
        )
        entry = _Entry(
            seen_key=GAPS_KEY,
            ttl=int(SEEN_RETENTION.total_seconds()),
            member=f"{gap.start.isoformat()}..{gap.end.isoformat()}",
            fingerprint="|gap",
            modified_time="",
            fields={
                "event": "gap",
                "gap_start": gap.start.isoformat(),
                "gap_end": gap.end.isoformat(),
                "gap_days": str(gap.days),
                "cursor": "" if cursor is None else cursor.isoformat(),
                "reason": GAP_REASON,
                "polled_at": now.isoformat(timespec="seconds"),
            },
        )
        return self._emit_once([entry]) == 1


@dataclass(frozen=True)
class _Entry:
    seen_key: str
    ttl: int
    member: str
    fingerprint: str
    modified_time: str
    fields: dict[str, str]
