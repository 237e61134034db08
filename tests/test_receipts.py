"""Delivery receipts matched to their jobs: one record per (smsId, event), whatever SendCloud
repeats or reorders, the recipient's state and the campaign's counts kept with it.

Events go into the inbox stream as the web process writes them; the consumer and matcher are
the real ones, against real Redis, jobs sent through the real worker stack and simulator.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from producers import campaign_report, campaign_status, start_campaign
from producers.campaign import campaign_key
from producers.contract import SMS_DELIVERY_STREAM
from producers.delivery import deliveries
from producers.results import decode_fields
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, stack_factory
from worker.jobs.idempotency import JobLedger
from worker.receipts.consumer import GROUP, Consumer
from worker.receipts.matcher import Matcher
from worker.web.inbox import SMS_INBOX

WINDOW = 3 * 86400
T_MS = 1_700_000_000_000


@pytest.fixture(name="stacks")
def stacks_fixture(redis_url: str) -> Iterator[Callable[..., Stack]]:
    with stack_factory(redis_url) as make:
        yield make


def consumer(client: redis.Redis, *, match_wait: float = 60.0, name: str = "c1",
             retry_after: float = 0.2) -> Consumer:
    matcher = Matcher(client, window=WINDOW, match_wait=match_wait, maxlen=1_000_000)
    made = Consumer(client, matcher, name=name, block_ms=50, retry_after=retry_after)
    made.ensure_group()
    return made


def hook(event: str, sms_id: str, phone: str, *, code: int | None = None,
         message: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "eventType": "20", "smsId": sms_id, "phone": phone,
                            "message": message, "smsUser": "u", "templateId": str(TEMPLATE_ID),
                            "timestamp": str(T_MS), "userId": "1", "labelId": "0", **extra}
    if code is not None:
        body["statusCode"] = str(code)
        body["encodeMessage"] = base64.b64encode(message.encode()).decode()
    return body


def post(client: redis.Redis, *events: dict[str, Any]) -> None:
    ms = client.time()
    for event in events:
        client.xadd(SMS_INBOX, {"event": json.dumps(event),
                                "received_at": ms[0] * 1000 + ms[1] // 1000})


def drain(c: Consumer, *, until: Callable[[], bool] | None = None, rounds: int = 400) -> None:
    """Step the consumer until the inbox is empty (and ``until`` holds)."""
    for _ in range(rounds):
        c.step()
        if c.client.xlen(SMS_INBOX) == 0 and (until is None or until()):
            return
    raise AssertionError(f"inbox not drained: {c.client.xlen(SMS_INBOX)} left, {c.totals}")


def delivery_records(client: redis.Redis) -> list[dict[str, Any]]:
    return [decode_fields(f) for _, f in client.xrange(SMS_DELIVERY_STREAM)
            if f.get(b"kind") == b"delivery"]


def sent_job(stack: Stack, phones: list[str], key: str) -> dict[str, Any]:
    job_key = stack.producer.send_sms(TEMPLATE_ID, phones, idempotency_key=key)
    with stack.running(threads=2):
        [record] = stack.wait_for_records([job_key])
    return record


def test_each_smsid_and_event_is_recorded_once_whatever_is_repeated(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    record = sent_job(stack, [mainland(1), mainland(2)], "job-a")
    first, second = record["recipients"]
    c = consumer(stack.redis)
    delivered = hook("deliver", first["sms_id"], first["phone"])
    failed = hook("delivererror", second["sms_id"], second["phone"], code=580,
                  message="phone powered off")
    post(stack.redis, delivered, failed, delivered, hook("request", "", ""))
    drain(c)
    post(stack.redis, delivered, failed)  # SendCloud's retries, after the first were handled
    drain(c)
    records = delivery_records(stack.redis)
    assert [(r["key"], r["phone"], r["event"]) for r in records] == [
        ("job-a", first["phone"], "delivered"), ("job-a", second["phone"], "undelivered")]
    assert records[1]["status_code"] == 580
    assert records[1]["reason"] == "SMS failure, phone powered off"
    assert records[1]["message"] == "phone powered off"
    assert records[0]["at"] == "2023-11-15T06:13:20.000+08:00"
    assert records[0]["campaign_id"] == "" and records[0]["chunk_index"] is None
    assert [d.state for d in deliveries(stack.redis, "job-a", 2)] == ["delivered", "undelivered"]
    result = stack.producer.get_result("job-a")
    assert result is not None
    assert [(r["delivery"], r["delivery_code"]) for r in result["recipients"]] == [
        ("delivered", None), ("undelivered", 580)]
    assert (c.totals.recorded, c.totals.duplicate, c.totals.ignored) == (2, 3, 1)
    assert stack.redis.xpending(SMS_INBOX, GROUP)["pending"] == 0


def test_a_delivered_after_an_undelivered_is_its_own_record_and_wins(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    [r] = sent_job(stack, [mainland(3)], "job-b")["recipients"]
    c = consumer(stack.redis)
    post(stack.redis, hook("delivererror", r["sms_id"], r["phone"], code=510, message="x"),
         hook("deliver", r["sms_id"], r["phone"]),
         hook("delivererror", r["sms_id"], r["phone"], code=510, message="x"))
    drain(c)
    assert [x["event"] for x in delivery_records(stack.redis)] == ["undelivered", "delivered"]
    [state] = deliveries(stack.redis, "job-b", 1)
    assert (state.state, state.status_code) == ("delivered", None)


def test_replies_are_each_recorded_once(stacks: Callable[..., Stack]) -> None:
    stack = stacks()
    [r] = sent_job(stack, [mainland(4)], "job-c")["recipients"]
    c = consumer(stack.redis)
    yes = hook("reply", r["sms_id"], r["phone"], replyContent="yes", replyTime="1")
    stop = hook("reply", r["sms_id"], r["phone"], replyContent="TD", replyTime="2")
    post(stack.redis, yes, stop, yes)
    drain(c)
    assert [x["message"] for x in delivery_records(stack.redis)] == ["yes", "TD"]
    [state] = deliveries(stack.redis, "job-c", 1)
    assert state.state == "pending"  # a reply says nothing of delivery


def test_a_receipt_before_its_jobs_result_waits_and_is_then_matched(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    phone = mainland(5)
    c = consumer(stack.redis)
    job_key = stack.producer.send_sms(TEMPLATE_ID, [phone], idempotency_key="job-d")
    with stack.running(threads=2):
        stack.wait_for_records([job_key])
    [entry] = stack.sim.ledger.entries()
    stack.redis.delete(*stack.redis.keys("sendcloud:smsidx:*"))  # as if the result were late
    post(stack.redis, hook("deliver", entry.sms_id, phone))
    c.step()
    assert c.totals.waiting == 1 and delivery_records(stack.redis) == []
    assert stack.redis.xpending(SMS_INBOX, GROUP)["pending"] == 1
    # The result lands (here: another job's finish that got the same smsId back).
    ledger = JobLedger(stack.redis, lease=10, ttl=3600, maxlen=100)
    claim = ledger.claim("job-d2", "m", kind="sms")
    ledger.finish("job-d2", claim.token, outcome="sent", stream="s", record={"outcome": "sent"},
                  sms_ids=[entry.sms_id])
    drain(c, until=lambda: c.totals.recorded == 1)
    [record] = delivery_records(stack.redis)
    assert (record["key"], record["event"]) == ("job-d2", "delivered")


def test_an_unknown_smsid_is_recorded_unmatched_after_the_wait_and_only_once(
    redis_client: redis.Redis,
) -> None:
    c = consumer(redis_client, match_wait=0.3)
    stray = hook("delivererror", "1_1_0_0_zzzzzz$13900000000", "13900000000", code=500,
                 message="no such number")
    post(redis_client, stray)
    drain(c)
    post(redis_client, stray)
    drain(c)
    [record] = delivery_records(redis_client)
    assert (record["key"], record["event"], record["status_code"]) == ("", "undelivered", 500)
    assert record["reason"] == "SMS failure, non-existed number"
    assert c.totals.waiting >= 1 and c.totals.duplicate == 1


def test_entries_of_a_consumer_that_died_are_taken_over_and_recorded_once(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    record = sent_job(stack, [mainland(6), mainland(7)], "job-e")
    events = [hook("deliver", r["sms_id"], r["phone"]) for r in record["recipients"]]
    post(stack.redis, *events)
    dead = consumer(stack.redis, name="dead")
    # It read the entries and recorded the first, then died before acknowledging either.
    stack.redis.xreadgroup(GROUP, "dead", {SMS_INBOX: ">"}, count=10)
    now = stack.redis.time()[0]
    dead.matcher.handle(events[0], 0, now)
    heir = consumer(stack.redis, name="heir", retry_after=0.2)
    drain(heir, until=lambda: stack.redis.xpending(SMS_INBOX, GROUP)["pending"] == 0)
    assert sorted(r["phone"] for r in delivery_records(stack.redis)) == [mainland(6), mainland(7)]
    assert heir.totals.duplicate == 1


def test_a_campaigns_counts_and_report_follow_its_receipts_exactly(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    numbers = [mainland(100 + i) for i in range(2500)]
    start_campaign("receipts", TEMPLATE_ID, iter(numbers), producer=stack.producer)
    with stack.running(threads=4):
        assert stack.wait_until(lambda: campaign_status("receipts", producer=stack.producer)
                                .finished, 60)
    rng = random.Random(7)
    events, final = [], {}
    for e in stack.sim.ledger.entries():
        pick = rng.random()
        if pick < 0.8:
            events.append(hook("deliver", e.sms_id, e.phone))
            final[e.phone] = ("delivered", None)
        elif pick < 0.9:
            events.append(hook("delivererror", e.sms_id, e.phone, code=510, message="oos"))
            final[e.phone] = ("undelivered", 510)
        elif pick < 0.95:
            events.append(hook("workererror", e.sms_id, e.phone, code=430, message="unsub"))
            final[e.phone] = ("rejected", 430)
    events += rng.sample(events, len(events) // 10)  # duplicates
    rng.shuffle(events)  # reordering
    post(stack.redis, *events)
    drain(consumer(stack.redis))
    status = campaign_status("receipts", producer=stack.producer)
    expected = Counter(state for state, _ in final.values())
    assert (status.delivered, status.undelivered, status.rejected) == (
        expected["delivered"], expected["undelivered"], expected["rejected"])
    assert status.delivery_pending == 2500 - len(final)
    assert status.delivery_codes == {430: expected["rejected"], 510: expected["undelivered"]}
    assert len(delivery_records(stack.redis)) == len(final)
    assert {r["campaign_id"] for r in delivery_records(stack.redis)} == {"receipts"}
    out = io.StringIO()
    campaign_report("receipts", out, producer=stack.producer)
    rows = [line.split(",") for line in out.getvalue().splitlines()[1:]]
    got = {row[0]: (row[5], int(row[6]) if row[6] else None) for row in rows}
    assert got == {p: final.get(p, ("pending", None)) for p in numbers}
    assert stack.redis.ttl(campaign_key("receipts") + ":delivery_codes") > 29 * 86400
