"""The reconciler on a real Redis: lost messages, dead attempts and waiting jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from producers.contract import CODES_QUEUE, RECONCILE_KEY, SMS_QUEUE
from producers.idempotency import record_key
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, request_id, stack_factory
from worker.jobs.reconciler import Reconciler, redis_now


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    with stack_factory(redis_url) as make:
        yield make()


def reconciler(stack: Stack, grace: float = 0.0) -> Reconciler:
    return Reconciler(stack.redis, stack.broker, grace=grace, queued_after=600, interval=1)


def make_due(client: redis.Redis, key: str) -> None:
    """As if the job's due time had passed long ago."""
    client.zadd(RECONCILE_KEY, {key: 0})


def lose_queue(client: redis.Redis, queue: str) -> None:
    """The broker lost the queue's messages (as a Redis restart from a stale AOF can)."""
    client.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")


def test_a_lost_message_is_sent_again_and_runs_once(stack: Stack) -> None:
    key = stack.producer.send_code(mainland(1), "123456", sign_id=1, expires_in=600)
    lose_queue(stack.redis, CODES_QUEUE)
    make_due(stack.redis, key)
    summary = reconciler(stack).run_once()
    assert summary.redriven == [key]
    with stack.running():
        [record] = stack.wait_for_records([key])
    assert record["outcome"] == "sent"
    assert stack.ledger_by_request() == {(request_id(stack.redis, key), mainland(1)): 1}
    assert stack.redis.zscore(RECONCILE_KEY, key) is None
    # The copy kept the original's times, by Redis's clock: the code still expires on time.
    created = float(stack.redis.hget(record_key(key), "created_at") or 0)
    assert created > 0


def test_a_job_still_in_its_queue_is_left_waiting(stack: Stack) -> None:
    key = stack.producer.send_sms(TEMPLATE_ID, [mainland(2)])
    make_due(stack.redis, key)
    before = redis_now(stack.redis)
    summary = reconciler(stack).run_once()
    assert (summary.redriven, summary.waiting) == ([], 1)
    assert stack.redis.llen(f"dramatiq:{SMS_QUEUE}") == 1
    # Looked at again one interval (1 s) after the pass, which began after `before`.
    assert stack.redis.zscore(RECONCILE_KEY, key) >= before + 1


def test_an_attempt_that_died_in_flight_is_taken_over(stack: Stack) -> None:
    key = stack.producer.send_code(mainland(3), "654321", sign_id=1)
    lose_queue(stack.redis, CODES_QUEUE)
    # A worker claimed it long ago, then died with Redis (no release, no retry): past its lease.
    dead = stack.runner.ledger.claim(key, "dead-message", redis_now(stack.redis) - 1000,
                                     kind="code")
    assert dead.status == "claimed"
    summary = reconciler(stack, grace=1).run_once()
    assert summary.redriven == [key]
    with stack.running():
        [record] = stack.wait_for_records([key])
    assert record["outcome"] == "sent"
    stored = stack.runner.ledger.get(key)
    assert stored["takeovers"] == "1" and stored["owner"] != dead.token
    # The dead attempt can no longer write anything.
    assert not stack.runner.ledger.release(key, dead.token, uncertain=False)


def test_a_live_lease_is_not_disturbed(stack: Stack) -> None:
    key = stack.producer.send_code(mainland(4), "111111", sign_id=1)
    stack.runner.ledger.claim(key, "busy-message", kind="code")  # lease runs for minutes
    make_due(stack.redis, key)
    summary = reconciler(stack).run_once()
    assert summary.redriven == [] and summary.looked_at == 1


def test_final_and_vanished_jobs_leave_the_index(stack: Stack) -> None:
    key = stack.producer.send_sms(TEMPLATE_ID, [mainland(5)])
    with stack.running():
        stack.wait_for_records([key])
    stack.redis.zadd(RECONCILE_KEY, {key: 0, "never-existed": 0})
    summary = reconciler(stack).run_once()
    assert (summary.dropped, summary.redriven) == (2, [])
    assert stack.redis.zcard(RECONCILE_KEY) == 0


def test_one_pass_at_a_time(stack: Stack) -> None:
    first = reconciler(stack)
    stack.redis.set("sendcloud:reconcile:lock", "someone-else", px=5000)
    assert first.run_once().locked_out


def test_a_backlog_that_never_empties_hides_a_stranded_job_for_a_while_only(
    stack: Stack,
) -> None:
    """Another message always waits in the queue, so the job looks waiting; after
    queued_after (0 here) of that, it is driven again all the same."""
    stuck = stack.producer.send_sms(TEMPLATE_ID, [mainland(6)])
    stack.redis.delete(f"dramatiq:{SMS_QUEUE}")  # its message is gone ...
    stack.producer.send_sms(TEMPLATE_ID, [mainland(7)])  # ... but the queue is never empty
    patient = Reconciler(stack.redis, stack.broker, grace=0, queued_after=0, interval=0)
    make_due(stack.redis, stuck)
    first = patient.run_once()
    assert stuck not in first.redriven and first.waiting >= 1
    make_due(stack.redis, stuck)
    assert stuck in patient.run_once().redriven
    assert "reconcile_waiting_since" not in stack.runner.ledger.get(stuck)
