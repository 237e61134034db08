"""The finish script acknowledges the job's message (FinishAckingRedisBroker), through a real
``dramatiq.Worker`` on real Redis: every message acknowledged once, by the finish where it finds
the message where Dramatiq keeps it, by Dramatiq's own ack where it does not, never lost and
never dead-lettered by mistake.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.common import q_name

from producers.contract import ALL_QUEUES, SMS_QUEUE
from tests.jobs_harness import Stack, mainland, stack_factory
from worker.broker import FinishAck, FinishAckingRedisBroker
from worker.broker.dead_letters import list_dead_letters
from worker.jobs.idempotency import JobLedger


@pytest.fixture
def stacks(redis_url: str) -> Iterator[Any]:
    with stack_factory(redis_url) as make:
        yield make


def _count_dramatiq_acks(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Dramatiq's own ack commands, by queue (an instance attribute wins over the broker's
    ``__getattr__``, which makes its ``do_*`` commands)."""
    broker = stack.broker
    assert isinstance(broker, FinishAckingRedisBroker)
    made = type(broker).__getattr__(broker, "do_ack")
    calls: Counter[str] = Counter()

    def do_ack(queue_name: str, *args: Any) -> Any:
        calls[queue_name] += 1
        return made(queue_name, *args)

    monkeypatch.setattr(broker, "do_ack", do_ack, raising=False)
    return calls


def _left_in_broker(client: redis.Redis, namespace: str,
                    queues: tuple[str, ...] = ALL_QUEUES) -> dict[str, int]:
    """Messages still held: in any worker's ack set, or in a queue's message hash."""
    held = {}
    for key in client.scan_iter(f"{namespace}:__acks__.*"):
        held[key.decode()] = int(client.scard(key))
    for queue in queues:
        held[f"{queue}.msgs"] = int(client.hlen(f"{namespace}:{queue}.msgs"))
    return {k: v for k, v in held.items() if v}


def _run_codes(stack: Stack, n: int) -> list[str]:
    keys = [stack.producer.send_code(mainland(i), f"{100000 + i}", sign_id=1) for i in range(n)]
    with stack.running(threads=4):
        stack.wait_for_records(keys, deadline=60)
        # Every message is acknowledged (by the finish or by Dramatiq) once its job is final.
        assert stack.wait_until(lambda: not _left_in_broker(stack.redis, stack.broker.namespace))
    return keys


def test_the_finish_acknowledges_each_message_and_the_consumer_skips_its_own_ack(
    stacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stacks()
    acks = _count_dramatiq_acks(stack, monkeypatch)
    keys = _run_codes(stack, 30)
    records = stack.job_records()
    assert Counter(r["key"] for r in records) == Counter(dict.fromkeys(keys, 1))
    assert {r["outcome"] for r in records} == {"sent"}
    assert sum(acks.values()) == 0  # every ack was the finish's
    assert stack.broker.acked_in_finish == set()  # each consumer ack took its mark off


def test_a_message_not_where_the_finish_looks_is_acknowledged_by_dramatiq(
    stacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dramatiq that kept its messages elsewhere: the finish finds nothing to remove, says
    so, and the consumer acks as it always did."""
    stack = stacks()
    broker = stack.broker
    made = broker.ack_in_finish

    def elsewhere(message: Any) -> FinishAck | None:
        ack = made(message)
        assert ack is not None
        return FinishAck("elsewhere:acks", "elsewhere:msgs", ack.message_id,
                         broker.acked_in_finish, ack.mark)

    monkeypatch.setattr(broker, "ack_in_finish", elsewhere)
    stack.actors.clear()
    from worker.jobs import declare_job_actors  # the actors read ack_in_finish when declared

    broker.actors.clear()
    declare_job_actors(broker, stack.runtime, runner=stack.runner)
    acks = _count_dramatiq_acks(stack, monkeypatch)
    keys = _run_codes(stack, 20)
    assert Counter(r["key"] for r in stack.job_records()) == Counter(dict.fromkeys(keys, 1))
    assert sum(acks.values()) == 20


def test_a_permanent_failure_is_left_for_dramatiq_to_dead_letter(stacks: Any) -> None:
    stack = stacks()
    bad = [stack.producer.send_sms(999_999, [mainland(i)]) for i in range(3)]  # 431: permanent
    with stack.running(threads=2):
        stack.wait_for_records(bad, deadline=60)
        assert stack.wait_until(
            lambda: len(list_dead_letters(stack.redis, queue=SMS_QUEUE)) == 3)
    assert {r["outcome"] for r in stack.job_records()} == {"failed"}
    assert sorted(letter.key for letter in list_dead_letters(stack.redis, queue=SMS_QUEUE)) \
        == sorted(bad)
    assert not _left_in_broker(stack.redis, stack.broker.namespace)


def test_a_delayed_message_sharing_the_finished_copys_id_is_still_acknowledged(
    redis_url: str,
) -> None:
    """A delayed message and the copy Dramatiq makes of it when it comes due share a message id;
    the copy's finish acknowledging the copy must not stand for the delayed message's own ack,
    which may land in between (its ack retried through a Redis blip)."""
    client = redis.Redis.from_url(redis_url)
    broker = FinishAckingRedisBroker(client=client, middleware=[], namespace="fa-test")
    broker.declare_queue("jobs")
    broker.enqueue(dramatiq.Message(queue_name="jobs", actor_name="a", args=({"key": "k1"},),
                                    kwargs={}, options={}), delay=1)
    delayed_consumer = broker.consume("jobs.DQ", prefetch=10, timeout=100)
    delayed = next(delayed_consumer)
    while delayed is None:
        delayed = next(delayed_consumer)
    copy = delayed.copy(queue_name=q_name(delayed.queue_name))  # as Dramatiq's worker does
    del copy.options["eta"]
    broker.enqueue(copy)
    consumer = broker.consume("jobs", prefetch=10, timeout=100)
    due = next(consumer)
    assert due is not None and due.message_id == delayed.message_id

    ledger = JobLedger(client, lease=30, ttl=3600, maxlen=100)
    claim = ledger.claim("k1", due.message_id, kind="sms")
    assert ledger.finish("k1", claim.token, outcome="sent", stream="fa-test:results",
                         record={"kind": "sms", "outcome": "sent"},
                         ack=broker.ack_in_finish(due))
    assert len(broker.acked_in_finish) == 1
    delayed_consumer.ack(delayed)  # lands between the finish and the copy's own ack
    consumer.ack(due)
    assert not _left_in_broker(client, "fa-test", queues=("jobs", "jobs.DQ"))
    assert broker.acked_in_finish == set()
    broker.close()
    client.close()
