"""How the client turns failing replies, broken replies and failed transports into errors,
the 461 clock re-sync, and the promise that no error carries a secret or a request parameter."""

from __future__ import annotations

import traceback
from collections.abc import Callable

import httpx
import pytest

from tests.test_client_fakes import (
    API_KEY,
    SMS_KEY,
    FakeSendCloud,
    doc_reply,
    fail,
    make_client,
    ok,
)
from worker.sendcloud import errors
from worker.sendcloud.client import SendCloudClient

PHONE = "13912345678"


@pytest.fixture
def fake() -> FakeSendCloud:
    return FakeSendCloud()


def send(client: SendCloudClient) -> object:
    return client.send_sms(7, [PHONE], {"name": "李雷"}, send_request_id="req-secretish-1")


def add(client: SendCloudClient) -> object:
    return client.add_members("list@m.org", ["private.person@example.com"], names=["私人"])


def capture(call: Callable[[], object]) -> errors.SendCloudError:
    with pytest.raises(errors.SendCloudError) as info:
        call()
    return info.value


def full_text(exc: BaseException) -> str:
    """Everything a log or a traceback could show of ``exc`` and its chain (source lines aside:
    those are this file's own literals)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), *traceback.format_exception_only(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_no_secret(exc: BaseException, fake: FakeSendCloud) -> None:
    text = full_text(exc)
    signatures = [r.params["signature"] for r in fake.requests if "signature" in r.params]
    for secret in [SMS_KEY, API_KEY, PHONE, "private.person@example.com", "李雷", *signatures]:
        assert secret not in text


@pytest.mark.parametrize(
    ("reply", "cls", "code"),
    [
        (doc_reply("sms_invalid_phone"), errors.InvalidRequestError, 412),
        (fail(312, "全部失败"), errors.RecipientsRejectedError, 312),
        (fail(400, "duplicate request"), errors.DuplicateRequestError, 400),
        (fail(40000, "重复请求"), errors.DuplicateRequestError, 40000),
        (fail(422, "签名错误"), errors.AuthError, 422),
        (fail(496), errors.PhoneMinuteLimitError, 496),
        (fail(498), errors.PhoneDailyLimitError, 498),
        (fail(499), errors.QuotaError, 499),
        (fail(501), errors.ServerError, 501),
        (fail(50001, "536 Frequency limited"), errors.ThrottledError, 50001),
        (fail(12345, "something new"), errors.InvalidRequestError, 12345),
    ],
)
def test_failing_sms_codes_raise_their_error_class(
    fake: FakeSendCloud, reply: dict[str, object], cls: type[errors.SendCloudError], code: int
) -> None:
    fake.queue(reply)
    with make_client(fake) as client:
        exc = capture(lambda: send(client))
    assert type(exc) is cls
    assert (exc.code, exc.endpoint, exc.http_status) == (code, "/smsapi/send", 200)
    assert exc.message == reply["message"]
    assert_no_secret(exc, fake)


def test_all_failed_carries_each_phones_reason(fake: FakeSendCloud) -> None:
    items = [{"phone": "1312222", "vars": {}, "message": "手机号格式错误"}]
    fake.queue(fail(312, "全部失败", {"failedCount": 1, "items": items}))
    with make_client(fake) as client:
        exc = capture(lambda: send(client))
    assert isinstance(exc, errors.RecipientsRejectedError)
    assert exc.items == items


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (doc_reply("api_auth_failed"), errors.AuthError),
        (doc_reply("email_status_throttled"), errors.ThrottledError),
        (fail(40516, "failed to add member"), errors.ServerError),
        (fail(40517), errors.InvalidRequestError),
        (fail(40505), errors.ConflictError),
    ],
)
def test_failing_api_codes_raise_their_error_class(
    fake: FakeSendCloud, reply: dict[str, object], cls: type[errors.SendCloudError]
) -> None:
    fake.queue(reply)
    with make_client(fake) as client:
        exc = capture(lambda: add(client))
    assert type(exc) is cls
    assert exc.code == reply.get("statusCode", reply.get("statuscode"))
    assert exc.endpoint == "/apiv2/addressmember/add"
    assert_no_secret(exc, fake)


def test_the_lower_case_statuscode_of_the_50000_reply_is_read(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("email_status_throttled"))
    with make_client(fake) as client:
        exc = capture(lambda: client.email_status(days=1))
    assert isinstance(exc, errors.ThrottledError) and exc.transient
    assert (exc.code, exc.message) == (50000, "interface frequency is limited")


@pytest.mark.parametrize(
    ("response", "http_status", "code"),
    [
        (httpx.Response(502, text="<html>Bad Gateway</html>"), 502, None),
        (httpx.Response(503, json=fail(501, "sever exception")), 503, 501),
        (httpx.Response(200, text="not json at all"), 200, None),
        (httpx.Response(404, text="Not Found"), 404, None),
        (httpx.Response(200, json={"result": True, "message": "?"}), 200, None),
        (httpx.Response(200, json=["a", "list"]), 200, None),
    ],
)
def test_unreadable_replies_are_server_errors(
    fake: FakeSendCloud, response: httpx.Response, http_status: int, code: int | None
) -> None:
    fake.queue(response)
    with make_client(fake) as client:
        exc = capture(lambda: send(client))
    assert type(exc) is errors.ServerError and exc.transient
    assert (exc.http_status, exc.code, exc.endpoint) == (http_status, code, "/smsapi/send")
    assert_no_secret(exc, fake)


def test_a_success_reply_of_the_wrong_shape_is_a_server_error(fake: FakeSendCloud) -> None:
    fake.queue(ok({"successCount": 1, "smsIds": "not-a-list"}), ok({"count": "many"}))
    with make_client(fake) as client:
        sms = capture(lambda: send(client))
        members = capture(lambda: client.delete_members("l@m.org", ["a@b.org"]))
    assert type(sms) is errors.ServerError and "smsIds" in str(sms)
    assert type(members) is errors.ServerError and "count" in str(members)
    assert members.code == 200
    assert sms.__context__ is None and sms.__cause__ is None


def leaky(cls: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """An httpx error whose text repeats the whole request, as real ones may repeat the URL."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise cls(f"{request.url} {request.content.decode()}", request=request)

    return handler


