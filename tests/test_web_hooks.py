"""The hook paths through Starlette's TestClient against this session's Redis: every answer
(200, 400, 403, 404, 413, 503) and what each leaves in Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from tests.redis_server import free_port
from tests.webhooks import (
    MAIL_KEY,
    SMS_KEY,
    form_body,
    json_body,
    redis_ms,
    signed,
    sms_deliver,
    sms_request,
)
from worker.settings import Settings
from worker.web.app import create_app
from worker.web.inbox import MAIL_INBOX, SMS_INBOX, decode_entry

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}
ClientFactory = Callable[..., TestClient]


@pytest.fixture(params=["direct", "routed"])
def hook_client(redis_url: str, request: pytest.FixtureRequest) -> Iterator[ClientFactory]:
    """``hook_client(**env)``: a TestClient of the app with both keys set unless ``env`` says
    otherwise; its lifespan runs (the app's own Redis client is closed at the end). Each test
    runs twice: with the hook paths served directly (as always, unless middleware is added to
    the app), and through Starlette's router and the ``/hooks`` mount."""
    clients: list[TestClient] = []

    def make(**env: str) -> TestClient:
        values = {"REDIS_URL": redis_url, "SENDCLOUD_SMS_HOOK_KEY": SMS_KEY,
                  "SENDCLOUD_MAIL_HOOK_KEY": MAIL_KEY, **env}  # fmt: skip
        app = create_app(Settings.from_env(values))
        if request.param == "routed":
            app.direct.clear()
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def entries(client: redis.Redis, stream: str = SMS_INBOX) -> list[tuple[dict[str, Any], int]]:
    return [decode_entry(fields) for _, fields in client.xrange(stream)]


def test_a_form_hook_is_stored_without_its_token_and_signature(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    before = redis_ms(redis_client)
    hook = sms_deliver(before)
    reply = hook_client().post("/hooks/sms", content=form_body(hook), headers=FORM)
    after = redis_ms(redis_client)
    assert (reply.status_code, reply.text) == (200, "ok")
    [(event, received_at)] = entries(redis_client)
    assert event == {k: v for k, v in hook.items() if k not in ("token", "signature")}
    assert before <= received_at <= after
    raw = repr(redis_client.xrange(SMS_INBOX))
    assert hook["token"] not in raw and hook["signature"] not in raw
    assert redis_client.xlen(MAIL_INBOX) == 0


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_json_text_lists_are_decoded_in_both_encodings(
    hook_client: ClientFactory, redis_client: redis.Redis, encoding: str
) -> None:
    ids = ["1652_1$13800000001", "1652_2$13800000002"]
    hook = sms_request(redis_ms(redis_client), ids)
    body, headers = (form_body(hook), FORM) if encoding == "form" else (json_body(hook), JSON)
    assert hook_client().post("/hooks/sms", content=body, headers=headers).status_code == 200
    [(event, _)] = entries(redis_client)
    assert event["smsIds"] == ids
    assert event["phones"] == ["13800000001", "13800000002"]
    assert event["event"] == "request" and "token" not in event and "signature" not in event


def test_a_json_body_with_real_lists_and_numbers_stores_strings(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    now = redis_ms(redis_client)
    hook = signed(MAIL_KEY, now, event="request", recipientSize=2, userHeaders={"SC-Custom-a": 1},
                  recipientArray=["a@example.com", "b@example.com"],
                  emailIds="[\"1426571113174_27372$a@example.com\"]")  # fmt: skip
    hook["timestamp"] = now  # a JSON number: signed over its decimal text all the same
    reply = hook_client().post("/hooks/mail", content=json.dumps(hook), headers=JSON)
    assert reply.status_code == 200
    [(event, _)] = entries(redis_client, MAIL_INBOX)
    assert event["timestamp"] == str(now) and event["recipientSize"] == "2"
    assert event["userHeaders"] == '{"SC-Custom-a":1}'
    assert event["recipientArray"] == ["a@example.com", "b@example.com"]
    assert event["emailIds"] == ["1426571113174_27372$a@example.com"]


def test_a_body_without_content_type_is_read_by_its_shape(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    now = redis_ms(redis_client)
    assert client.post("/hooks/sms", content=json_body(sms_deliver(now))).status_code == 200
    assert client.post("/hooks/sms", content=form_body(sms_deliver(now))).status_code == 200
    assert len(entries(redis_client)) == 2


def test_the_same_token_again_answers_200_and_stores_nothing(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    hook = sms_deliver(redis_ms(redis_client))
    replies = [client.post("/hooks/sms", content=form_body(hook), headers=FORM) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert redis_client.xlen(SMS_INBOX) == 1
    # The seen key holds a digest, never the token, and lives twice the window.
    [key] = [k.decode() for k in redis_client.keys("sendcloud:hooks:seen:*")]
    assert hook["token"] not in key
    assert 3600 * 1000 < redis_client.pttl(key) <= 7200 * 1000
    # A re-post under a fresh token is another post to SendCloud: stored again.
    again = sms_deliver(redis_ms(redis_client), sms_id=hook["smsId"])
    assert client.post("/hooks/sms", content=form_body(again), headers=FORM).status_code == 200
    assert redis_client.xlen(SMS_INBOX) == 2


def test_the_paths_keep_their_own_keys_and_inboxes(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    now = redis_ms(redis_client)
    mail = signed(MAIL_KEY, now, event="deliver", emailId="1$a@example.com",
                  recipient="a@example.com")  # fmt: skip
    assert client.post("/hooks/sms", content=form_body(mail), headers=FORM).status_code == 403
    assert client.post("/hooks/mail", content=form_body(mail), headers=FORM).status_code == 200
    assert redis_client.xlen(SMS_INBOX) == 0 and redis_client.xlen(MAIL_INBOX) == 1


def _unsigned(hook: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in hook.items() if k != field}


@pytest.mark.parametrize("spoil", [
    lambda h: _unsigned(h, "signature"),
    lambda h: _unsigned(h, "token"),
    lambda h: _unsigned(h, "timestamp"),
    lambda h: {**h, "signature": ""},
    lambda h: {**h, "signature": h["signature"][:-1] + ("0" if h["signature"][-1] != "0" else "1")},
    lambda h: {**h, "token": h["token"][::-1]},
    lambda h: {**h, "timestamp": str(int(h["timestamp"]) + 1)},
    lambda h: sms_deliver(int(h["timestamp"]), key="not-the-app-key"),
    lambda h: {**h, "signature": "é" * 64},
], ids=["no-signature", "no-token", "no-timestamp", "empty-signature", "one-digit-off",
        "other-token", "other-timestamp", "other-key", "not-hex"])
def test_a_bad_or_missing_signature_is_refused_and_nothing_written(
    hook_client: ClientFactory, redis_client: redis.Redis, spoil: Callable[..., dict[str, Any]]
) -> None:
    hook = spoil(sms_deliver(redis_ms(redis_client)))
    reply = hook_client().post("/hooks/sms", content=form_body(hook), headers=FORM)
    assert reply.status_code == 403
    assert reply.text.startswith("signature:")
    assert redis_client.dbsize() == 0


def test_an_uppercase_hex_signature_is_the_same_signature(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    hook = sms_deliver(redis_ms(redis_client))
    hook["signature"] = hook["signature"].upper()
    assert hook_client().post("/hooks/sms", content=form_body(hook)).status_code == 200


@pytest.mark.parametrize("offset_s", [-3661, 3661, -7 * 86400], ids=["stale", "future", "week"])
def test_a_timestamp_outside_the_window_is_refused(
    hook_client: ClientFactory, redis_client: redis.Redis, offset_s: int
) -> None:
    hook = sms_deliver(redis_ms(redis_client) + offset_s * 1000)
    reply = hook_client().post("/hooks/sms", content=form_body(hook), headers=FORM)
    assert reply.status_code == 403 and reply.text.startswith("timestamp:")
    assert redis_client.dbsize() == 0


def test_the_window_is_the_setting_and_its_edges_are_inside(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client(SENDCLOUD_HOOK_WINDOW="60")
    now = redis_ms(redis_client)
    for offset_s in (-50, 50):
        hook = sms_deliver(now + offset_s * 1000)
        assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
    for offset_s in (-70, 70):
        hook = sms_deliver(now + offset_s * 1000)
        assert client.post("/hooks/sms", content=form_body(hook)).status_code == 403
    assert redis_client.xlen(SMS_INBOX) == 2
    [key, _] = redis_client.keys("sendcloud:hooks:seen:*")
    assert 60 * 1000 < redis_client.pttl(key) <= 120 * 1000


def test_a_signed_timestamp_that_is_not_milliseconds_is_refused(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    for stamp in ("2024-01-01T00:00:00Z", "1.7e12", "-1", "١٢٣", "9" * 16):
        reply = client.post("/hooks/sms", content=form_body(signed(SMS_KEY, stamp, event="x")))
        assert (reply.status_code, reply.text.split(":")[0]) == (403, "timestamp"), stamp
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("body, headers, field", [
    (b"{not json", JSON, "body"),
    (b"[1, 2]", JSON, "body"),
    (b"\xff\xfe=1", FORM, "body"),
    (b"event=deliver&novalue", FORM, "body"),
    (b"", FORM, "event"),
    (b"message=hi&token=t", FORM, "event"),
    (b'{"event": ""}', JSON, "event"),
    (b"event=deliver&event=reply", FORM, "event"),
    (b"event=request&smsIds=1652_1", FORM, "smsIds"),
    (b'{"event": "request", "phones": {"a": 1}}', JSON, "phones"),
    (b"&".join(b"f%d=1" % i for i in range(150)) + b"&event=x", FORM, "body"),
], ids=["bad-json", "json-array", "bad-utf8", "no-equals", "empty", "no-event", "empty-event",
        "repeated", "list-not-json", "list-an-object", "too-many-fields"])
def test_an_unparseable_hook_is_refused_with_400_naming_the_field(
    hook_client: ClientFactory, redis_client: redis.Redis, body: bytes,
    headers: dict[str, str], field: str
) -> None:
    reply = hook_client().post("/hooks/sms", content=body, headers=headers)
    assert reply.status_code == 400
    assert reply.text.split(":")[0] == field
    assert redis_client.dbsize() == 0


def test_a_body_over_the_limit_is_refused_while_it_streams(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client(SENDCLOUD_HOOK_MAX_BYTES="2048")
    hook = sms_deliver(redis_ms(redis_client))
    hook["message"] = "x" * 2048
    declared = client.post("/hooks/sms", content=form_body(hook), headers=FORM)
    assert declared.status_code == 413 and "Content-Length" in declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        body = form_body(hook)
        yield from (body[i:i + 512] for i in range(0, len(body), 512))

    streamed = client.post("/hooks/sms", content=chunks(), headers=FORM)
    assert streamed.status_code == 413 and "Content-Length" not in streamed.text
    assert redis_client.dbsize() == 0
    hook["message"] = "x" * 1024  # under the limit, streamed the same way: stored
    assert client.post("/hooks/sms", content=chunks(), headers=FORM).status_code == 200


def test_a_path_without_its_key_answers_404(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client(SENDCLOUD_MAIL_HOOK_KEY="")
    hook = signed(MAIL_KEY, redis_ms(redis_client), event="deliver")
    assert client.post("/hooks/mail", content=form_body(hook)).status_code == 404
    assert client.get("/hooks/mail").status_code == 404
    assert client.get("/hooks/sms").status_code == 200
    assert redis_client.dbsize() == 0


def test_the_probe_get_answers_200_and_stores_nothing(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    assert [client.get(p).status_code for p in ("/hooks/sms", "/hooks/mail")] == [200, 200]
    assert client.head("/hooks/sms").status_code == 200
    assert client.put("/hooks/sms", content=b"x").status_code == 405
    assert redis_client.dbsize() == 0


def test_redis_out_of_reach_answers_503_and_healthz_says_so(
    hook_client: ClientFactory,
) -> None:
    client = hook_client(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    hook = sms_deliver(1_700_000_000_000)  # the window check needs Redis too: never reached
    assert client.post("/hooks/sms", content=form_body(hook)).status_code == 503
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["redis"].startswith("unreachable")


def test_an_append_redis_refuses_answers_503_and_the_other_path_still_stores(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    client = hook_client()
    redis_client.set(SMS_INBOX, "not a stream")  # XADD there fails: WRONGTYPE
    now = redis_ms(redis_client)
    hook = sms_deliver(now)
    refused = client.post("/hooks/sms", content=form_body(hook))
    assert (refused.status_code, refused.text) == (503, "Redis refused the hook; retry later")
    mail = signed(MAIL_KEY, now, event="deliver", emailId="1$a@example.com")
    assert client.post("/hooks/mail", content=form_body(mail)).status_code == 200
    redis_client.delete(SMS_INBOX)
    # SendCloud's retry of the refused hook: not marked seen then, so stored now.
    assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
    assert redis_client.xlen(SMS_INBOX) == 1 and redis_client.xlen(MAIL_INBOX) == 1


def test_a_trailing_slash_is_redirected_to_the_hook_path(hook_client: ClientFactory) -> None:
    reply = hook_client().post("/hooks/sms/", content=b"", follow_redirects=False)
    assert reply.status_code == 307 and reply.headers["location"].endswith("/hooks/sms")


def test_middleware_added_to_the_app_sees_the_hook_paths(
    redis_url: str, redis_client: redis.Redis
) -> None:
    seen: list[str] = []

    class Record:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = create_app(Settings.from_env({"REDIS_URL": redis_url,
                                        "SENDCLOUD_SMS_HOOK_KEY": SMS_KEY}))  # fmt: skip
    app.add_middleware(Record)
    with TestClient(app) as client:
        hook = sms_deliver(redis_ms(redis_client))
        assert client.post("/hooks/sms", content=form_body(hook)).status_code == 200
    assert seen == ["/hooks/sms"] and redis_client.xlen(SMS_INBOX) == 1


def test_healthz_answers_200_when_redis_does(hook_client: ClientFactory) -> None:
    reply = hook_client().get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"redis": "ok"})


def test_form_fields_are_decoded_as_a_form_post_encodes_them(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    hook = sms_deliver(redis_ms(redis_client))
    hook.update(replyContent="回复 a+b & c=d 100%", phone="+8613800000000")
    body = form_body(hook)
    assert b"%2B" in body and b"+" in body and b"%26" in body  # "+", " " and "&" encoded
    assert hook_client().post("/hooks/sms", content=body, headers=FORM).status_code == 200
    [(event, _)] = entries(redis_client)
    assert event["replyContent"] == "回复 a+b & c=d 100%"
    assert event["phone"] == "+8613800000000" and event["smsId"] == hook["smsId"]


def test_a_percent_escape_that_is_not_utf8_is_refused(
    hook_client: ClientFactory, redis_client: redis.Redis
) -> None:
    hook = sms_deliver(redis_ms(redis_client))
    body = form_body(hook) + b"&replyContent=%FF%FE"
    reply = hook_client().post("/hooks/sms", content=body, headers=FORM)
    assert reply.status_code == 400 and reply.text.startswith("body:")
    assert redis_client.dbsize() == 0
