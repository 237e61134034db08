"""Slots, the scheduler process and the poll actor: one poll per slot, however many schedulers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import pytest
import redis
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from producers.contract import EMAIL_STATUS_STREAM, POLL_EMAIL_STATUS_ACTOR, STATUS_QUEUE
from tests.jobs_harness import Stack, make_stack
from worker.email_status.actor import (
    claim_slot,
    declare_poll_actor,
    run_slot,
    slot_for,
    slot_key,
    slot_ttl,
)
from worker.email_status.scheduler import JOB_ID, aligned_start, build_scheduler, enqueue_poll

SLOT_10 = 6000.0  # epoch seconds of the boundary of slot 10 at 10-minute slots


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    made = make_stack(redis_url)
    made.actors[POLL_EMAIL_STATUS_ACTOR] = declare_poll_actor(made.broker, made.runtime)
    yield made
    made.broker.close()
    made.redis.close()


def queued_polls(stack: Stack) -> int:
    """Messages waiting on the status queue (the RedisBroker keeps them in one hash)."""
    return int(stack.redis.hlen(f"dramatiq:{STATUS_QUEUE}.msgs"))


def own_client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.settings.redis_url)


def test_a_tick_slightly_early_or_late_names_the_boundarys_slot() -> None:
    assert slot_for(SLOT_10, 10) == 10
    assert slot_for(SLOT_10 - 0.2, 10) == 10
    assert slot_for(SLOT_10 + 0.2, 10) == 10
    assert slot_for(SLOT_10 + 299, 10) == 10
    assert slot_for(SLOT_10 + 301, 10) == 11
    assert slot_ttl(10) == 1200
    assert slot_ttl(0.1) == 60


def test_a_slot_is_held_by_one_token_and_recognised_by_it(redis_client: redis.Redis) -> None:
    assert claim_slot(redis_client, 7, "first", 60)
    assert not claim_slot(redis_client, 7, "second", 60)
    assert claim_slot(redis_client, 7, "first", 60), "a redelivered message keeps its slot"
    assert 0 < redis_client.ttl(slot_key(7)) <= 60


def test_two_schedulers_ticking_for_one_slot_enqueue_one_poll(stack: Stack) -> None:
    clients = [own_client(stack) for _ in range(2)]
    barrier = threading.Barrier(len(clients))
    enqueued: list[str | None] = []

    def tick(client: redis.Redis) -> None:
        barrier.wait()
        enqueued.append(enqueue_poll(stack.broker, client, 10, clock=lambda: SLOT_10 + 0.01))

    threads = [threading.Thread(target=tick, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([m for m in enqueued if m is not None]) == 1
    assert queued_polls(stack) == 1
    # The next slot is a new claim.
    assert enqueue_poll(stack.broker, clients[0], 10, clock=lambda: SLOT_10 + 600) is not None
    assert queued_polls(stack) == 2
    for client in clients:
        client.close()


def test_the_actor_polls_once_per_slot_and_again_for_a_redelivery(stack: Stack) -> None:
    stack.sim.seed_email_status(150)
    first = run_slot(stack.runtime, 42, "scheduler-token")
    assert first is not None and first.changes_emitted == 150
    assert run_slot(stack.runtime, 42, "another-message") is None
    # The same message delivered again (its worker died) is allowed to poll, publishing nothing.
    again = run_slot(stack.runtime, 42, "scheduler-token")
    assert again is not None and again.changes_emitted == 0
    # Enqueued by hand without a slot: it claims the current one itself.
    now = SLOT_10
    assert run_slot(stack.runtime, now=now) is not None
    assert run_slot(stack.runtime, now=now) is None
    assert stack.redis.xlen(EMAIL_STATUS_STREAM) == 150


def test_a_scheduled_poll_runs_on_a_real_worker(stack: Stack) -> None:
    ids = stack.sim.seed_email_status(250)
    assert enqueue_poll(stack.broker, stack.redis, stack.settings.poll_interval_minutes)
    assert enqueue_poll(stack.broker, stack.redis, stack.settings.poll_interval_minutes) is None
    with stack.running(threads=2):
        stack.broker.join(STATUS_QUEUE, timeout=60_000)
    published = [f[b"email_id"].decode() for _, f in stack.redis.xrange(EMAIL_STATUS_STREAM)]
    assert published == ids


def test_the_scheduler_ticks_on_epoch_aligned_slot_boundaries(stack: Stack) -> None:
    now = SLOT_10 + 123.0
    assert aligned_start(now, 10) == datetime.fromtimestamp(SLOT_10, UTC)
    scheduler = build_scheduler(stack.broker, stack.redis, stack.settings, clock=lambda: now)
    [job] = scheduler.get_jobs()
    assert job.id == JOB_ID
    after = datetime.fromtimestamp(now, UTC)
    fire = job.trigger.get_next_fire_time(None, after)
    assert fire == datetime.fromtimestamp(SLOT_10 + 600, UTC)
    assert job.trigger.get_next_fire_time(fire, fire) == datetime.fromtimestamp(SLOT_10 + 1200, UTC)


def test_two_scheduler_processes_started_together_enqueue_one_poll(stack: Stack) -> None:
    clients = [own_client(stack) for _ in range(2)]
    schedulers = [build_scheduler(stack.broker, c, stack.settings) for c in clients]
    ticked = threading.Semaphore(0)
    failures: list[BaseException] = []

    def on_tick(event: JobExecutionEvent) -> None:
        if event.exception is not None:
            failures.append(event.exception)
        ticked.release()

    for scheduler in schedulers:
        scheduler.add_listener(on_tick, EVENT_JOB_EXECUTED)
    threads = [threading.Thread(target=s.start, daemon=True) for s in schedulers]
    for t in threads:
        t.start()
    try:
        # Each scheduler's start-up tick comes a second after it starts.
        assert ticked.acquire(timeout=30) and ticked.acquire(timeout=30)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=False)
        for t in threads:
            t.join(timeout=10)
        for client in clients:
            client.close()
    assert failures == []
    assert queued_polls(stack) == 1
    [message] = [
        dramatiq.Message.decode(raw)
        for raw in stack.redis.hvals(f"dramatiq:{STATUS_QUEUE}.msgs")
    ]
    assert message.actor_name == POLL_EMAIL_STATUS_ACTOR
    assert set(message.kwargs) == {"slot", "token"}
