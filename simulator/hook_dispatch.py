"""Posting hook events in the background: a scheduler thread and a pool of senders.

The send path only hands over a *source* (one accepted request: a reference to its ledger
batch) and returns; nothing on it waits for a receiver. The scheduler thread draws what each
source's events will be, turns them into POSTs a window at a time (so a campaign of a million
numbers holds a few thousand pending POSTs, not a million), and hands due POSTs to
``connections`` sender threads, each with one keep-alive httpx connection.

Per POST, drawn once from the seeded dice when it enters the window, in a fixed order: a
delay within ``min_delay..max_delay``, whether it is sent again (``duplicate_ratio``: the
same token and signature replayed, or a fresh token, half each), whether it is held back
(``reorder_ratio``: released once later events have been accepted) and, with ``mixed``, its
encoding. One scheduler thread makes every draw, so a run with the same sends and seed makes
the same decisions. Follow-ups (an SMS reply after its deliver, a mail open after deliver)
are posted only once the event before them was accepted; their draws are made with it.

A POST is accepted when the receiver answers HTTP 200. Any other answer, or no answer within
``timeout``, is retried after ``retry_base * 2**(n-1)`` seconds (at most ``retry_max``) with
a fresh token, until ``max_attempts`` attempts; then the event, and its follow-ups, count as
given up. Delays and backoff run on the monotonic clock; event timestamps on the simulator's.
"""

from __future__ import annotations

import heapq
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import structlog

from simulator.hook_events import Fields, HookSettings, encode, new_token

log = structlog.get_logger("simulator.hooks")

#: POSTs drawn ahead of time: bounds memory while a receiver is slow or down.
WINDOW = 4096
#: A held-back event is released once this many later events were accepted.
HOLD_GAP = 3
HELD_RECHECK = 0.05
NO_DUPLICATE, SAME_TOKEN, FRESH_TOKEN = 0, 1, 2


@dataclass(slots=True)
class Event:
    """One event to post; ``then`` is the follow-up posted once this one is accepted."""

    channel: str  # "sms" | "mail"
    fields: Fields
    then: Event | None = None

    def chain(self) -> int:
        return 0 if self.then is None else 1 + self.then.chain()


class Source(Protocol):
    def start(self, rng: random.Random, settings: HookSettings) -> int:
        """Draw the outcomes (scheduler thread); return how many events will be posted."""

    def next_event(self) -> Event | None: ...


@dataclass(slots=True, frozen=True)
class Plan:
    delay: float
    duplicate: int
    hold: bool
    encoding: str


class Post:
    __slots__ = (
        "attempt",
        "copy",
        "encoding",
        "event",
        "later",
        "plan",
        "seq",
        "timestamp",
        "token",
    )

    def __init__(self, seq: int, event: Event, plan: Plan, later: tuple[Plan, ...],
                 copy: bool = False) -> None:
        self.seq, self.event, self.plan, self.later, self.copy = seq, event, plan, later, copy
        self.encoding = plan.encoding
        self.timestamp, self.token, self.attempt = 0, "", 0


@dataclass(slots=True, frozen=True)
class _Job:
    post: Post
    url: str | None
    key: str = field(repr=False)
    timeout: float
    generation: int


def backoff(settings: HookSettings, attempt: int) -> float:
    """Seconds before the retry that follows failed attempt number ``attempt`` (1-based)."""
    return float(min(settings.retry_base * 2 ** (attempt - 1), settings.retry_max))


