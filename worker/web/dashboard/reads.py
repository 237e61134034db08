"""What the overview reads: queue depths, outcomes per minute, the account pause, the poller.

Every read is of keys other modules own, through their names there: the depths through
:class:`worker.metrics.QueueDepthCollector` (the same numbers Prometheus scrapes, from Redis or
RabbitMQ), the pause flag of :mod:`worker.jobs.pause`, the poller's cursor and gap records of
:mod:`worker.email_status.poller`. Times come from Redis's ``TIME``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from dramatiq import Broker

from producers.contract import ALL_QUEUES, MEMBERS_RESULTS_STREAM, SMS_RESULTS_STREAM
from worker.email_status.poller import CURSOR_KEY, GAPS_KEY
from worker.jobs.pause import PAUSE_PREFIX
from worker.metrics import QueueDepthCollector

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
#: At most this many result records a stream are counted for the hour's chart: a campaign
#: chunk is one record for 2000 numbers, so this covers any hour the service can have.
MAX_RECORDS = 50_000


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int  # waiting or being worked on (not yet acknowledged)
    delayed: int  # retries and deferrals waiting for their time
    dead: int


@dataclass(frozen=True)
class Pause:
    account: str
    seconds_left: float


@dataclass(frozen=True)
class Poller:
    polled_at: str | None  # when the last successful poll ended (Asia/Shanghai, ISO 8601)
    until: str | None  # the cursor: when that poll started
    window: str | None
    gaps: list[str] = field(default_factory=list)  # request-date ranges no poll can read now


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def queue_depths(client: redis.Redis, broker: Broker | None = None) -> list[QueueDepth]:
    depths = QueueDepthCollector(client, broker=broker).depths()
    return [QueueDepth(q, depths.get(q, 0), depths.get(f"{q}.DQ", 0), depths.get(f"{q}.XQ", 0))
            for q in ALL_QUEUES]


def outcomes_per_minute(client: redis.Redis, now_ms: int | None = None) -> dict[str, Any]:
    """Final job records of the last 60 minutes by minute and outcome, for the chart:
    ``{"minutes": [ms, ...60], "outcomes": {outcome: [count per minute]}}``."""
    now_ms = redis_now_ms(client) if now_ms is None else now_ms
    start = (now_ms // MINUTE_MS) * MINUTE_MS - 59 * MINUTE_MS
    counts: Counter[tuple[int, str]] = Counter()
    for stream in (SMS_RESULTS_STREAM, MEMBERS_RESULTS_STREAM):
        entries: list[Any] = client.xrange(  # type: ignore[assignment]
            stream, min=str(start), max="+", count=MAX_RECORDS)
        for entry_id, fields in entries:
            outcome = fields.get(b"outcome")
            if outcome is None or fields.get(b"kind") == b"alert":
                continue
            at = int(entry_id.split(b"-")[0])
            counts[((at - start) // MINUTE_MS, outcome.decode())] += 1
    outcomes = sorted({name for _, name in counts})
    return {
        "minutes": [start + i * MINUTE_MS for i in range(60)],
        "outcomes": {name: [counts[(i, name)] for i in range(60)] for name in outcomes},
    }


def account_pauses(client: redis.Redis) -> list[Pause]:
    pauses = []
    for key in client.scan_iter(match=f"{PAUSE_PREFIX}*", count=100):
        ttl = int(client.pttl(key))
        if ttl > 0:
            name = key.decode() if isinstance(key, bytes) else str(key)
            pauses.append(Pause(name[len(PAUSE_PREFIX):], ttl / 1000))
    return sorted(pauses, key=lambda p: p.account)


def poller_state(client: redis.Redis) -> Poller:
    raw: dict[bytes, bytes] = client.hgetall(CURSOR_KEY)  # type: ignore[assignment]
    gaps: list[bytes] = client.hkeys(GAPS_KEY)  # type: ignore[assignment]

    def text(name: bytes) -> str | None:
        value = raw.get(name)
        return value.decode() if value is not None else None

    return Poller(polled_at=text(b"polled_at"), until=text(b"until_iso"),
                  window=text(b"window"), gaps=sorted(g.decode() for g in gaps))
