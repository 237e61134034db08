"""Campaigns end to end in one process: real Redis, the real broker, actors and simulator."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis

from producers import (
    CampaignConflict,
    CampaignDiscarded,
    CampaignNotDiscardable,
    CampaignNotFound,
    NoValidNumber,
    campaign_report,
    campaign_status,
    cancel_campaign,
    discard_campaign,
    start_campaign,
)
from producers.campaign import chunk_key
from producers.campaign_report import CampaignStatus
from producers.contract import RECONCILE_KEY, SMS_QUEUE
from producers.idempotency import record_key
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, make_stack
from worker.jobs.idempotency import JobLedger


@pytest.fixture
def stack_factory(redis_url: str) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(**overrides: Any) -> Stack:
        stack = make_stack(redis_url, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.broker.close()


def finished_records(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in stack.records() if r.get("outcome") == "campaign_finished"]


def wait_finished(stack: Stack, campaign_id: str) -> CampaignStatus:
    assert stack.wait_until(
        lambda: campaign_status(campaign_id, producer=stack.producer).finished, deadline=60
    ), campaign_status(campaign_id, producer=stack.producer)
    return campaign_status(campaign_id, producer=stack.producer)


def report_rows(stack: Stack, campaign_id: str) -> list[dict[str, str]]:
    out = io.StringIO()
    campaign_report(campaign_id, out, producer=stack.producer)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def queued_chunk_keys(stack: Stack) -> Counter[str]:
    """Chunk keys of the SMS messages waiting in the queue (no worker running)."""
    raw = stack.redis.hvals(f"dramatiq:{SMS_QUEUE}.msgs")
    return Counter(json.loads(m)["args"][0]["key"] for m in raw)


def test_campaign_sends_every_valid_number_once_and_reports_each(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    valid = [mainland(i) for i in range(4500)]
    numbers = [*valid[:100], "12345", "+86 " + valid[100], *valid[101:], valid[7], "", "abc"]
    start = start_campaign("spring-sale", TEMPLATE_ID, iter(numbers), {"name": "Lucy"},
                           producer=stack.producer)
    assert (start.input, start.valid, start.invalid, start.duplicates) == (4504, 4500, 3, 1)
    assert (start.chunks, start.enqueued, start.skipped, start.resumed) == (3, 3, 0, False)

    with stack.running(threads=4):
        status = wait_finished(stack, "spring-sale")

    assert Counter(e.phone for e in stack.sim.ledger.entries()) == Counter(valid)
    assert (status.accepted, status.failed, status.pending, status.chunks_done) == (4500, 0, 0, 3)
    [done] = finished_records(stack)
    assert (done["kind"], done["accepted"], done["invalid"], done["chunks"]) == (
        "campaign", 4500, 3, 3)

    rows = report_rows(stack, "spring-sale")
    by_phone = {r["phone"]: r for r in rows}
    assert len(rows) == 4503
    assert {r["outcome"] for r in rows if r["phone"] in valid} == {"sent"}
    sms_ids = {e.phone: e.sms_id for e in stack.sim.ledger.entries()}
    assert all(by_phone[p]["smsId"] == sms_ids[p] for p in valid)
    invalid = [r for r in rows if r["outcome"] == "invalid"]
    assert [r["phone"] for r in invalid] == ["12345", "", "abc"]
    assert invalid[0]["message"].startswith("input entry 101: must be a mainland mobile number")
    assert invalid[1]["message"] == "input entry 4503: is empty"
    # The chunks' job records, which hold the recipients, live as long as the campaign.
    assert stack.redis.ttl(record_key(chunk_key("spring-sale", 0))) > 29 * 86400


def test_repeat_with_same_input_enqueues_nothing_and_different_input_conflicts(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    numbers = [mainland(i) for i in range(3000)]
    start_campaign("c", TEMPLATE_ID, numbers, producer=stack.producer)
    again = start_campaign("c", TEMPLATE_ID, (n for n in numbers), producer=stack.producer)
    assert (again.enqueued, again.skipped, again.resumed) == (0, 2, True)

    cases: list[tuple[list[str], dict[str, Any]]] = [
        (numbers, {"vars": {"name": "x"}}),  # other settings
        ([*numbers[:2500], mainland(9999)], {}),  # a changed number in the last chunk
        ([*numbers, mainland(5000)], {}),  # one more number
        (numbers[:2000], {}),  # a shorter list, cut on a chunk boundary
        ([*numbers, "junk"], {}),  # an extra invalid entry
    ]
    for phones, extra in cases:
        with pytest.raises(CampaignConflict, match="campaign_id 'c'"):
            start_campaign("c", TEMPLATE_ID, phones, producer=stack.producer, **extra)
    assert queued_chunk_keys(stack) == Counter({chunk_key("c", 0): 1, chunk_key("c", 1): 1})
    assert campaign_status("c", producer=stack.producer).valid == 3000


class _DiesOnEnqueue:
    """A broker that dies (raises) on its n-th enqueue: the producer crashing at that point."""

    def __init__(self, broker: Any, n: int) -> None:
        self.broker, self.left = broker, n

    def enqueue(self, message: Any) -> Any:
        self.left -= 1
        if self.left == 0:
            raise ConnectionError("producer died")
        return self.broker.enqueue(message)


def test_resume_enqueues_a_chunk_reserved_but_never_enqueued(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    numbers = [mainland(i) for i in range(9000)]
    real_broker = stack.producer.broker
    stack.producer.broker = _DiesOnEnqueue(real_broker, 3)  # type: ignore[assignment]
    with pytest.raises(ConnectionError):
        start_campaign("r", TEMPLATE_ID, numbers, producer=stack.producer)
    # Chunk 2 is reserved (its record is queued) but was never enqueued.
    assert stack.producer.get_record(chunk_key("r", 2))["state"] == "queued"  # type: ignore[index]
    assert set(queued_chunk_keys(stack)) == {chunk_key("r", 0), chunk_key("r", 1)}

    stack.producer.broker = real_broker
    resumed = start_campaign("r", TEMPLATE_ID, numbers, producer=stack.producer)
    assert (resumed.enqueued, resumed.skipped, resumed.resumed) == (3, 2, True)
    assert queued_chunk_keys(stack) == Counter({chunk_key("r", i): 1 for i in range(5)})

    with stack.running(threads=4):
        status = wait_finished(stack, "r")
    assert status.accepted == 9000
    assert Counter(Counter(e.phone for e in stack.sim.ledger.entries()).values()) == {1: 9000}


def test_cancel_ends_unsent_chunks_as_cancelled(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    numbers = [mainland(i) for i in range(5000)]
    start_campaign("stop-me", TEMPLATE_ID, numbers, producer=stack.producer)
    cancelled = cancel_campaign("stop-me", producer=stack.producer)
    assert cancelled.cancel_requested and not cancelled.finished

    with stack.running(threads=4):
        status = wait_finished(stack, "stop-me")

    assert stack.sim.ledger.entries() == []
    assert (status.cancelled, status.accepted, status.pending) == (5000, 0, 0)
    [done] = finished_records(stack)
    assert (done["cancelled"], done["cancel_requested"]) == (5000, True)
    rows = report_rows(stack, "stop-me")
    assert len(rows) == 5000 and {r["outcome"] for r in rows} == {"cancelled"}
    assert {r["message"] for r in rows} == {"the campaign was cancelled before this chunk was sent"}
    chunk_records = [r for r in stack.job_records() if r.get("kind") == "sms"]
    assert sum(r["cancelled"] for r in chunk_records) == 5000
    assert all(r["failures"] == [] and "recipients" not in r for r in chunk_records)


def test_report_shows_pending_numbers_before_workers_run(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    stack.producer.start_campaign("later", TEMPLATE_ID, [mainland(i) for i in range(2500)] + ["x"])
    status = campaign_status("later", producer=stack.producer)
    assert (status.state, status.sealed, status.chunks_enqueued, status.pending) == (
        "enqueued", True, 2, 2500)
    assert Counter(r["outcome"] for r in report_rows(stack, "later")) == {
        "pending": 2500, "invalid": 1}


def test_a_chunk_run_twice_is_counted_once(stack_factory: Callable[..., Stack]) -> None:
    """A duplicate message arriving after the job's record expired runs the chunk again:
    SendCloud answers duplicate, and the campaign still counts the chunk once."""
    stack = stack_factory()
    start_campaign("twice", TEMPLATE_ID, [mainland(i) for i in range(2000)],
                   producer=stack.producer)
    [raw] = stack.redis.hvals(f"dramatiq:{SMS_QUEUE}.msgs")
    with stack.running(threads=2):
        wait_finished(stack, "twice")
        stack.redis.delete(f"sendcloud:idem:{chunk_key('twice', 0)}")
        stack.broker.enqueue(dramatiq.Message.decode(raw))
        assert stack.wait_until(lambda: len(stack.job_records()) == 3)
    outcomes = [r["outcome"] for r in stack.job_records() if r.get("kind") == "sms"]
    assert outcomes == ["sent", "duplicate"]
    status = campaign_status("twice", producer=stack.producer)
    assert (status.chunks_done, status.accepted) == (1, 2000)
    assert len(finished_records(stack)) == 1
    assert len(stack.sim.ledger.entries()) == 2000


def test_campaign_finished_once_when_chunks_finish_before_the_seal(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()

    def numbers_then_wait() -> Iterator[str]:
        yield from (mainland(i) for i in range(4000))
        # Both chunks are enqueued; let the workers finish them before the producer seals.
        assert stack.wait_until(
            lambda: campaign_status("early", producer=stack.producer).chunks_done == 2)

    with stack.running(threads=4):
        start_campaign("early", TEMPLATE_ID, numbers_then_wait(), producer=stack.producer)
        status = wait_finished(stack, "early")
    assert status.accepted == 4000
    assert len(finished_records(stack)) == 1


@pytest.mark.parametrize("entries", [[], ["x", " ", "12345678901"], ["junk"] * 2500])
def test_a_start_without_a_valid_number_is_refused_and_writes_nothing(
    stack_factory: Callable[..., Stack], entries: list[str]
) -> None:
    stack = stack_factory()
    before = set(stack.redis.keys())
    with pytest.raises(NoValidNumber) as refused:
        start_campaign("empty", TEMPLATE_ID, iter(entries), producer=stack.producer)
    assert (refused.value.field, refused.value.entries) == ("phones", len(entries))
    if entries:
        assert refused.value.first_bad == (1, "must be a mainland mobile number (11 digits "
                                           "starting 13-19)", "x" if len(entries) == 3 else "junk")
        assert f"no valid number in {len(entries)} entries" in str(refused.value)
    # Not even the refused entries (2500 are flushed in batches while reading) stay behind.
    assert set(stack.redis.keys()) == before
    assert stack.redis.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 0

    # The id is still free: the right input starts a new campaign under it.
    start = start_campaign("empty", TEMPLATE_ID, [*entries, mainland(1)], producer=stack.producer)
    assert (start.valid, start.invalid, start.chunks, start.resumed) == (
        1, len(entries), 1, False)
    assert [r["outcome"] for r in report_rows(stack, "empty")] == (
        ["pending"] + ["invalid"] * len(entries))


def test_an_existing_campaign_is_untouched_by_a_start_without_a_valid_number(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    start_campaign("keep", TEMPLATE_ID, [mainland(i) for i in range(10)], producer=stack.producer)
    before = {key: stack.redis.dump(key) for key in stack.redis.keys("sendcloud:campaign:*")}
    with pytest.raises(NoValidNumber):
        start_campaign("keep", TEMPLATE_ID, ["name"], producer=stack.producer)
    after = {key: stack.redis.dump(key) for key in stack.redis.keys("sendcloud:campaign:*")}
    assert after == before


def test_discard_ends_the_queued_chunks_unsent_and_frees_the_id(
    stack_factory: Callable[..., Stack],
) -> None:
    """The discarded run's messages are still queued when the id is started again: they end
    without a send, and only the new input goes out, once."""
    stack = stack_factory()
    first = [mainland(i) for i in range(4000)]
    start_campaign("again", TEMPLATE_ID, [*first, "junk"], producer=stack.producer)
    done = discard_campaign("again", producer=stack.producer)
    assert (done.chunks, done.stopped) == (2, 2)
    with pytest.raises(CampaignNotFound):
        campaign_status("again", producer=stack.producer)
    assert stack.redis.keys("sendcloud:campaign:again*") == [b"sendcloud:campaign:again:discarded"]
    old = stack.producer.get_record(chunk_key("again", 0))
    assert old is not None and old["state"] == "failed"
    discarded = stack.producer.get_result(chunk_key("again", 1))
    assert discarded is not None
    finished_at = discarded.pop("finished_at")
    assert finished_at.endswith("+00:00")  # ISO 8601 UTC, like a worker's record
    message = "the campaign was discarded before this chunk was sent"
    assert discarded == {
        "key": chunk_key("again", 1), "kind": "sms", "outcome": "cancelled",
        "status_code": None, "message": message, "attempts": 0, "campaign_id": "again",
        "chunk_index": 1, "accepted": 0, "failed": 0, "cancelled": len(first) - 2000,
        "review": 0, "failures": []}
    assert stack.redis.zscore(RECONCILE_KEY, chunk_key("again", 0)) is None

    second = [mainland(10_000 + i) for i in range(3000)]
    start = start_campaign("again", TEMPLATE_ID, second, {"name": "other"},
                           producer=stack.producer)
    assert (start.valid, start.chunks, start.enqueued, start.resumed) == (3000, 2, 2, False)
    assert queued_chunk_keys(stack) == Counter(
        [chunk_key("again", 0), chunk_key("again", 1),
         chunk_key("again", 0, 1), chunk_key("again", 1, 1)])

    with stack.running(threads=4):
        status = wait_finished(stack, "again")
        assert stack.wait_until(lambda: stack.redis.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 0)
    assert Counter(e.phone for e in stack.sim.ledger.entries()) == Counter(second)
    assert (status.accepted, status.cancelled, status.invalid, status.chunks_done) == (
        3000, 0, 0, 2)
    assert {r["outcome"] for r in report_rows(stack, "again")} == {"sent"}
    # The old chunks' messages were acknowledged without a result record of their own.
    assert {r["key"] for r in stack.job_records() if r.get("kind") == "sms"} == {
        chunk_key("again", 0, 1), chunk_key("again", 1, 1)}


def test_discard_is_refused_once_a_chunk_may_have_been_sent(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    start_campaign("sent", TEMPLATE_ID, [mainland(i) for i in range(2000)],
                   producer=stack.producer)
    with stack.running(threads=2):
        wait_finished(stack, "sent")
    with pytest.raises(CampaignNotDiscardable, match=r"chunk 0 ended as sent \(something may"):
        discard_campaign("sent", producer=stack.producer)
    assert campaign_status("sent", producer=stack.producer).accepted == 2000

    # A chunk a worker has claimed (it may be sending now) refuses it too, and nothing of the
    # campaign is changed: its other chunk's job is still queued.
    start_campaign("busy", TEMPLATE_ID, [mainland(i) for i in range(4000)],
                   producer=stack.producer)
    stack.runner.ledger.claim(chunk_key("busy", 1), "a-worker", kind="sms")
    with pytest.raises(CampaignNotDiscardable, match="chunk 1 was claimed by a worker"):
        discard_campaign("busy", producer=stack.producer)
    assert stack.producer.get_record(chunk_key("busy", 0))["state"] == "queued"  # type: ignore[index]
    assert campaign_status("busy", producer=stack.producer).chunks_enqueued == 2
    assert not stack.redis.exists("sendcloud:campaign:busy:discarded")


def test_a_cancelled_campaign_whose_chunks_all_ended_cancelled_can_be_discarded(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    start_campaign("oops", TEMPLATE_ID, [mainland(i) for i in range(2500)],
                   producer=stack.producer)
    cancel_campaign("oops", producer=stack.producer)
    with stack.running(threads=2):
        wait_finished(stack, "oops")
    assert (discard_campaign("oops", producer=stack.producer).stopped) == 0
    start = start_campaign("oops", TEMPLATE_ID, [mainland(1)], producer=stack.producer)
    assert (start.enqueued, start.resumed) == (1, False)
    assert stack.sim.ledger.entries() == []


def test_a_start_that_stalled_past_its_lease_stops_when_the_campaign_is_discarded(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()

    def numbers() -> Iterator[str]:
        yield from (mainland(i) for i in range(2000))  # chunk 0 is enqueued
        # This producer stalls; its lease runs out and someone discards the campaign.
        stack.redis.delete("sendcloud:campaign:stalled:lock")
        discard_campaign("stalled", producer=stack.producer)
        yield from (mainland(i) for i in range(2000, 4000))

    with pytest.raises(CampaignDiscarded):
        start_campaign("stalled", TEMPLATE_ID, numbers(), producer=stack.producer)
    assert not stack.redis.exists("sendcloud:campaign:stalled")
    assert stack.producer.get_record(chunk_key("stalled", 1)) is None
    assert queued_chunk_keys(stack) == Counter([chunk_key("stalled", 0)])
    with stack.running(threads=2):
        assert stack.wait_until(lambda: stack.redis.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 0)
    assert stack.sim.ledger.entries() == []


def test_cancel_never_calls_a_possibly_sent_chunk_cancelled(
    stack_factory: Callable[..., Stack],
) -> None:
    """Chunk 0's worker died mid-send before the cancel: it may have gone out, so it is resent
    under the same sendRequestId to learn the truth; chunk 1 never started and is cancelled."""
    stack = stack_factory()
    start_campaign("half", TEMPLATE_ID, [mainland(i) for i in range(4000)],
                   producer=stack.producer)
    # A worker claimed chunk 0 long enough ago that its lease ran out, and never came back.
    stale = time.time() - stack.settings.job_lease - 1
    stack.runner.ledger.claim(chunk_key("half", 0), "dead-worker", stale, kind="sms")
    cancel_campaign("half", producer=stack.producer)

    with stack.running(threads=2):
        status = wait_finished(stack, "half")

    outcomes = {r["chunk_index"]: r["outcome"] for r in stack.job_records()
                if r.get("kind") == "sms"}
    assert outcomes == {0: "sent", 1: "cancelled"}
    assert (status.accepted, status.cancelled) == (2000, 2000)
    assert len(stack.sim.ledger.entries()) == 2000


def test_the_finish_script_survives_odd_campaign_fields(redis_client: redis.Redis) -> None:
    ledger = JobLedger(redis_client, lease=10, ttl=3600, maxlen=1000)
    stack_meta = "sendcloud:campaign:odd"
    redis_client.hset(stack_meta, mapping={"campaign_id": "odd", "chunks": 1, "retention": 60})
    odd_records: list[dict[str, Any]] = [
        {"campaign_id": "unknown", "chunk_index": 0},
        {"campaign_id": "odd", "chunk_index": "x"},
        {"campaign_id": "odd", "chunk_index": -1},
        {"campaign_id": "odd", "chunk_index": 0, "recipients": "not json"},
    ]
    for i, extra in enumerate(odd_records):
        key = f"odd-{i}"
        claim = ledger.claim(key, "m", kind="sms")
        record = {"key": key, "kind": "sms", "outcome": "sent", **extra}
        assert ledger.finish(key, claim.token, outcome="sent", stream="s", record=record)
    # Only the last one names a real chunk; unreadable recipients leave the chunk's own outcome.
    fields = redis_client.hgetall(stack_meta)
    assert (fields[b"chunks_done"], fields.get(b"review"), fields[b"state"]) == (
        b"1", None, b"finished")
