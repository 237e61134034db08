"""Mail WebHook events on the email_status stream: each once, and each status change once
whether the poller or the hook saw it first (the real poller against the simulator)."""

from __future__ import annotations

import json
from typing import Any

import redis

from producers.contract import EMAIL_STATUS_STREAM
from producers.results import decode_fields
from tests.test_poller import Env, env  # noqa: F401  (the poller's fixture)
from worker.receipts.consumer import GROUP, Consumer
from worker.receipts.mail import MailEvents
from worker.web.inbox import MAIL_INBOX


def mail_hook(event: str, email_id: str, **extra: Any) -> dict[str, Any]:
    return {"event": event, "emailId": email_id, "recipient": "a@example.com",
            "category": "sim_api_user", "labelId": "7", "message": "", "timestamp": "0",
            **extra}


def post(client: redis.Redis, *events: dict[str, Any]) -> None:
    seconds, micros = client.time()
    for event in events:
        client.xadd(MAIL_INBOX, {"event": json.dumps(event),
                                 "received_at": seconds * 1000 + micros // 1000})


def consume(client: redis.Redis) -> Consumer:
    consumer = Consumer(client, MailEvents(client, window=86400, maxlen=100_000), name="m",
                        block_ms=50, inbox=MAIL_INBOX)
    consumer.ensure_group()
    for _ in range(50):
        consumer.step()
        if client.xlen(MAIL_INBOX) == 0:
            break
    assert client.xpending(MAIL_INBOX, GROUP)["pending"] == 0
    return consumer


def records(client: redis.Redis) -> list[dict[str, Any]]:
    return [decode_fields(f) for _, f in client.xrange(EMAIL_STATUS_STREAM)]


def test_a_status_change_is_published_once_by_whichever_source_saw_it_first(
    env: Env, redis_client: redis.Redis,  # noqa: F811
) -> None:
    first, second = env.sim.seed_email_status(2)
    poller = env.poller()
    assert poller.poll().changes_emitted == 2  # both "requested"
    env.clock.advance(600)
    env.sim.advance_email_status([first], status=1)
    env.sim.advance_email_status([second], status=4, sub_status=406)
    # The hook reports the delivery before the next poll; SendCloud then retries it.
    ms = str(int(env.clock.time() * 1000))
    post(redis_client, mail_hook("deliver", first, timestamp=ms),
         mail_hook("delivered", first, timestamp=ms))
    assert consume(redis_client).totals.recorded == 1
    assert poller.poll().changes_emitted == 1  # only the second email's invalid
    # The hook reports the invalid after the poller did: nothing new.
    post(redis_client, mail_hook("invalid_email", second, substat="406", timestamp=ms))
    assert consume(redis_client).totals.duplicate == 1
    changes = [(r["event"], r["email_id"], r["status"]) for r in records(redis_client)][2:]
    assert changes == [("delivered", first, "delivered"), ("status", second, "invalid")]
    [hooked] = [r for r in records(redis_client) if r["event"] == "delivered"]
    assert hooked["api_user"] == "sim_api_user" and hooked["modified_time"].endswith("+08:00")


def test_other_events_are_published_once_each(redis_client: redis.Redis) -> None:
    email = "1426571113174_27372_24044_6376.sc-10_10_127_119-inbound0$a@example.com"
    opened = mail_hook("open", email, timestamp="1426571118712")
    click = mail_hook("click", email, timestamp="1426571119000", url="https://example.com/x")
    bounce = mail_hook("bounce", email, timestamp="1426571119500", reason="mailbox full")
    post(redis_client, opened, click, opened, click, bounce, mail_hook("templateVerify", email))
    consumer = consume(redis_client)
    assert (consumer.totals.recorded, consumer.totals.duplicate, consumer.totals.ignored) == (
        3, 2, 1)
    got = records(redis_client)
    assert [(r["event"], r["status"]) for r in got] == [
        ("open", ""), ("click", ""), ("soft_bounce", "soft_bounce")]
    assert got[1]["url"] == "https://example.com/x"
    assert got[2]["sub_status_desc"] == "mailbox full"
    assert got[0]["modified_time"] == "2015-03-17T13:45:18+08:00"
