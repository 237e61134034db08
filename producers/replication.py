"""Writes that decide whether an SMS may go out, made to survive a failover: ``WAIT``.

Redis replicates asynchronously: a write the primary acknowledged may be missing on the replica
that Sentinel promotes when the primary dies. For the writes that decide whether an SMS may go
out (the producer's reservation, the worker's claim and finish), the script is followed by
``WAIT <replicas> <timeout>`` in the same pipeline, one round trip, and the caller learns how
many replicas had the write when WAIT answered. ``WAIT`` is not consensus: a write that reached
too few replicas is still on the primary; callers treat it as not decided (see
:mod:`producers.idempotency` and ``worker.jobs.idempotency``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class NotReplicated(Exception):
    """A decisive write reached fewer replicas than ``SENDCLOUD_REDIS_WAIT_REPLICAS`` in time.

    It is on the primary, and may be lost if the primary fails now; nothing was done on its
    strength. The caller may retry (the write is idempotent).
    """

    def __init__(self, what: str, acknowledged: int, wanted: int) -> None:
        self.what = what
        self.acknowledged = acknowledged
        self.wanted = wanted
        super().__init__(
            f"{what} reached {acknowledged} of the {wanted} replica(s) SENDCLOUD_REDIS_WAIT_"
            "REPLICAS asks for within SENDCLOUD_REDIS_WAIT_TIMEOUT_MS; nothing was done on its "
            "strength, retry"
        )


def run_replicated(
    client: redis.Redis,
    script: Script,
    keys: Sequence[Any],
    args: Sequence[Any],
    *,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """Run ``script`` and, with ``replicas`` > 0, ``WAIT`` in the same round trip.

    Returns the script's reply and how many replicas acknowledged the write (``replicas`` when
    none are asked for). Script errors raise as from ``script(...)``.
    """
    if replicas <= 0:
        return script(keys=list(keys), args=list(args), client=client), replicas
    for _ in range(2):  # a new primary has an empty script cache: load, then once more
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        try:
            reply, acknowledged = pipe.execute()
        except NoScriptError:
            client.script_load(script.script)
            continue
        return reply, int(acknowledged)
    raise NoScriptError("the script vanished from Redis's cache twice in a row")
