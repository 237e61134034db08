"""Exactly once in effect, through a real ``dramatiq.Worker`` on real Redis and the simulator.

The simulator's ledger records every effect SendCloud let happen, so "sent once" is counted
there, not in the replies the worker happened to see.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
import structlog
from structlog.testing import capture_logs

from producers.contract import ALL_QUEUES, CODES_QUEUE, SEND_CODE_ACTOR, SMS_QUEUE
from producers.idempotency import IdempotencyStore, payload_hash
from simulator import Simulator
from tests.jobs_harness import (
    TEMPLATE_ID,
    Stack,
    mainland,
    make_stack,
    request_id,
    stack_factory,
)
from worker.broker import dead_letters as dlq
from worker.broker.dead_letters import list_dead_letters
from worker.logs import configure_logging


@pytest.fixture
def stacks(redis_url: str) -> Iterator[Any]:
    with stack_factory(redis_url) as make:
        yield make


def drain(stack: Stack) -> None:
    for queue in ALL_QUEUES:
        stack.broker.join(queue, timeout=120_000)


def enqueue_codes_and_sms(stack: Stack, codes: int, sends: int) -> dict[str, list[str]]:
    """Keys → the phones each job targets; codes to distinct phones, SMS to one or two."""
    jobs: dict[str, list[str]] = {}
    for i in range(codes):
        phone = mainland(i)
        jobs[stack.producer.send_code(phone, f"{100000 + i}", sign_id=1)] = [phone]
    for i in range(sends):
        phones = [mainland(100_000 + 2 * i)] + ([mainland(100_001 + 2 * i)] if i % 2 else [])
        jobs[stack.producer.send_sms(TEMPLATE_ID, phones, {"name": f"n{i}"})] = phones
    return jobs


def assert_exactly_once(stack: Stack, jobs: dict[str, list[str]]) -> Counter[str]:
    """Every job's phones are in the ledger once, nothing else is; one final record per job."""
    expected = Counter((request_id(stack.redis, key), phone) for key, phones in jobs.items()
                       for phone in phones)
    assert stack.ledger_by_request() == expected
    records = stack.job_records()
    assert Counter(r["key"] for r in records) == Counter(dict.fromkeys(jobs, 1))
    return Counter(r["outcome"] for r in records)


def test_no_double_send_when_replies_are_lost_after_acceptance(stacks: Any) -> None:
    stack = stacks(job_max_attempts=30)
    stack.sim.faults.set(drop_after_accept_rate=0.7, latency=0.002)
    jobs = enqueue_codes_and_sms(stack, codes=40, sends=10)
    with stack.running(threads=4):
        stack.wait_for_records(jobs, deadline=60)
        drain(stack)
    outcomes = assert_exactly_once(stack, jobs)
    assert set(outcomes) <= {"sent", "duplicate"}
    assert outcomes["duplicate"] > 0  # the lost replies were really lost


def test_the_same_job_delivered_twice_at_once_runs_once(stacks: Any) -> None:
    # A short lease: the copy that finds the job busy re-checks after the lease.
    stack = stacks(job_lease=1.0)
    stack.sim.faults.set("/smsapi/sendCode", latency=0.3)
    payload = {"key": "dup-1", "phone": mainland(1), "code": "123456", "sign_id": 1,
               "sign_name": None, "msg_type": 0, "enqueued_at": 0.0, "expires_at": 4e9}
    IdempotencyStore(stack.redis).reserve("dup-1", payload_hash(payload), "code")
    for _ in range(2):  # two messages (two message ids) for one job, as a double enqueue makes
        stack.broker.enqueue(dramatiq.Message(queue_name=CODES_QUEUE, actor_name=SEND_CODE_ACTOR,
                                              args=(payload,), kwargs={}, options={}))
    with capture_logs() as logs, stack.running(threads=2):
        stack.wait_for_records(["dup-1"], deadline=30)
        drain(stack)
    assert_exactly_once(stack, {"dup-1": [mainland(1)]})
    events = [e["event"] for e in logs]
    assert "job.busy" in events and "job.replayed" in events
    assert stack.job_records()[0]["attempts"] == 1


def test_permanent_errors_are_dead_lettered_with_their_reason_and_exhausted_ones_are_not(
    stacks: Any,
) -> None:
    stack = stacks(job_max_attempts=2)
    stack.sim.faults.set("/smsapi/sendCode", server_error_rate=1.0)
    bad = stack.producer.send_sms(999_999, [mainland(1)])
    flaky = stack.producer.send_code(mainland(2), "123456", sign_id=1)
    with stack.running():
        records = {r["key"]: r for r in stack.wait_for_records([bad, flaky], deadline=30)}
        drain(stack)
    assert (records[bad]["outcome"], records[bad]["status_code"]) == ("failed", 431)
    assert (records[flaky]["outcome"], records[flaky]["status_code"]) == ("failed", 501)
    [letter] = list_dead_letters(stack.redis, queue=SMS_QUEUE)
    assert letter.key == bad
    assert "PermanentJobFailure" in letter.reason and "431" in letter.reason
    assert list_dead_letters(stack.redis, queue=CODES_QUEUE) == []


