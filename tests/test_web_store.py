"""HookStore on a real redis-server: hooks that arrive together share one script call, and each
keeps its own outcome, an append that fails included; nothing is stored twice or lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis

from tests.webhooks import new_token, redis_ms
from worker.web.inbox import MAIL_INBOX, SMS_INBOX
from worker.web.store import APPEND_SCRIPT, MAX_BATCH, Appended, HookStore, seen_key

T = TypeVar("T")
WINDOW = 600


def run_with_store(redis_url: str, body: Callable[[HookStore], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await body(HookStore(client, WINDOW))
        finally:
            await client.aclose()

    return asyncio.run(main())


def count_script_calls(client: redis.Redis) -> None:
    """From now on (the script loaded, so no call of the store's meets NOSCRIPT)."""
    client.script_load(APPEND_SCRIPT)
    client.config_resetstat()


def script_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_hooks_that_arrive_together_share_a_call_and_keep_their_own_outcomes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    repeated = new_token()
    hooks: list[tuple[Any, ...]] = [("sms", new_token(), now, f'{{"n":{i}}}') for i in range(40)]
    hooks += [("sms", repeated, now, '{"n":"first"}'), ("sms", repeated, now, '{"n":"again"}'),
              ("mail", new_token(), now, '{"n":"mail"}'),
              ("sms", new_token(), now - 2 * WINDOW * 1000, '{"n":"stale"}')]  # fmt: skip
    count_script_calls(redis_client)

    async def body(store: HookStore) -> list[Appended]:
        return list(await asyncio.gather(*(store.append(*hook) for hook in hooks)))

    answers = run_with_store(redis_url, body)
    # All were waiting when the call left: one call.
    assert script_calls(redis_client) == 1
    assert [a.outcome for a in answers] == ["stored"] * 41 + ["duplicate", "stored",
                                                               "outside_window"]  # fmt: skip
    assert len({a.now_ms for a in answers}) == 1  # one call, one instant of Redis's clock
    stored = [fields[b"event"] for _, fields in redis_client.xrange(SMS_INBOX)]
    assert stored == [f'{{"n":{i}}}'.encode() for i in range(40)] + [b'{"n":"first"}']
    assert redis_client.xlen(MAIL_INBOX) == 1


def test_more_hooks_than_a_batch_take_more_calls_and_all_are_stored(
    redis_url: str, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    count = 2 * MAX_BATCH + 10
    count_script_calls(redis_client)

    async def body(store: HookStore) -> list[Appended]:
        return list(await asyncio.gather(
            *(store.append("sms", new_token(), now, f'"{i}"') for i in range(count))))

    answers = run_with_store(redis_url, body)
    assert {a.outcome for a in answers} == {"stored"}
    assert script_calls(redis_client) == 3  # MAX_BATCH, MAX_BATCH, 10
    assert [f[b"event"] for _, f in redis_client.xrange(SMS_INBOX)] == [
        f'"{i}"'.encode() for i in range(count)]


def test_a_hook_whose_append_fails_gets_its_error_and_the_others_their_outcomes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    redis_client.set(SMS_INBOX, "not a stream")  # XADD there fails: WRONGTYPE
    sms = ("sms", new_token(), now, '"sms"')
    mail = ("mail", new_token(), now, '"mail"')
    later = ("mail", new_token(), now, '"later"')

    async def body(store: HookStore) -> list[Any]:
        # The failing hook first, so the others come after its error in the same call.
        return list(await asyncio.gather(*(store.append(*h) for h in (sms, mail, later)),
                                         return_exceptions=True))  # fmt: skip

    first = run_with_store(redis_url, body)
    assert isinstance(first[0], redis.ResponseError) and "WRONGTYPE" in str(first[0])
    assert [a.outcome for a in first[1:]] == ["stored", "stored"]
    assert [f[b"event"] for _, f in redis_client.xrange(MAIL_INBOX)] == [b'"mail"', b'"later"']
    redis_client.delete(SMS_INBOX)
    again = run_with_store(redis_url, body)  # SendCloud posts all three again
    # The failed one was not marked seen: stored now. The others: not appended twice.
    assert [a.outcome for a in again] == ["stored", "duplicate", "duplicate"]
    assert [f[b"event"] for _, f in redis_client.xrange(SMS_INBOX)] == [b'"sms"']
    assert redis_client.xlen(MAIL_INBOX) == 2


def test_a_call_run_again_after_a_lost_reply_stores_nothing_twice(
    redis_url: str, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    hooks = [(seen_key("sms", new_token()), SMS_INBOX, now, f'"{i}"') for i in range(3)]

    async def body(store: HookStore) -> list[list[Any]]:
        # What the client's one retry does when the reply to a call that ran was lost.
        return [await store._call(hooks), await store._call(hooks)]

    first, again = run_with_store(redis_url, body)
    assert first[1:] == [1, 1, 1] and again[1:] == [0, 0, 0]
    assert redis_client.xlen(SMS_INBOX) == 3


def test_a_script_redis_lost_is_loaded_again(redis_url: str, redis_client: redis.Redis) -> None:
    now = redis_ms(redis_client)

    async def body(store: HookStore) -> list[str]:
        outcomes = [(await store.append("sms", new_token(), now, '"a"')).outcome]
        redis_client.script_flush()
        outcomes.append((await store.append("sms", new_token(), now, '"b"')).outcome)
        return outcomes

    assert run_with_store(redis_url, body) == ["stored", "stored"]
    assert redis_client.xlen(SMS_INBOX) == 2


def test_redis_out_of_reach_fails_every_waiting_hook(redis_url: str) -> None:
    async def body(store: HookStore) -> list[Any]:
        await store.client.aclose()
        store.client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
        return list(await asyncio.gather(
            *(store.append("sms", new_token(), 0, '"x"') for _ in range(3)),
            return_exceptions=True))

    errors = run_with_store(redis_url, body)
    assert len(errors) == 3
    assert all(isinstance(e, redis.ConnectionError) for e in errors)


@pytest.mark.parametrize("cancel_first", [True, False])
def test_a_hook_whose_request_went_away_does_not_hold_up_the_others(
    redis_url: str, redis_client: redis.Redis, cancel_first: bool
) -> None:
    now = redis_ms(redis_client)

    async def body(store: HookStore) -> list[Any]:
        tasks = [asyncio.create_task(store.append("sms", new_token(), now, f'"{i}"'))
                 for i in range(3)]  # fmt: skip
        await asyncio.sleep(0)  # all three are waiting now
        tasks[0 if cancel_first else 2].cancel()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    answers = run_with_store(redis_url, body)
    cancelled = 0 if cancel_first else 2
    assert isinstance(answers[cancelled], asyncio.CancelledError)
    assert all(a.outcome == "stored" for i, a in enumerate(answers) if i != cancelled)
    # The cancelled hook was in the call already: it is stored, and SendCloud, having had no
    # answer, posts it again and finds it stored.
    assert redis_client.xlen(SMS_INBOX) == 3
