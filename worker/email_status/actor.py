"""The emailStatus poll as a Dramatiq actor, and the time slots that keep it to one per period.

Time is cut into slots of ``SENDCLOUD_POLL_INTERVAL_MINUTES`` counted from the Unix epoch, so
every scheduler on every machine agrees on slot numbers without talking to each other. A slot is
claimed with ``SET sendcloud:poller:slot:<slot> <token> NX EX ...``:

* the scheduler claims it with a fresh token and only then enqueues the poll, carrying the
  token, so a second scheduler running at the same time enqueues nothing for that slot;
* the actor claims the same key: it runs when it wins the claim (a poll enqueued by hand) or
  when the key already holds its own token (the scheduler's message, or a redelivery of it
  after a worker died), and skips a second message for a slot already taken.

A skipped or lost slot costs nothing but latency: the next poll starts from the cursor.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import dramatiq
import redis
import structlog

from producers.contract import KEY_PREFIX, POLL_EMAIL_STATUS_ACTOR, STATUS_QUEUE
from worker.email_status.poller import EmailStatusPoller, PollAborted, PollConfig, PollSummary
from worker.email_status.ratelimit import EMAIL_STATUS_LIMIT_KEY, RateLimiter
from worker.logs import bind_job
from worker.runtime import Runtime

log = structlog.get_logger(__name__)

SLOT_KEY_PREFIX = f"{KEY_PREFIX}poller:slot:"
#: A catch-up over 30 days of heavy traffic can take a while; Dramatiq's default is 10 min.
POLL_TIME_LIMIT_MS = 60 * 60 * 1000


def slot_for(now: float, interval_minutes: float) -> int:
    """The slot whose boundary is nearest to ``now`` (epoch seconds).

    Nearest rather than floor: a scheduler firing a few milliseconds early or late for a
    boundary still names the same slot as one firing exactly on it.
    """
    return math.floor(now / (interval_minutes * 60.0) + 0.5)


def slot_key(slot: int) -> str:
    return f"{SLOT_KEY_PREFIX}{slot}"


def slot_ttl(interval_minutes: float) -> int:
    """Long enough to outlive the slot and any clock skew between schedulers."""
    return max(60, math.ceil(interval_minutes * 60.0 * 2))


def claim_slot(redis_client: redis.Redis, slot: int, token: str, ttl: int) -> bool:
    """True when ``token`` holds the slot: it just took it, or it already had it."""
    key = slot_key(slot)
    if redis_client.set(key, token, nx=True, ex=ttl):
        return True
    holder = redis_client.get(key)
    if isinstance(holder, bytes):
        holder = holder.decode()
    return holder == token


def new_token() -> str:
    return uuid.uuid4().hex


def build_poller(runtime: Runtime) -> EmailStatusPoller:
    """A poller on the runtime's client and Redis, drawing from the shared call budget."""
    settings = runtime.settings
    return EmailStatusPoller(
        source=runtime.client(),
        redis=runtime.redis,
        config=PollConfig.from_settings(settings),
        # SendCloud counts calls per account, so the budget is per apiUser.
        limiter=RateLimiter(
            runtime.redis,
            settings.poll_rate_per_minute,
            key=f"{EMAIL_STATUS_LIMIT_KEY}:{settings.api_user}",
        ),
    )


def run_slot(
    runtime: Runtime, slot: int | None = None, token: str | None = None,
    *, now: float | None = None,
) -> PollSummary | None:
    """Poll once for ``slot`` (the current one if None) unless another poll has it."""
    interval = runtime.settings.poll_interval_minutes
    slot = slot_for(time.time() if now is None else now, interval) if slot is None else slot
    token = token or new_token()
    if not claim_slot(runtime.redis, slot, token, slot_ttl(interval)):
        log.info("poll_slot_taken", slot=slot)
        return None
    return build_poller(runtime).poll()


def declare_poll_actor(broker: dramatiq.Broker, runtime: Runtime) -> dramatiq.Actor[Any, Any]:
    """Declare the poll actor on ``broker``; the scheduler enqueues it by name."""

    def poll_email_status(slot: int | None = None, token: str | None = None) -> None:
        with bind_job(key=f"poll:{slot}", actor=POLL_EMAIL_STATUS_ACTOR, slot=slot):
            try:
                run_slot(runtime, slot, token)
            except PollAborted as exc:
                # Expected under sustained throttling: the next slot reads the window again.
                # Other errors (credentials, a bad filter) propagate and dead-letter the message.
                log.error("poll_aborted", error=str(exc))

    # No retries: a failed poll leaves the cursor in place and the next slot reads it all again.
    decorate = dramatiq.actor(
        actor_name=POLL_EMAIL_STATUS_ACTOR,
        queue_name=STATUS_QUEUE,
        broker=broker,
        max_retries=0,
        time_limit=POLL_TIME_LIMIT_MS,
    )
    return decorate(poll_email_status)