@pytest.mark.parametrize(
    ("failure", "cls"),
    [
        (httpx.ConnectTimeout, errors.RequestTimeout),
        (httpx.ReadTimeout, errors.RequestTimeout),
        (httpx.WriteTimeout, errors.RequestTimeout),
        (httpx.PoolTimeout, errors.RequestTimeout),
        (httpx.ConnectError, errors.NetworkError),
        (httpx.ReadError, errors.NetworkError),
        (httpx.WriteError, errors.NetworkError),
        (httpx.RemoteProtocolError, errors.NetworkError),
        (httpx.ProxyError, errors.NetworkError),
    ],
)
@pytest.mark.parametrize("call", [send, add])
def test_transport_failures_have_no_code_and_no_secret(
    fake: FakeSendCloud,
    failure: type[httpx.TransportError],
    cls: type[errors.SendCloudError],
    call: Callable[[SendCloudClient], object],
) -> None:
    fake.queue(leaky(failure))
    with make_client(fake) as client:
        exc = capture(lambda: call(client))
    assert type(exc) is cls and exc.transient
    assert exc.code is None and exc.http_status is None
    assert exc.__context__ is None and exc.__cause__ is None
    assert failure.__name__ in str(exc)
    assert_no_secret(exc, fake)


def test_a_message_that_echoes_a_secret_is_masked(fake: FakeSendCloud) -> None:
    fake.queue(fail(40005, f"bad key {API_KEY}"), fail(422, f"expected {SMS_KEY}"))
    with make_client(fake) as client:
        api = capture(lambda: add(client))
        sms = capture(lambda: send(client))
    assert api.message == "bad key ***" and sms.message == "expected ***"
    assert_no_secret(api, fake)
    assert_no_secret(sms, fake)


class SteppingClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_461_resyncs_the_clock_and_retries_once(fake: FakeSendCloud) -> None:
    clock = SteppingClock(1_700_000_000.0)
    server_ms = 1_700_000_000_000 + 90_000  # SendCloud is 90 s ahead of us
    fake.queue(
        fail(461, "时间戳无效"),
        ok({"timestamp": server_ms}),
        ok({"successCount": 1, "smsIds": ["s1"]}),
        ok({"successCount": 1, "smsIds": ["s2"]}),
    )
    with make_client(fake, clock=clock) as client:
        result = send(client)
        clock.now += 5
        later = send(client)
    first, sync, retry, next_call = fake.requests
    assert (sync.method, sync.path) == ("GET", "/smsapi/timestamp/get")
    assert first.params["timestamp"] == "1700000000000"
    assert retry.params["timestamp"] == str(server_ms)
    assert retry.params["signature"] != first.params["signature"]
    assert {k: v for k, v in retry.params.items() if k not in ("timestamp", "signature")} == {
        k: v for k, v in first.params.items() if k not in ("timestamp", "signature")
    }
    # The learnt offset is kept for later calls.
    assert next_call.params["timestamp"] == str(server_ms + 5000)
    assert (result.sms_ids, later.sms_ids) == (["s1"], ["s2"])


def test_461_twice_is_a_clock_skew_error(fake: FakeSendCloud) -> None:
    fake.queue(fail(461), ok({"timestamp": 1_700_000_000_000}), fail(461, "still off"))
    with make_client(fake) as client:
        exc = capture(lambda: client.send_code(PHONE, "123456"))
    assert type(exc) is errors.ClockSkewError
    assert (exc.code, exc.message, exc.endpoint) == (461, "still off", "/smsapi/sendCode")
    assert [r.path for r in fake.requests].count("/smsapi/timestamp/get") == 1
    assert_no_secret(exc, fake)


def test_a_failed_resync_raises_the_resync_error(fake: FakeSendCloud) -> None:
    fake.queue(fail(461), leaky(httpx.ConnectError))
    with make_client(fake) as client:
        exc = capture(lambda: client.send_voice(PHONE, "123456"))
    assert type(exc) is errors.NetworkError
    assert exc.endpoint == "/smsapi/timestamp/get"
    assert_no_secret(exc, fake)
