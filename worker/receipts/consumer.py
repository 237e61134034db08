"""The receipts consumer: reads the SMS hook inbox through a consumer group and matches each event.

The web process only verifies a hook and appends it to the inbox stream; everything else
happens here, off the request path. Any number of consumers may run (``sendcloud-jobs
receipts``, one name each); the group hands each entry to one of them.

An entry is acknowledged and deleted only after :class:`~worker.receipts.matcher.Matcher` has
recorded it (or found it already recorded, or of no use). One it cannot match yet stays pending
in the group; so does one whose consumer died mid-batch. Every ``retry_after`` seconds each
consumer claims entries pending that long (``XAUTOCLAIM``) and handles them again: nothing is
dropped, and the matcher's exactly-once write makes a second handling harmless.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import structlog

from worker.receipts.matcher import Outcome
from worker.web.inbox import SMS_INBOX, decode_entry

log = structlog.get_logger("sendcloud.receipts")

GROUP = "receipts"


class Handler(Protocol):
    """What a consumer feeds: worker.receipts.matcher.Matcher (SMS), worker.receipts.mail
    .MailEvents (mail). ``now`` is Redis's time (s)."""

    def handle(self, event: Mapping[str, Any], received_at_ms: int, now: float) -> Outcome: ...

Entry = tuple[str, dict[str, Any], int]  # inbox id, event, received_at (ms)


@dataclass
class Totals:
    recorded: int = 0
    duplicate: int = 0
    waiting: int = 0
    ignored: int = 0
    unreadable: int = 0


class Consumer:
    def __init__(
        self, client: redis.Redis, matcher: Handler, *, name: str | None = None,
        batch: int = 200, block_ms: int = 1000, retry_after: float = 10.0,
        inbox: str = SMS_INBOX,
    ) -> None:
        self.client = client
        self.matcher = matcher
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.block_ms = block_ms
        self.retry_after = retry_after
        self.inbox = inbox
        self.totals = Totals()
        self._next_claim = 0.0
        self._claim_from = "0-0"

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.inbox, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _redis_now(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    def step(self) -> int:
        """Handle one batch: pending entries due for another try first, then new ones. Returns
        how many entries were handled (acknowledged or left waiting)."""
        now = self._redis_now()
        entries: list[Entry] = []
        if now >= self._next_claim:
            entries = self._claim_pending()
            # A full page may have more behind it: go on at once; else wait for the next round.
            self._next_claim = now if self._claim_from != "0-0" else now + self.retry_after
        if not entries:
            reply: Any = self.client.xreadgroup(GROUP, self.name, {self.inbox: ">"},
                                           count=self.batch, block=self.block_ms)
            entries = [self._entry(i, f) for _, items in reply or [] for i, f in items]
            now = self._redis_now()
        return self._handle(entries, now)

    def _claim_pending(self) -> list[Entry]:
        reply: Any = self.client.xautoclaim(self.inbox, GROUP, self.name,
                                       min_idle_time=int(self.retry_after * 1000),
                                       start_id=self._claim_from, count=self.batch)
        cursor, claimed = reply[0], reply[1]
        self._claim_from = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        return [self._entry(i, f) for i, f in claimed if f]

    def _entry(self, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        try:
            event, received = decode_entry(fields)
        except ValueError:
            # Only the web process writes the inbox; an unreadable entry is acknowledged, and
            # logged by id (its content may hold a phone, never a secret).
            self.totals.unreadable += 1
            log.error("receipt.unreadable", inbox_id=ident)
            return ident, {}, 0
        return ident, event, received

    def _handle(self, entries: Sequence[Entry], now: float) -> int:
        done: list[str] = []
        for ident, event, received in entries:
            if not event:
                done.append(ident)
                continue
            outcome = self.matcher.handle(event, received, now)
            setattr(self.totals, outcome.status, getattr(self.totals, outcome.status) + 1)
            if outcome.status == "waiting":
                continue  # stays pending: claimed again after retry_after
            if outcome.status == "recorded":
                log.info("receipt.recorded", job_key=outcome.key, hook_event=event.get("event"),
                         inbox=self.inbox, inbox_id=ident, entry=outcome.entry)
            done.append(ident)
        if done:
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(self.inbox, GROUP, *done)
            pipe.xdel(self.inbox, *done)
            pipe.execute()
        return len(entries)

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        self.ensure_group()
        while not stop():
            try:
                self.step()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("receipts.redis_unreachable", error=type(exc).__name__)
                time.sleep(1.0)
