"""The client's requests (paths, parameters, encoding) and its parsing of SendCloud's replies.

The replies in tests/fixtures/replies/ are the docs' own examples, converted to JSON by hand
where the docs use JavaScript object syntax or have a stray brace.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_client_fakes import (
    API_KEY,
    SMS_KEY,
    FakeSendCloud,
    doc_reply,
    make_client,
    make_settings,
    ok,
)
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.models import (
    AddressList,
    EmailStatusRecord,
    FailedRecipient,
    Member,
    SmsResult,
)


@pytest.fixture
def fake() -> FakeSendCloud:
    return FakeSendCloud()


def expected_signature(params: dict[str, str], key: str = SMS_KEY) -> str:
    body = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    return hashlib.md5(f"{key}&{body}&{key}".encode()).hexdigest()


def test_send_sms_posts_a_signed_utf8_form(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("sms_send_success"))
    with make_client(fake) as client:
        result = client.send_sms(
            42,
            ["13800000001", "13800000002"],
            {"name": "张三", "%money%": "100"},
            send_request_id="job-1",
            tag={"campaign": "春节"},
        )
    sent = fake.last
    assert (sent.method, sent.path) == ("POST", "/smsapi/send")
    assert sent.content_type == "application/x-www-form-urlencoded"
    assert sent.params == {
        "smsUser": "test_sms_user",
        "templateId": "42",
        "msgType": "0",
        "phone": "13800000001,13800000002",
        "vars": '{"name":"张三","%money%":"100"}',
        "sendRequestId": "job-1",
        "tag": '{"campaign":"春节"}',
        "timestamp": "1700000000000",
        "signature": expected_signature(sent.params),
    }
    assert result == SmsResult(
        status_code=200,
        message="请求成功",
        sms_ids=["1458113381893_15_3_11_1ainnq$131112345678"],
        success_count=1,
        failed_count=0,
        failed=[],
    )
    assert not result.partial and not result.replayed


def test_sha256_signing_is_used_when_configured(fake: FakeSendCloud) -> None:
    fake.queue(ok({"successCount": 1, "smsIds": ["a"]}))
    with make_client(fake, sign_method="sha256") as client:
        client.send_voice("13800000001", "123456")
    params = fake.last.params
    body = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    assert params["signature"] == hashlib.sha256(f"{SMS_KEY}&{body}&{SMS_KEY}".encode()).hexdigest()


def test_send_code_prefers_sign_id_over_sign_name(fake: FakeSendCloud) -> None:
    fake.queue(ok({"successCount": 1, "smsIds": ["a"]}), ok({"successCount": 1, "smsIds": ["b"]}))
    with make_client(fake) as client:
        client.send_code("13800000001", "4821", msg_type=2, sign_id=7, sign_name="ignored")
        first = fake.last.params
        client.send_code("13800000001", "4821", sign_name="我的签名", send_request_id="c-1")
        second = fake.last.params
    assert fake.requests[0].path == "/smsapi/sendCode"
    assert (first["signId"], first["msgType"], first["code"]) == ("7", "2", "4821")
    assert "signName" not in first
    assert (second["signName"], second["msgType"]) == ("我的签名", "0")
    assert second["sendRequestId"] == "c-1"
    assert "signId" not in second
    assert second["signature"] == expected_signature(second)


def test_send_voice_carries_phone_code_and_request_id(fake: FakeSendCloud) -> None:
    fake.queue(ok({"successCount": 1, "smsIds": ["v1"]}))
    with make_client(fake) as client:
        result = client.send_voice("13800000001", "654321", send_request_id="v-9", tag={"k": "v"})
    sent = fake.last
    assert sent.path == "/smsapi/sendVoice"
    assert {k: sent.params[k] for k in ("phone", "code", "sendRequestId", "tag")} == {
        "phone": "13800000001",
        "code": "654321",
        "sendRequestId": "v-9",
        "tag": '{"k":"v"}',
    }
    assert result.sms_ids == ["v1"] and result.success_count == 1


def test_server_timestamp_is_a_plain_get(fake: FakeSendCloud) -> None:
    fake.queue(ok({"timestamp": 1_700_000_123_456}))
    with make_client(fake) as client:
        assert client.server_timestamp() == 1_700_000_123_456
    assert (fake.last.method, fake.last.path, fake.last.params) == (
        "GET",
        "/smsapi/timestamp/get",
        {},
    )


def test_timeouts_come_from_settings(fake: FakeSendCloud) -> None:
    fake.queue(ok({"timestamp": 1}))
    with make_client(fake, connect_timeout=1.5, read_timeout=7.0) as client:
        client.server_timestamp()
    assert fake.last.timeout == {"connect": 1.5, "read": 7.0, "write": 7.0, "pool": 7.0}


def test_base_url_path_prefix_is_kept(fake: FakeSendCloud) -> None:
    fake.queue(ok({"timestamp": 1}))
    with make_client(fake, base_url="https://proxy.test/sendcloud") as client:
        client.server_timestamp()
    assert fake.last.path == "/sendcloud/smsapi/timestamp/get"


def test_sms_list_separator_inside_a_phone_is_refused(fake: FakeSendCloud) -> None:
    with make_client(fake) as client, pytest.raises(ValueError, match=r"phones\[1\]"):
        client.send_sms(1, ["13800000001", "13800000002,13800000003"])
    assert fake.requests == []


def test_email_status_parameters_and_doc_reply(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("email_status"), ok({"total": 0, "voList": []}))
    with make_client(fake) as client:
        page = client.email_status(
            days=2,
            email_ids=["a", "b"],
            api_user_list=["u1", "u2"],
            status=5,
            sub_status=["503", "509"],
            label_id="12",
            start=100,
            limit=50,
        )
        first = fake.last
        client.email_status(start_date=date(2024, 5, 1), end_date=date(2024, 5, 3), email="x@y.z")
        second = fake.last
    assert first.path == "/apiv2/data/emailStatus"
    assert first.params == {
        "apiUser": "test_api_user",
        "apiKey": API_KEY,
        "days": "2",
        "emailIds": "a;b",
        "apiUserList": "u1;u2",
        "status": "5",
        "subStatus": "503;509",
        "labelId": "12",
        "start": "100",
        "limit": "50",
    }
    assert (second.params["startDate"], second.params["endDate"]) == ("2024-05-01", "2024-05-03")
    assert "days" not in second.params and second.params["email"] == "x@y.z"
    # "total" is a string in the docs, and the second record spells it subStatDesc.
    assert page.total == 2
    assert page.records == [
        EmailStatusRecord(
            email_id="**_**_**_**_**_**_**-**$***@sendcloud.im",
            status="送达",
            sub_status=None,
            sub_status_desc=None,
            api_user="***",
            recipients="###@qq.com",
            request_time="2016-10-18 09:31:59",
            modified_time="2016-10-18 09:32:08",
            send_log="successfully delivered",
        ),
        EmailStatusRecord(
            email_id="**_**_**_**_**_**_**-**$***@sendcloud.im",
            status="无效邮件",
            sub_status="406",
            sub_status_desc="地址不存在",
            api_user="***",
            recipients="###@qq.com",
            request_time="2016-10-18 09:34:18",
            modified_time="2016-10-18 09:34:29",
            send_log="unrouteable address",
        ),
    ]


def test_email_status_needs_days_or_both_dates(fake: FakeSendCloud) -> None:
    with make_client(fake) as client, pytest.raises(ValueError, match="days"):
        client.email_status(start_date=date(2024, 5, 1))
    assert fake.requests == []


def test_address_list_endpoints(fake: FakeSendCloud) -> None:
    fake.queue(
        doc_reply("addresslist_list"),
        doc_reply("addresslist_add"),
        doc_reply("addresslist_update"),
        doc_reply("addresslist_delete"),
    )
    with make_client(fake) as client:
        page = client.list_address_lists(["a@maillist.sendcloud.org", "b@maillist.sendcloud.org"])
        created = client.add_address_list("developers41@sendcloud.com", "developer41", "41")
        updated = client.update_address_list("x@m.org", new_address="y@m.org", name="新名字")
        deleted = client.delete_address_list("y@m.org")
    paths = [r.path for r in fake.requests]
    assert paths == [
        "/apiv2/addresslist/list",
        "/apiv2/addresslist/add",
        "/apiv2/addresslist/update",
        "/apiv2/addresslist/delete",
    ]
    listed, added, changed, removed = (r.params for r in fake.requests)
    assert listed["address"] == "a@maillist.sendcloud.org;b@maillist.sendcloud.org"
    assert (listed["start"], listed["limit"]) == ("0", "100")
    assert (added["address"], added["name"], added["desc"]) == (
        "developers41@sendcloud.com",
        "developer41",
        "41",
    )
    assert (changed["newAddress"], changed["name"]) == ("y@m.org", "新名字")
    assert "desc" not in changed
    assert removed["address"] == "y@m.org"
    assert all(r.params["apiKey"] == API_KEY for r in fake.requests)
    assert (page.total, page.count) == (1, 1)
    assert page.items == [
        AddressList(
            address="developers4@sendcloud.com",
            name="211",
            description="desc",
            member_count=0,
            gmt_created="2015-09-15 20:29:01",
            gmt_updated="2015-09-15 20:29:01",
            member_updated="2015-09-21 11:36:42",
        )
    ]
    assert created == AddressList(
        address="developers41@sendcloud.com",
        name="developer41",
        description="41",
        member_count=0,
        gmt_created="2015-09-28 17:59:15",
        gmt_updated="2015-09-28 17:59:15",
        member_updated=None,
    )
    assert (updated, deleted) == (1, 1)


def test_update_address_list_needs_a_change(fake: FakeSendCloud) -> None:
    with make_client(fake) as client, pytest.raises(ValueError, match="new_address"):
        client.update_address_list("x@m.org")


def test_member_queries_parse_the_doc_replies(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("addressmember_list"), doc_reply("addressmember_get"))
    with make_client(fake) as client:
        page = client.list_members("test@maillist.sendcloud.org", start=0, limit=3)
        got = client.get_members("newtest@maillist.sendcloud.org", ["001@160it.com", "b@x.org"])
    listed, fetched = fake.requests
    assert (listed.path, listed.params["address"], listed.params["limit"]) == (
        "/apiv2/addressmember/list",
        "test@maillist.sendcloud.org",
        "3",
    )
    assert (fetched.path, fetched.params["members"]) == (
        "/apiv2/addressmember/get",
        "001@160it.com;b@x.org",
    )
    assert (page.total, page.count, len(page.items)) == (11378, 3, 3)
    assert page.items[2] == Member(
        address="test@maillist.sendcloud.org",
        member="057966@gmail.com",
        name=None,
        vars={},
        gmt_created="2015-04-30 11:16:41",
        gmt_updated="2015-04-30 11:16:41",
    )
    assert got == [
        Member(
            address="***",
            member="001@160it.com",
            name="001",
            vars={},
            gmt_created="2015-04-30 11:15:43",
            gmt_updated="2015-04-30 11:15:43",
        )
    ]


def test_member_vars_sent_as_a_json_string_parse_to_a_dict(fake: FakeSendCloud) -> None:
    record = {
        "gmtCreated": "2024-01-01 00:00:00",
        "gmtUpdated": "2024-01-01 00:00:00",
        "address": "l@m.org",
        "member": "a@b.org",
        "name": "A",
        "vars": json.dumps({"money": "99", "城市": "上海"}, ensure_ascii=False),
    }
    fake.queue(ok({"dataList": [record], "count": 1}))
    with make_client(fake) as client:
        (member,) = client.get_members("l@m.org", ["a@b.org"])
    assert member.vars == {"money": "99", "城市": "上海"}


def test_member_changes_join_lists_by_semicolon(fake: FakeSendCloud) -> None:
    fake.queue(
        doc_reply("addressmember_add"),
        doc_reply("addressmember_update"),
        doc_reply("addressmember_delete"),
    )
    with make_client(fake) as client:
        added = client.add_members(
            "l@m.org",
            ["1@1.com", "2@2.com"],
            names=["一", "two"],
            vars=[{"money": "99"}, {"money": "900"}],
        )
        updated = client.update_members(
            "l@m.org", ["1@1.com", "2@2.com"], new_members=["3@3.com", "4@4.com"]
        )
        deleted = client.delete_members("l@m.org", ["3@3.com", "4@4.com"])
    add, update, delete = fake.requests
    assert add.path == "/apiv2/addressmember/add"
    assert (add.params["members"], add.params["names"], add.params["vars"]) == (
        "1@1.com;2@2.com",
        "一;two",
        '{"money":"99"};{"money":"900"}',
    )
    assert update.path == "/apiv2/addressmember/update"
    assert update.params["newMembers"] == "3@3.com;4@4.com"
    assert "names" not in update.params and "vars" not in update.params
    assert delete.path == "/apiv2/addressmember/delete"
    assert delete.params["members"] == "3@3.com;4@4.com"
    assert added.count == 1 and added.invalid_count == 3
    assert added.invalid_addresses == ["2.@qq.com", "3@qq.com", "4@qq.com"]
    assert added.reasons == ["address invalid", "address duplicate", "vars invalid"]
    assert updated.invalid_count == 4 and updated.reasons[-1] == "address not found"
    assert (deleted.count, deleted.invalid_count, deleted.invalid_addresses) == (2, 0, [])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"names": ["only one"]}, "names"),
        ({"vars": [{"a": "1"}]}, "vars"),
        ({"vars": [{"a": "x;y"}, {"a": "1"}]}, r"vars\[0\]"),
    ],
)
def test_member_lists_that_cannot_be_joined_are_refused(
    fake: FakeSendCloud, kwargs: dict[str, object], field: str
) -> None:
    with make_client(fake) as client, pytest.raises(ValueError, match=field):
        client.add_members("l@m.org", ["1@1.com", "2@2.com"], **kwargs)  # type: ignore[arg-type]
    assert fake.requests == []


def test_partial_success_doc_reply_is_a_result_with_failures(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("sms_partial"))
    with make_client(fake) as client:
        result = client.send_sms(1, ["131112345678", "1312222"])
    assert result.partial
    assert (result.success_count, result.failed_count) == (1, 1)
    assert result.failed == [FailedRecipient(phone="1312222", message="手机号格式错误", vars={})]


def test_a_replayed_success_parses_as_a_plain_success(fake: FakeSendCloud) -> None:
    reply = ok({"successCount": 1, "smsIds": ["same-id"]})
    fake.queue(reply, reply)
    with make_client(fake) as client:
        first = client.send_sms(1, ["13800000001"], send_request_id="k-1")
        again = client.send_sms(1, ["13800000001"], send_request_id="k-1")
    assert first == again and not again.replayed


def test_a_closed_client_refuses_to_send(fake: FakeSendCloud) -> None:
    fake.queue(ok({"timestamp": 5}))
    with make_client(fake) as client:
        assert client.server_timestamp() == 5
    with pytest.raises(RuntimeError):
        client.server_timestamp()
    assert len(fake.requests) == 1


def test_api_success_doc_reply_with_empty_info_is_accepted(fake: FakeSendCloud) -> None:
    fake.queue(doc_reply("api_success"))
    with make_client(fake) as client:
        page = client.list_members("l@m.org")
    assert (page.total, page.count, page.items) == (0, 0, [])


def test_request_errors_outside_httpx_are_not_swallowed(fake: FakeSendCloud) -> None:
    fake.queue(KeyError("a bug in a transport"))
    with make_client(fake) as client, pytest.raises(KeyError):
        client.server_timestamp()


def test_get_members_with_a_string_is_refused(fake: FakeSendCloud) -> None:
    with make_client(fake) as client, pytest.raises(TypeError, match="members"):
        client.get_members("l@m.org", "a@b.org")


def test_http_4xx_with_a_json_reply_is_read_normally(fake: FakeSendCloud) -> None:
    fake.queue(httpx.Response(400, json=ok({"count": 3})))
    with make_client(fake) as client:
        assert client.delete_address_list("l@m.org") == 3


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=30), max_size=6))
def test_form_body_is_urlencode(params: dict[str, str]) -> None:
    import urllib.parse

    from worker.sendcloud.client import form_body

    assert form_body(params).decode("ascii") == urllib.parse.urlencode(params)


# -- the transport: the environment's proxy, as httpx.Client would pick it -------------------


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself and keeps its request line (it
    answers a direct request the same way, as SendCloud would)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        body = json.dumps({"result": True, "statusCode": 200, "message": "ok",
                           "info": {"timestamp": 7}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ForwardProxy.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_proxy_the_environment_names(
    forward_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with SendCloudClient(make_settings(base_url="http://sendcloud.invalid")) as client:
        assert client.server_timestamp() == 7
    assert _ForwardProxy.seen == ["GET http://sendcloud.invalid/smsapi/timestamp/get"]


@pytest.mark.parametrize("variable", ["ALL_PROXY", "HTTP_PROXY"])
def test_a_proxy_named_without_a_scheme_or_by_all_proxy_is_used(
    forward_proxy: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, forward_proxy.removeprefix("http://"))
    with SendCloudClient(make_settings(base_url="http://sendcloud.invalid")) as client:
        assert client.server_timestamp() == 7
    assert _ForwardProxy.seen == ["GET http://sendcloud.invalid/smsapi/timestamp/get"]


def test_no_proxy_sends_directly(forward_proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same server serves as the proxy and as SendCloud: a proxied request names the whole
    # URL on its request line, a direct one only the path. No DNS lookup is involved.
    monkeypatch.setenv("HTTP_PROXY", forward_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with SendCloudClient(make_settings(base_url=forward_proxy)) as client:
        assert client.server_timestamp() == 7
    assert _ForwardProxy.seen == ["GET /smsapi/timestamp/get"]
