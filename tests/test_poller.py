"""One emailStatus poll against the real simulator and a real Redis."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from producers.contract import EMAIL_STATUS_STREAM
from simulator.core import Simulator
from tests.jobs_harness import fast_settings
from worker.email_status.poller import CURSOR_KEY, EmailStatusPoller, PollAborted, PollConfig
from worker.email_status.ratelimit import RateLimiter
from worker.email_status.records import SHANGHAI
from worker.email_status.window import Gap
from worker.sendcloud.client import SendCloudClient

START = datetime(2024, 5, 20, 9, 0, tzinfo=SHANGHAI)


class FakeClock:
    """One clock for the simulator and the poller; sleeping moves it on."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start.timestamp()
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.time(), SHANGHAI)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class Recording:
    """The real client, remembering the ``start`` of every call it was asked to make."""

    client: SendCloudClient
    starts: list[int] = field(default_factory=list)
    #: Runs once, after the first reply is read and before the poller sees it.
    after_reply: Callable[[], None] | None = None

    def email_status(self, **kwargs: Any) -> Any:
        self.starts.append(kwargs["start"])
        page = self.client.email_status(**kwargs)
        if self.after_reply is not None:
            hook, self.after_reply = self.after_reply, None
            hook()
        return page


@dataclass
class Env:
    sim: Simulator
    clock: FakeClock
    redis_url: str
    clients: list[Any] = field(default_factory=list)

    def poller(self, *, limiter: bool = False, **config: Any) -> EmailStatusPoller:
        """A poller with its own Redis and HTTP clients, as a separate process would have."""
        client = SendCloudClient(fast_settings(self.redis_url), transport=self.sim.transport())
        conn = redis.Redis.from_url(self.redis_url)
        self.clients += [client, conn]
        return EmailStatusPoller(
            source=Recording(client),
            redis=conn,
            config=PollConfig(backoff=1.0, **config),
            limiter=RateLimiter(conn, 2500) if limiter else None,
            clock=self.clock.datetime,
            sleep=self.clock.sleep,
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def env(redis_url: str) -> Iterator[Env]:
    clock = FakeClock()
    made = Env(Simulator(clock=clock.time), clock, redis_url)
    yield made
    made.close()


def stream(redis_client: redis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in redis_client.xrange(EMAIL_STATUS_STREAM)
    ]


def status_events(redis_client: redis.Redis) -> list[dict[str, str]]:
    return [e for e in stream(redis_client) if e["event"] == "status"]


def starts_of(poller: EmailStatusPoller) -> list[int]:
    source = poller.source
    assert isinstance(source, Recording)
    return source.starts


def test_every_record_over_many_pages_is_published_once(
    env: Env, redis_client: redis.Redis
) -> None:
    ids = env.sim.seed_email_status(1050)
    summary = env.poller(limiter=True).poll()
    assert (summary.pages, summary.calls) == (11, 11)
    assert (summary.records_seen, summary.changes_emitted) == (1050, 1050)
    events = status_events(redis_client)
    assert [e["email_id"] for e in events] == ids
    first = events[0]
    assert (first["status"], first["status_raw"]) == ("requested", "请求中")
    assert first["sub_status"] == first["sub_status_desc"] == ""
    assert first["recipient"] == "user00001@example.com"
    assert first["request_time"].endswith("+08:00")
    assert first["api_user"] == "sim_api_user"


def test_only_changes_are_published_again(env: Env, redis_client: redis.Redis) -> None:
    env.sim.seed_email_status(300)
    poller = env.poller()
    poller.poll()
    env.clock.advance(600)
    delivered = env.sim.advance_email_status(count=30, status=1)
    invalid = env.sim.advance_email_status(count=20, status=4, sub_status=406)
    summary = poller.poll()
    assert (summary.records_seen, summary.changes_emitted) == (300, 50)
    changed = status_events(redis_client)[300:]
    assert {e["email_id"] for e in changed} == set(delivered) | set(invalid)
    by_id = {e["email_id"]: e for e in changed}
    assert {by_id[i]["status"] for i in delivered} == {"delivered"}
    assert by_id[invalid[0]]["sub_status"] == "406"
    assert by_id[invalid[0]]["sub_status_desc"] == "invalid email - address does not exist"
    assert by_id[invalid[0]]["modified_time"] == env.clock.datetime().isoformat()
    env.clock.advance(600)
    assert poller.poll().changes_emitted == 0
    assert len(status_events(redis_client)) == 350


def test_throttling_mid_poll_resumes_from_the_same_page(
    env: Env, redis_client: redis.Redis
) -> None:
    ids = env.sim.seed_email_status(1050)
    # SendCloud's per-minute limit, scaled down: every fifth call within 60 s gets 50000.
    env.sim.email_status.rate_per_minute = 4
    poller = env.poller()
    summary = poller.poll()
    assert summary.throttled >= 2
    assert summary.calls == summary.pages + summary.throttled
    starts = starts_of(poller)
    assert sorted(starts) == starts, "a throttled page is retried, never restarted from 0"
    assert sorted(set(starts)) == list(range(0, 1100, 100))
    assert [e["email_id"] for e in status_events(redis_client)] == ids


def test_injected_50000_replies_lose_and_double_nothing(
    env: Env, redis_client: redis.Redis
) -> None:
    ids = env.sim.seed_email_status(1050)
    env.sim.faults.set(endpoint="/apiv2/data/emailStatus", throttle_rate=0.3)
    poller = env.poller(limiter=True)
    summary = poller.poll()
    assert summary.throttled > 0
    assert summary.calls == summary.pages + summary.throttled
    assert sorted(starts_of(poller)) == starts_of(poller)
    assert Counter(e["email_id"] for e in status_events(redis_client)) == Counter(ids)


def test_a_page_that_never_recovers_aborts_without_moving_the_cursor(
    env: Env, redis_client: redis.Redis
) -> None:
    env.sim.seed_email_status(250)
    poller = env.poller(attempts=3)
    env.sim.faults.set(endpoint="/apiv2/data/emailStatus", throttle_rate=1.0)
    with pytest.raises(PollAborted, match="start=0 failed 3 times"):
        poller.poll()
    assert redis_client.exists(CURSOR_KEY) == 0
    env.sim.faults.clear()
    assert poller.poll().changes_emitted == 250


def test_overlapping_windows_publish_each_change_once(
    env: Env, redis_client: redis.Redis
) -> None:
    # Six days of mail, one every 20 minutes.
    env.sim.seed_email_status(432, start=START - timedelta(days=5, hours=9), spacing_seconds=1200)
    narrow, wide = env.poller(settle_days=2), env.poller(settle_days=7)
    first = narrow.poll()
    assert first.window.days == 2
    second = wide.poll()
    assert second.window.days == 7
    assert second.changes_emitted == 432 - first.changes_emitted
    env.clock.advance(600)
    moved = env.sim.advance_email_status(count=200, status=5)
    emitted = narrow.poll().changes_emitted + wide.poll().changes_emitted
    # The narrow window saw only the recent moves; the wide one the rest, and nothing twice.
    assert emitted == 200
    assert Counter(e["email_id"] for e in status_events(redis_client)) == Counter(
        [r.email_id for r in env.sim.email_records()] + moved
    )


def test_concurrent_pollers_publish_each_change_exactly_once(
    env: Env, redis_client: redis.Redis
) -> None:
    env.sim.seed_email_status(2000)
    pollers = [env.poller() for _ in range(4)]

    def all_at_once() -> int:
        barrier = threading.Barrier(len(pollers))
        emitted: list[int] = []

        def run(poller: EmailStatusPoller) -> None:
            barrier.wait()
            emitted.append(poller.poll().changes_emitted)

        threads = [threading.Thread(target=run, args=(p,)) for p in pollers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(emitted)

    assert all_at_once() == 2000
    env.clock.advance(600)
    moved = env.sim.advance_email_status(count=100, status=1)
    assert all_at_once() == 100
    events = status_events(redis_client)
    assert Counter((e["email_id"], e["status"]) for e in events) == Counter(
        [(r.email_id, "requested") for r in env.sim.email_records()]
        + [(i, "delivered") for i in moved]
    )


def test_a_superseded_state_is_not_published_after_a_newer_one(
    env: Env, redis_client: redis.Redis
) -> None:
    [email_id] = env.sim.seed_email_status(1)
    slow = env.poller()
    fast = env.poller()

    def overtaken() -> None:
        # The slow poller has read "requested"; the email is delivered and a faster poller
        # publishes that before the slow one gets to publish what it read.
        env.clock.advance(60)
        env.sim.advance_email_status([email_id], status=1)
        assert fast.poll().changes_emitted == 1

    slow_source = slow.source
    assert isinstance(slow_source, Recording)
    slow_source.after_reply = overtaken
    assert slow.poll().changes_emitted == 0
    assert [e["status"] for e in status_events(redis_client)] == ["delivered"]


def test_a_restart_resumes_from_the_cursor(env: Env, redis_client: redis.Redis) -> None:
    env.sim.seed_email_status(100)
    env.poller(settle_days=1).poll()
    cursor_before = env.clock.datetime()
    # Down for five days: older mail changes status, and new mail arrives meanwhile.
    env.clock.advance(3 * 86400)
    moved = env.sim.advance_email_status(count=40, status=1)
    env.clock.advance(2 * 86400)
    fresh = env.sim.seed_email_status(60)
    restarted = env.poller(settle_days=1)
    assert restarted.cursor() == cursor_before
    summary = restarted.poll()
    assert summary.window.start == cursor_before.date()
    assert summary.gap is None
    assert summary.changes_emitted == 100
    assert {e["email_id"] for e in status_events(redis_client)[100:]} == set(moved) | set(fresh)
    assert restarted.cursor() == env.clock.datetime()


def test_downtime_beyond_thirty_days_reports_the_gap_once(
    env: Env, redis_client: redis.Redis
) -> None:
    env.sim.seed_email_status(10)
    poller = env.poller(settle_days=1)
    poller.poll()
    env.clock.advance(40 * 86400)
    recent = env.sim.seed_email_status(5)
    with capture_logs() as logs:
        summary = poller.poll()
    # Request dates from the cursor's to the day before the 30 reachable ones.
    gap = Gap(START.date(), START.date() + timedelta(days=10))
    assert summary.gap == gap
    assert summary.gap_reported
    assert summary.window.days == 30
    assert summary.changes_emitted == 5
    warnings = [e for e in logs if e["event"] == "poll_gap"]
    assert warnings and warnings[0]["log_level"] == "warning"
    gaps = [e for e in stream(redis_client) if e["event"] == "gap"]
    assert len(gaps) == 1
    assert (gaps[0]["gap_start"], gaps[0]["gap_end"], gaps[0]["gap_days"]) == (
        "2024-05-20", "2024-05-30", "11")
    assert [e["email_id"] for e in status_events(redis_client)[10:]] == recent
    # The cursor moved on: the next poll has no gap, and a gap is never published twice.
    env.clock.advance(600)
    assert poller.poll().gap is None
    assert len([e for e in stream(redis_client) if e["event"] == "gap"]) == 1


def test_filters_are_sent_to_sendcloud(env: Env, redis_client: redis.Redis) -> None:
    env.sim.seed_email_status(30)
    env.sim.seed_email_status(20, status=1)
    env.sim.seed_email_status(15, api_user="other_user")
    summary = env.poller(status=1, api_users=("sim_api_user", "other_user")).poll()
    assert summary.changes_emitted == 20
    assert {e["status"] for e in status_events(redis_client)} == {"delivered"}



def test_a_gap_planned_again_after_a_failed_poll_is_published_once(
    env: Env, redis_client: redis.Redis
) -> None:
    env.sim.seed_email_status(3)
    poller = env.poller(settle_days=1, attempts=2)
    poller.poll()
    env.clock.advance(35 * 86400)
    env.sim.faults.set(endpoint="/apiv2/data/emailStatus", throttle_rate=1.0)
    with pytest.raises(PollAborted):
        poller.poll()
    env.sim.faults.clear()
    summary = poller.poll()
    assert summary.gap is not None
    assert not summary.gap_reported
    assert len([e for e in stream(redis_client) if e["event"] == "gap"]) == 1
