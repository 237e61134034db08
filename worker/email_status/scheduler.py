"""The scheduler process: enqueue one emailStatus poll per slot, every N minutes.

Run exactly one (``sendcloud-jobs scheduler``, the Procfile's ``scheduler`` entry); running two
by mistake, or a new one starting while the old one drains, is harmless: each tick claims its
slot in Redis before enqueueing (see ``worker.email_status.actor``), so a slot gets one poll however
many schedulers tick for it.

The default interval, 10 minutes, matches SendCloud's 10-minute cache of each emailStatus
query: polling more often would mostly read the same cached answer.

Ticks fall on slot boundaries counted from the Unix epoch (not from when the process started),
so every scheduler ticks for the same slots. One extra tick runs at start-up, so a restarted
scheduler does not leave the cursor idle for up to a whole interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dramatiq
import redis
import structlog
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from producers.contract import POLL_EMAIL_STATUS_ACTOR, STATUS_QUEUE
from worker.email_status.actor import claim_slot, new_token, slot_for, slot_ttl
from worker.settings import Settings

log = structlog.get_logger(__name__)

JOB_ID = "enqueue_email_status_poll"


def enqueue_poll(
    broker: dramatiq.Broker,
    redis_client: redis.Redis,
    interval_minutes: float,
    *,
    clock: Callable[[], float] = time.time,
) -> str | None:
    """Claim the current slot and enqueue its poll; the message id, or None if already taken."""
    slot = slot_for(clock(), interval_minutes)
    token = new_token()
    if not claim_slot(redis_client, slot, token, slot_ttl(interval_minutes)):
        log.info("poll_slot_taken", slot=slot)
        return None
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=STATUS_QUEUE,
        actor_name=POLL_EMAIL_STATUS_ACTOR,
        args=(),
        kwargs={"slot": slot, "token": token},
        options={},
    )
    broker.enqueue(message)
    log.info("poll_enqueued", slot=slot, message_id=message.message_id)
    return message.message_id


def aligned_start(now: float, interval_minutes: float) -> datetime:
    """The slot boundary at or before ``now``: where every scheduler's ticks line up."""
    interval = interval_minutes * 60.0
    return datetime.fromtimestamp(math.floor(now / interval) * interval, UTC)


def build_scheduler(
    broker: dramatiq.Broker,
    redis_client: redis.Redis,
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
) -> BlockingScheduler:
    interval = settings.poll_interval_minutes
    now = clock()
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        enqueue_poll,
        IntervalTrigger(seconds=interval * 60.0, start_date=aligned_start(now, interval)),
        args=(broker, redis_client, interval),
        id=JOB_ID,
        # A tick missed while the process was paused is not worth two polls back to back.
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(1, int(interval * 30)),
        next_run_time=datetime.fromtimestamp(now, UTC) + timedelta(seconds=1),
    )
    return scheduler
