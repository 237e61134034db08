"""What a Redis must be for the product's promises to hold, checked at start and by ``health``.

- ``maxmemory-policy`` must be ``noeviction``: an evicting Redis may drop a queue, a job's
  record or a claim, and then a job is lost or sent twice.
- Persistence: with neither AOF nor snapshots, a restart loses every queue and record; with
  ``appendfsync everysec`` it loses at most the last second, which the reconciler and the
  1-hour sendRequestId rule cover.
- Clock: every decision about time uses Redis's clock (``TIME`` in the scripts); a host whose
  clock differs much from it is worth knowing about (logs, metrics, the poller's windows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

#: Beyond this, a host's clock is reported as skewed from Redis's (seconds).
SKEW_LIMIT = 5.0


@dataclass(frozen=True)
class RedisReport:
    eviction_policy: str | None
    appendonly: bool | None
    appendfsync: str | None
    snapshots: bool | None
    #: Redis's clock minus this host's, in seconds.
    skew: float

    @property
    def evicts(self) -> bool:
        return self.eviction_policy not in (None, "noeviction")

    @property
    def persists(self) -> bool | None:
        if self.appendonly is None:
            return None
        return bool(self.appendonly or self.snapshots)

    def lines(self) -> list[tuple[bool, str]]:
        """(acceptable, text) for persistence, eviction and clock, as ``health`` prints them."""
        if self.appendonly:
            persistence = f"appendonly yes (appendfsync {self.appendfsync})"
        elif self.snapshots:
            persistence = "appendonly no, RDB snapshots only: a restart loses recent jobs"
        elif self.appendonly is None:
            persistence = "unknown (CONFIG GET refused)"
        else:
            persistence = "none: a restart loses every queue and job record"
        policy = self.eviction_policy or "unknown (CONFIG GET refused)"
        eviction = f"maxmemory-policy {policy}"
        if self.evicts:
            eviction += " (must be noeviction: an evicted key loses or doubles a job)"
        clock = f"Redis's clock is {self.skew:+.3f} s from this host's"
        if abs(self.skew) > SKEW_LIMIT:
            clock += f" (over {SKEW_LIMIT:.0f} s: fix this host's time sync)"
        return [
            (self.persists is not False, f"persistence {persistence}"),
            (not self.evicts, f"eviction    {eviction}"),
            (abs(self.skew) <= SKEW_LIMIT, f"clock       {clock}"),
        ]


def _config(client: redis.Redis, name: str) -> str | None:
    try:
        value = client.config_get(name).get(name)
    except redis.ResponseError:  # CONFIG renamed or refused, as managed Redis services do
        return None
    return None if value is None else str(value)


def inspect(client: redis.Redis) -> RedisReport:
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    appendonly = _config(client, "appendonly")
    save = _config(client, "save")
    return RedisReport(
        eviction_policy=_config(client, "maxmemory-policy"),
        appendonly=None if appendonly is None else appendonly == "yes",
        appendfsync=_config(client, "appendfsync"),
        snapshots=None if save is None else bool(save.strip()),
        skew=seconds + micros / 1_000_000 - (before + after) / 2,
    )