class HookDispatcher:
    def __init__(self, settings: HookSettings, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self.lock = threading.Condition()
        self._wake = threading.Event()
        self._outbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[Post, bool, int]] = queue.SimpleQueue()
        self._intake: deque[Source] = deque()
        self._threads: list[threading.Thread] = []
        self._scheduler: threading.Thread | None = None
        self._stopping = False
        self.settings = settings
        self.reset(settings)

    # -- what other threads call -------------------------------------------------------------

    def submit(self, source: Source) -> None:
        """Hand a source over; returns at once (deque.append is atomic)."""
        self._intake.append(source)
        if self._scheduler is None:
            with self.lock:
                self._start_threads()
        self._wake.set()

    def configure(self, settings: HookSettings) -> None:
        with self.lock:
            if settings.seed != self.settings.seed:
                self._reseed(settings.seed)
            self.settings = settings
            if self._scheduler is not None:
                self._resize(settings.connections)
        self._wake.set()

    def reset(self, settings: HookSettings) -> None:
        """Forget every pending event and count; the dice back at the seed of ``settings``."""
        with self.lock:
            self._intake.clear()
            self.settings = settings
            self._sources: deque[Source] = deque()
            self._heap: list[tuple[float, int, Post]] = []
            self._held: list[tuple[Post, int]] = []
            self._unmaterialized = self._inflight = self._seq = 0
            self._done = self._max_done_seq = 0
            self._generation = getattr(self, "_generation", 0) + 1
            self.counts: Counter[str] = Counter()
            self.posted: Counter[tuple[str, str]] = Counter()
            self._reseed(settings.seed)
            if self._scheduler is not None:
                self._resize(settings.connections)

    def _reseed(self, seed: int) -> None:
        self.outcome_rng = random.Random(f"outcomes:{seed}")
        self._plan_rng = random.Random(f"delivery:{seed}")

    def pending(self) -> int:
        with self.lock:
            return self._pending()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is left to post (accepted or given up); False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: self._pending() == 0, timeout)

    def snapshot(self, read: Callable[[], Any]) -> tuple[dict[str, int], Any]:
        """The counters and ``read()`` taken together, while the scheduler stands still."""
        with self.lock:
            counts = dict(self.counts)
            counts["pending"] = self._pending()
            counts["window"] = len(self._heap) + len(self._held) + self._inflight
            for (channel, event), n in self.posted.items():
                counts[f"{channel}:{event}"] = n
            return counts, read()

    def close(self) -> None:
        with self.lock:
            self._stopping = True
            for _ in self._threads:
                self._outbox.put(None)
        self._wake.set()
        for thread in [*self._threads, *([self._scheduler] if self._scheduler else [])]:
            thread.join(timeout=10)
        self._threads.clear()
        self._scheduler = None

    # -- the scheduler (one thread; holds the lock only while it does bookkeeping) --------------

    def _pending(self) -> int:
        # A source not yet started counts as one: its events are not drawn yet.
        return (len(self._intake) + self._unmaterialized + len(self._heap) + len(self._held)
                + self._inflight)

    def _start_threads(self) -> None:
        if self._scheduler is not None or self._stopping:
            return
        self._scheduler = threading.Thread(target=self._schedule, name="sim-hook-scheduler",
                                           daemon=True)
        self._scheduler.start()
        self._resize(self.settings.connections)

    def _resize(self, connections: int) -> None:
        while len(self._threads) < connections:
            thread = threading.Thread(target=self._send_loop, name="sim-hook-sender",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        while len(self._threads) > connections:
            self._threads.pop()
            self._outbox.put(None)

    def _schedule(self) -> None:
        wait: float | None = None
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            with self.lock:
                if self._stopping:
                    return
                now = time.monotonic()
                self._collect(now)
                while self._intake:
                    source = self._intake.popleft()
                    self._unmaterialized += source.start(self.outcome_rng, self.settings)
                    self._sources.append(source)
                self._release_held(now)
                self._fill(now)
                wait = self._hand_out(now)
                if self._held and wait is None:
                    wait = HELD_RECHECK  # held events may be all that is left
                self.lock.notify_all()

    def _collect(self, now: float) -> None:
        while True:
            try:
                post, ok, generation = self._results.get_nowait()
            except queue.Empty:
                return
            if generation != self._generation:  # handed out before a reset: forget it
                continue
            self._inflight -= 1
            self._finish(post, ok, now)

    def _finish(self, post: Post, ok: bool, now: float) -> None:
        settings = self.settings
        self.counts["attempts"] += 1
        if not ok:
            if post.attempt < settings.max_attempts:
                self.counts["retries"] += 1
                heapq.heappush(self._heap, (now + backoff(settings, post.attempt), post.seq, post))
                return
            lost = post.event.chain() if not post.copy else 0
            dropped = 1 if post.plan.duplicate and not post.copy else 0
            self._unmaterialized -= lost + dropped
            self.counts["given_up"] += 1 + lost
            return
        self._done += 1
        self._max_done_seq = max(self._max_done_seq, post.seq)
        if post.copy:
            self.counts["duplicates_same_token" if post.plan.duplicate == SAME_TOKEN
                        else "duplicates_fresh_token"] += 1
            return
        self.posted[(post.event.channel, str(post.event.fields["event"]))] += 1
        if post.plan.duplicate:
            self._unmaterialized -= 1
            self._seq += 1
            copy = Post(self._seq, post.event, post.plan, (), copy=True)
            if post.plan.duplicate == SAME_TOKEN:
                copy.timestamp, copy.token = post.timestamp, post.token
            heapq.heappush(self._heap, (now + post.plan.delay, copy.seq, copy))
        if post.event.then is not None:
            self._materialize(post.event.then, post.later[0], post.later[1:], now)

    def _release_held(self, now: float) -> None:
        if not self._held:
            return
        drained = not (self._heap or self._inflight or self._sources or self._intake)
        keep: list[tuple[Post, int]] = []
        for post, mark in self._held:
            if drained or (self._done - mark >= HOLD_GAP and self._max_done_seq > post.seq):
                if self._max_done_seq > post.seq:
                    self.counts["reordered"] += 1
                heapq.heappush(self._heap, (now, post.seq, post))
            else:
                keep.append((post, mark))
        self._held = keep

    def _fill(self, now: float) -> None:
        while self._sources and len(self._heap) + len(self._held) + self._inflight < WINDOW:
            event = self._sources[0].next_event()
            if event is None:
                self._sources.popleft()
                continue
            plans = tuple(self._draw() for _ in range(1 + event.chain()))
            self._materialize(event, plans[0], plans[1:], now)

    def _draw(self) -> Plan:
        settings, rng = self.settings, self._plan_rng
        delay = 0.0
        if settings.max_delay > 0:
            delay = rng.uniform(settings.min_delay, settings.max_delay)
        duplicate = NO_DUPLICATE
        if settings.duplicate_ratio > 0 and rng.random() < settings.duplicate_ratio:
            duplicate = SAME_TOKEN if rng.random() < 0.5 else FRESH_TOKEN
        hold = settings.reorder_ratio > 0 and rng.random() < settings.reorder_ratio
        encoding = settings.encoding
        if encoding == "mixed":
            encoding = rng.choice(("form", "json"))
        return Plan(delay, duplicate, hold, encoding)

    def _materialize(self, event: Event, plan: Plan, later: tuple[Plan, ...],
                     now: float) -> None:
        self._unmaterialized -= 1
        self._seq += 1
        post = Post(self._seq, event, plan, later)
        if plan.duplicate:
            self._unmaterialized += 1  # the copy, posted once the original is accepted
        if plan.hold:
            self.counts["held_back"] += 1
            self._held.append((post, self._done))
        else:
            heapq.heappush(self._heap, (now + plan.delay, post.seq, post))

    def _hand_out(self, now: float) -> float | None:
        settings = self.settings
        while self._heap and self._inflight < settings.connections:
            due, _, post = self._heap[0]
            if due > now:
                return due - now
            heapq.heappop(self._heap)
            post.attempt += 1
            if not (post.copy and post.plan.duplicate == SAME_TOKEN):
                post.timestamp, post.token = self._clock_ms(), new_token()
            channel = post.event.channel
            url = settings.sms_url if channel == "sms" else settings.mail_url
            key = settings.sms_key if channel == "sms" else settings.mail_key
            self._inflight += 1
            self._outbox.put(_Job(post, url, key, settings.timeout, self._generation))
        return None

    # -- the senders ----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        with httpx.Client(limits=httpx.Limits(max_connections=1,
                                              max_keepalive_connections=1)) as client:
            while (job := self._outbox.get()) is not None:
                ok = job.url is not None and _post(client, job.post, job.url, job.key,
                                                   job.timeout)
                self._results.put((job.post, ok, job.generation))
                self._wake.set()


def _post(client: httpx.Client, post: Post, url: str, key: str, timeout: float) -> bool:
    body, content_type = encode(post.event.fields, key=key, timestamp=post.timestamp,
                                token=post.token, encoding=post.encoding)
    try:
        reply = client.post(url, content=body, headers={"Content-Type": content_type},
                            timeout=timeout)
    except httpx.HTTPError as exc:
        log.debug("hook post failed", hook_event=post.event.fields["event"],
                  attempt=post.attempt, error=type(exc).__name__)
        return False
    if reply.status_code != 200:
        log.debug("hook refused", hook_event=post.event.fields["event"], attempt=post.attempt,
                  status=reply.status_code)
    return reply.status_code == 200
