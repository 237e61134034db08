"""The receiver's app around the hook paths: its log lines, its one Redis script, the inbox
entry format readers decode, and mounting more apps beside the hooks."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.webhooks import MAIL_KEY, SMS_KEY, form_body, redis_ms, signed, sms_deliver
from worker.logs import configure_logging
from worker.settings import Settings
from worker.web.app import create_app
from worker.web.inbox import MAIL_INBOX, SMS_INBOX, decode_entry, encode_event


def settings_for(redis_url: str, **env: str) -> Settings:
    return Settings.from_env({"REDIS_URL": redis_url, "SENDCLOUD_SMS_HOOK_KEY": SMS_KEY,
                              "SENDCLOUD_MAIL_HOOK_KEY": MAIL_KEY, **env})  # fmt: skip


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(redis_url))) as test_client:
        yield test_client


def test_each_hook_logs_one_line_with_its_outcome_and_no_secret(
    redis_url: str, redis_client: redis.Redis, restore_logging: None
) -> None:
    settings = settings_for(redis_url, LOG_FORMAT="json")
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    now = redis_ms(redis_client)
    good = sms_deliver(now, sms_id="1458_private$13912345678")
    good["message"] = "private message text"
    bad = {**sms_deliver(now), "signature": "0" * 64}
    stale = sms_deliver(now - 7200 * 1000)
    with TestClient(create_app(settings)) as client:
        statuses = [client.post("/hooks/sms", content=form_body(hook)).status_code
                    for hook in (good, good, bad, stale)]  # fmt: skip
        statuses.append(client.post("/hooks/mail", content=b"event=deliver&x").status_code)
    assert statuses == [200, 200, 403, 403, 400]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    hooks = [line for line in lines if line["event"] == "hook"]
    assert [(h["path"], h["outcome"], h["status"]) for h in hooks] == [
        ("/hooks/sms", "stored", 200), ("/hooks/sms", "duplicate", 200),
        ("/hooks/sms", "refused", 403), ("/hooks/sms", "refused", 403),
        ("/hooks/mail", "refused", 400),
    ]
    assert [h.get("hook_event") for h in hooks] == ["deliver"] * 4 + [None]
    assert hooks[2]["reason"].startswith("signature:")
    assert hooks[3]["reason"].startswith("timestamp:")
    assert hooks[4]["reason"].startswith("body:")
    text = stream.getvalue()
    for secret in (SMS_KEY, MAIL_KEY, good["token"], good["signature"], bad["token"],
                   stale["token"], stale["signature"], "private message text", "13912345678"):
        assert secret not in text
    # No access-log style line (method, path and query) from anything else.
    assert all(line.get("logger") != "uvicorn.access" for line in lines)


def test_a_hook_costs_one_script_call_and_survives_a_script_flush(
    client: TestClient, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    assert client.post("/hooks/sms", content=form_body(sms_deliver(now))).status_code == 200
    redis_client.config_resetstat()
    for _ in range(3):
        assert client.post("/hooks/sms", content=form_body(sms_deliver(now))).status_code == 200
    stats = redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    for ours in ("info", "config|resetstat"):  # this test's own calls
        calls.pop(ours, None)
    # TIME, EXISTS, XADD and SET run inside the script; the client sent three EVALSHAs only.
    assert calls == {"evalsha": 3, "time": 3, "exists": 3, "xadd": 3, "set": 3}
    redis_client.script_flush()  # a restarted Redis has no scripts: NOSCRIPT, load, run again
    assert client.post("/hooks/sms", content=form_body(sms_deliver(now))).status_code == 200
    assert redis_client.xlen(SMS_INBOX) == 5


def test_decode_entry_reads_what_the_receiver_wrote(
    client: TestClient, redis_client: redis.Redis, redis_url: str
) -> None:
    hook = signed(MAIL_KEY, redis_ms(redis_client), event="deliver", emailId="1$a@example.com",
                  recipient="a@example.com", message="ok")  # fmt: skip
    assert client.post("/hooks/mail", content=form_body(hook)).status_code == 200
    [(_, raw)] = redis_client.xrange(MAIL_INBOX)
    event, received_at = decode_entry(raw)
    text_client = redis.Redis.from_url(redis_url, decode_responses=True)
    [(_, text)] = text_client.xrange(MAIL_INBOX)
    text_client.close()
    assert decode_entry(text) == (event, received_at)
    assert event == {"event": "deliver", "emailId": "1$a@example.com",
                     "recipient": "a@example.com", "message": "ok",
                     "timestamp": hook["timestamp"]}  # fmt: skip
    assert set(raw) == {b"event", b"received_at"}


def test_decode_entry_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="'received_at'"):
        decode_entry({b"event": b"{}"})
    with pytest.raises(ValueError, match="not a JSON object"):
        decode_entry({"event": "[]", "received_at": "1"})


def test_the_event_drops_only_the_token_and_signature() -> None:
    hook: dict[str, Any] = {"event": "reply", "token": "t", "signature": "s", "replyContent": "好",
                            "smsIds": ["a"]}  # fmt: skip
    assert encode_event(hook) == '{"event":"reply","replyContent":"好","smsIds":["a"]}'


def test_more_apps_mount_beside_the_hooks(redis_url: str, redis_client: redis.Redis) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("v1 " + request.path_params["name"])

    api = Starlette(routes=[Route("/hello/{name}", hello)])
    app = create_app(settings_for(redis_url), mounts=[Mount("/v1", app=api)])
    with TestClient(app) as client:
        assert client.get("/v1/hello/ops").text == "v1 ops"
        hook = sms_deliver(redis_ms(redis_client))
        assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/elsewhere").status_code == 404


def test_a_redis_client_of_the_callers_is_used_and_left_open(
    redis_url: str, redis_db: Callable[[int], str], redis_client: redis.Redis
) -> None:
    other = redis_db(3)
    own = aioredis.Redis.from_url(other)
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    own.aclose = aclose  # type: ignore[method-assign]
    # REDIS_URL names database 0; the hook lands where the caller's client points.
    with TestClient(create_app(settings_for(redis_url), redis=own)) as client:
        hook = sms_deliver(redis_ms(redis_client))
        assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
    assert closed == []
    assert redis_client.xlen(SMS_INBOX) == 0
    assert redis.Redis.from_url(other).xlen(SMS_INBOX) == 1


def test_the_readme_inbox_example_runs_as_written(
    client: TestClient, redis_client: redis.Redis, redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Receiving SendCloud's hooks"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None and "redis://127.0.0.1:6379/0" in match.group(1)
    hook = sms_deliver(redis_ms(redis_client), sms_id="1652_9$13800000009")
    assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
    received_at = decode_entry(redis_client.xrange(SMS_INBOX)[0][1])[1]
    capsys.readouterr()  # the hook's log line (structlog's default output here)
    exec(match.group(1).replace("redis://127.0.0.1:6379/0", redis_url), {})
    assert capsys.readouterr().out == f"deliver 1652_9$13800000009 None {received_at}\n"