def test_members_jobs_run_through_the_worker(stacks: Any) -> None:
    stack = stacks()
    stack.runtime.client().add_address_list("team@lists.example.com", "Team")
    stack.sim.faults.set("/apiv2/addressmember/add", reset_rate=0.5)
    key = stack.producer.add_members("team@lists.example.com",
                                     [f"u{i}@example.com" for i in range(5)])
    with stack.running():
        [record] = stack.wait_for_records([key], stream="sendcloud:results:members",
                                          deadline=30)
    assert record["outcome"] == "done" and record["kind"] == "members_add"
    members = stack.sim.address_lists["team@lists.example.com"].members
    assert sorted(m.member for m in members) == [f"u{i}@example.com" for i in range(5)]


@pytest.mark.parametrize("call_attempts", [3, 1], ids=["in-call-retries", "job-retries-only"])
def test_acceptance_run_with_thirty_percent_faults(stacks: Any, call_attempts: int) -> None:
    """The issue's acceptance run: 200 codes and 50 SMS sends, ~30% faults incl. lost replies.

    With ``call_attempts=1`` every fault goes through a Dramatiq retry (release, re-claim).
    """
    stack = stacks(job_max_attempts=50, call_attempts=call_attempts)
    stack.sim.faults.set(latency=0.002, server_error_rate=0.06, throttle_rate=0.04,
                         reset_rate=0.06, gateway_error_rate=0.04, drop_after_accept_rate=0.10)
    jobs = enqueue_codes_and_sms(stack, codes=200, sends=50)
    with stack.running(threads=8):
        stack.wait_for_records(jobs, deadline=120)
        drain(stack)
    outcomes = assert_exactly_once(stack, jobs)
    assert set(outcomes) <= {"sent", "duplicate"}
    assert sum(outcomes.values()) == 250


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "stream", None) is stream]:
        root.removeHandler(handler)
    structlog.reset_defaults()


def test_every_log_line_of_a_job_names_it_and_no_secret_is_written(
    stacks: Any, log_stream: io.StringIO
) -> None:
    stack = stacks(job_max_attempts=30)
    configure_logging(stack.settings, stream=log_stream)
    stack.sim.faults.set(drop_after_accept_rate=0.5)
    keys = [stack.producer.send_code(mainland(i), "123456", sign_id=1) for i in range(5)]
    with stack.running(threads=2):
        stack.wait_for_records(keys, deadline=30)
        drain(stack)
    job_lines = [line for line in log_stream.getvalue().splitlines()
                 if "event='job." in line or "event='sendcloud." in line]
    assert len(job_lines) >= 10
    for line in job_lines:
        assert "job_key='code-" in line and "message_id=" in line
        assert "actor='sendcloud_send_code'" in line
    for secret in stack.settings.secrets:
        assert secret not in log_stream.getvalue()


def test_a_redis_failure_after_many_pauses_is_retried_not_dead_lettered(redis_url: str) -> None:
    # Dramatiq's retry count includes the pauses; a later infrastructure error must still not
    # dead-letter a job that has no final record.
    stack = make_stack(redis_url, job_max_attempts=2, pause_seconds=0.3)
    stack.sim.set_balance(0)
    real_claim = stack.runner.ledger.claim
    claims = {"n": 0}

    def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        claims["n"] += 1
        if claims["n"] == 4:
            stack.sim.set_balance(None)  # topped up while Redis blinked
            raise redis.ConnectionError("connection reset by peer")
        return real_claim(*args, **kwargs)

    stack.runner.ledger.claim = flaky_claim  # type: ignore[method-assign]
    key = stack.producer.send_code(mainland(3), "4321", sign_id=1)
    with stack.running(threads=1):
        [record] = stack.wait_for_records([key], deadline=60)
    assert record["outcome"] == "sent" and claims["n"] >= 5
    assert dlq.list_dead_letters(stack.redis) == []
    assert len(stack.sim.ledger.entries()) == 1


def test_two_deployments_sharing_one_account_never_take_each_others_ids(
    redis_db: Any,
) -> None:
    """Two apps, each with its Redis, one SendCloud account, the same key ``order-42``: both
    SMS go out (before namespaces, the second was refused as a duplicate)."""
    sim = Simulator()
    with stack_factory(redis_db(3), sim=sim) as make_a, \
            stack_factory(redis_db(4), sim=sim) as make_b:
        first, second = make_a(), make_b()
        for stack, phone in ((first, mainland(1)), (second, mainland(2))):
            stack.producer.send_sms(TEMPLATE_ID, [phone], idempotency_key="order-42")
            with stack.running():
                [record] = stack.wait_for_records(["order-42"])
            assert record["outcome"] == "sent"
    ids = {e.send_request_id for e in sim.ledger.entries()}
    assert len(ids) == 2 and all(i.endswith(":order-42") for i in ids)
    assert sorted(e.phone for e in sim.ledger.entries()) == [mainland(1), mainland(2)]
