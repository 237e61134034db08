"""The smsId index: every smsId SendCloud gave back leads to its job and recipient, written once
by the finish script, compact, and read the same way on the embedded demo's Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from producers import start_campaign
from producers.campaign import campaign_key
from producers.sms_index import DAY, INDEX_PREFIX, RECORD_SIZE, SmsIndex, digest, pack
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, stack_factory
from worker.jobs.idempotency import JobLedger


@pytest.fixture(name="stacks")
def stacks_fixture(redis_url: str) -> Iterator[Callable[..., Stack]]:
    with stack_factory(redis_url) as make:
        yield make


def _index_memory(client: redis.Redis) -> tuple[int, int]:
    """(records in shard strings, their bytes), over every index key."""
    records = size = 0
    for key in client.scan_iter(match=f"{INDEX_PREFIX}*"):
        if not key.endswith(b":refs"):
            length = client.strlen(key)
            records += length // RECORD_SIZE
            size += length
    return records, size


def test_each_number_of_a_send_leads_back_to_its_job_and_position(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    key = stack.producer.send_sms(TEMPLATE_ID, [mainland(1), mainland(2)], idempotency_key="a")
    with stack.running(threads=2):
        [record] = stack.wait_for_records([key])
    index = SmsIndex(stack.redis)
    for position, r in enumerate(record["recipients"]):
        hit = index.find(r["sms_id"])
        assert hit is not None and (hit.key, hit.position) == (key, position)
    assert index.find(record["recipients"][0]["sms_id"] + "x") is None
    assert index.find("1458113381893_15_3_11_1ainnq$" + mainland(3)) is None


def test_a_refused_number_has_no_entry_and_the_others_keep_their_positions(
    redis_client: redis.Redis,
) -> None:
    ledger = JobLedger(redis_client, lease=10, ttl=3600, maxlen=100)
    claim = ledger.claim("job-1", "m1", kind="sms")
    ids = ["100_1_0_0_aaaaaa$13800000001", None, "100_3_0_0_aaaaaa$13800000003"]
    entry = ledger.finish("job-1", claim.token, outcome="partial", stream="s",
                          record={"key": "job-1", "outcome": "partial"}, sms_ids=ids)
    assert entry is not None
    index = SmsIndex(redis_client)
    assert [(h.key, h.position) for h in map(index.find, [ids[0], ids[2]]) if h] == [
        ("job-1", 0), ("job-1", 2)]
    assert _index_memory(redis_client) == (2, 2 * RECORD_SIZE)
    # The same finish again (its WAIT came short) answers the first entry, and a copy of the
    # job finishing under another token (its claim lost) is refused: no second index entry.
    assert ledger.finish("job-1", claim.token, outcome="partial", stream="s",
                         record={"key": "job-1", "outcome": "partial"}, sms_ids=ids) == entry
    assert ledger.finish("job-1", "m1:2", outcome="partial", stream="s",
                         record={"key": "job-1", "outcome": "partial"}, sms_ids=ids) is None
    assert _index_memory(redis_client) == (2, 2 * RECORD_SIZE)


def test_a_campaign_indexes_every_number_once_at_a_few_bytes_each(
    stacks: Callable[..., Stack],
) -> None:
    stack = stacks()
    numbers = [mainland(i) for i in range(4500)]
    start_campaign("receipts", TEMPLATE_ID, iter(numbers), producer=stack.producer)
    with stack.running(threads=4):
        assert stack.wait_until(
            lambda: stack.redis.hget(campaign_key("receipts"), "finished_at") is not None, 60)
    index = SmsIndex(stack.redis)
    phones_of = {int(i): v.decode().split(",") for i, v in
                 stack.redis.hgetall(campaign_key("receipts") + ":phones").items()}
    seen: set[tuple[str, int]] = set()
    for entry in stack.sim.ledger.entries():
        hit = index.find(entry.sms_id)
        assert hit is not None, entry.sms_id
        chunk = int(hit.key.rsplit(":", 1)[1])
        assert phones_of[chunk][hit.position] == entry.phone
        seen.add((hit.key, hit.position))
    assert len(seen) == 4500
    records, size = _index_memory(stack.redis)
    assert records == 4500 and size == 4500 * RECORD_SIZE
    refs = [k for k in stack.redis.scan_iter(match=f"{INDEX_PREFIX}*:refs")]
    assert len(refs) == 1 and stack.redis.hlen(refs[0]) == 3 + 1  # one ref a chunk, and "n"


def test_entries_expire_with_their_day_and_lookups_search_the_window(
    redis_client: redis.Redis,
) -> None:
    ledger = JobLedger(redis_client, lease=10, ttl=3600, maxlen=100, receipt_window=2 * DAY)
    day0 = 20_000 * DAY + 3600.0
    for n, at in enumerate((day0, day0 + DAY, day0 + 3 * DAY)):
        claim = ledger.claim(f"job-{n}", "m1", at, kind="code")
        ledger.finish(f"job-{n}", claim.token, at, outcome="sent", stream="s",
                      record={"outcome": "sent"}, sms_ids=[f"id-{n}"])
    shard = next(k for k in redis_client.scan_iter(match=f"{INDEX_PREFIX}20000:*")
                 if not k.endswith(b":refs"))
    assert 2 * DAY < redis_client.ttl(shard) <= 3 * DAY
    index = SmsIndex(redis_client, window=2 * DAY)
    now = day0 + 3 * DAY
    assert [index.find(f"id-{n}", now) is not None for n in range(3)] == [False, True, True]
    assert index.find("id-0", day0) is not None


def test_lookups_skip_a_digest_that_only_straddles_two_records(
    redis_client: redis.Redis,
) -> None:
    # Bytes of one record's tail and the next one's head may spell another smsId's digest:
    # only a match at a record boundary counts.
    target = digest("wanted")
    shard = (target[0] * 256 + target[1]) // 16
    fake = b"\0" * 4 + target[:4] + b"\0\0\0\1\0\0"
    fake += target[4:] + b"\0" * 4 + b"\0\0\0\1\0\0"
    now = 20_000 * DAY
    redis_client.set(f"{INDEX_PREFIX}20000:{shard}", fake)
    redis_client.hset(f"{INDEX_PREFIX}20000:refs", "1", "someone-else")
    assert SmsIndex(redis_client).find("wanted", now) is None


def test_the_embedded_demo_redis_writes_and_reads_the_same_index() -> None:
    client: Any = fakeredis.FakeRedis()
    ledger = JobLedger(client, lease=10, ttl=3600, maxlen=100)
    claim = ledger.claim("demo-1", "m1", kind="sms")
    ids = [f"1_{n}_0_0_abcdef$1380000000{n}" for n in range(3)]
    ledger.finish("demo-1", claim.token, outcome="sent", stream="s",
                  record={"outcome": "sent"}, sms_ids=ids)
    index = SmsIndex(client)
    assert [index.find(i).position for i in ids] == [0, 1, 2]  # type: ignore[union-attr]


def test_pack_skips_numbers_without_an_id() -> None:
    assert pack([None, "a", None, "b"]) == digest("a") + b"\0\1" + digest("b") + b"\0\3"
