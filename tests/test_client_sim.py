"""Every endpoint of the client against the simulator, which checks signatures, timestamps and
parameters independently of the client's own code."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from simulator import Simulator
from tests.test_client_fakes import make_settings
from worker.sendcloud import errors
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.retries import call_with_retries
from worker.settings import Settings

SMS_KEY = "sim-sms-key-0000"
API_KEY = "sim-api-key-0000"
LIST = "team@maillist.sendcloud.org"


SIM_CREDENTIALS = {
    "sms_user": "sim_sms_user",
    "sms_key": SMS_KEY,
    "api_user": "sim_api_user",
    "api_key": API_KEY,
}


def sim_settings(**overrides: object) -> Settings:
    return make_settings(**{**SIM_CREDENTIALS, **overrides})


@pytest.fixture
def sim() -> Simulator:
    sim = Simulator()
    sim.seed_template(1, "您好 %name%，余额 %money% 元")
    return sim


@pytest.fixture
def connect(sim: Simulator) -> Iterator[Callable[..., SendCloudClient]]:
    clients: list[SendCloudClient] = []

    def connect(clock: Callable[[], float] | None = None, **overrides: object) -> SendCloudClient:
        kwargs = {} if clock is None else {"clock": clock}
        client = SendCloudClient(sim_settings(**overrides), transport=sim.transport(), **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Callable[..., SendCloudClient]) -> SendCloudClient:
    return connect()


def no_secret_in(exc: BaseException) -> None:
    text = f"{exc} {exc!r} {exc.args!r} {exc.__context__!r} {exc.__cause__!r}"
    assert SMS_KEY not in text and API_KEY not in text


# -- SMS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["md5", "sha256"])
def test_send_sms_is_accepted_and_delivered(
    sim: Simulator, connect: Callable[..., SendCloudClient], method: str
) -> None:
    client = connect(sign_method=method)
    result = client.send_sms(
        1, ["13800000001", "13800000002"], {"name": "李雷 & 韩梅梅", "money": "1=1"},
        send_request_id=f"job-{method}", tag={"campaign": "春节"},
    )
    assert (result.status_code, result.success_count, result.failed) == (200, 2, [])
    entries = sim.ledger.entries()
    assert [e.phone for e in entries] == ["13800000001", "13800000002"]
    assert sorted(result.sms_ids) == sorted(e.sms_id for e in entries)
    assert entries[0].text == "您好 李雷 & 韩梅梅，余额 1=1 元"
    assert entries[0].send_request_id == f"job-{method}"


def test_partial_and_total_rejection(sim: Simulator, client: SendCloudClient) -> None:
    partial = client.send_sms(1, ["13800000001", "12345"], {"name": "A", "money": "1"})
    assert partial.partial and (partial.success_count, partial.failed_count) == (1, 1)
    assert partial.failed[0].phone == "12345" and partial.failed[0].message
    with pytest.raises(errors.RecipientsRejectedError) as info:
        client.send_sms(1, ["123", "456"])
    assert info.value.code == 312 and [i["phone"] for i in info.value.items] == ["123", "456"]
    with pytest.raises(errors.InvalidRequestError) as single:
        client.send_sms(1, ["123"])
    assert single.value.code == 412
    assert len(sim.ledger) == 1


def test_send_code_and_voice(sim: Simulator, client: SendCloudClient) -> None:
    code = client.send_code("13800000009", "4821", sign_name="测试签名", send_request_id="c1")
    voice = client.send_voice("13800000009", "654321", send_request_id="v1")
    assert code.success_count == 1 and voice.success_count == 1
    kinds = [(e.kind, e.text) for e in sim.ledger.entries()]
    assert kinds == [("code", "4821"), ("voice", "654321")]
    with pytest.raises(errors.InvalidRequestError) as info:
        client.send_code("13800000009", "12", sign_id=1)
    assert info.value.code == 482


def test_duplicate_request_id_as_error_and_as_replay(
    sim: Simulator, client: SendCloudClient
) -> None:
    first = client.send_code("13800000009", "1234", sign_id=3, send_request_id="same")
    with pytest.raises(errors.DuplicateRequestError) as info:
        client.send_code("13800000009", "1234", sign_id=3, send_request_id="same")
    assert info.value.code == 400
    sim.duplicate_mode = "replay"
    replayed = client.send_code("13800000009", "1234", sign_id=3, send_request_id="same")
    assert replayed.sms_ids == first.sms_ids
    assert len(sim.ledger) == 1


def test_server_timestamp_follows_the_simulator_clock(
    sim: Simulator, client: SendCloudClient
) -> None:
    sim.clock_offset_ms = 123_000
    before = int(sim.clock() * 1000)
    stamp = client.server_timestamp()
    assert before + 123_000 <= stamp <= int(sim.clock() * 1000) + 123_000


def test_461_resyncs_against_the_simulator(sim: Simulator, client: SendCloudClient) -> None:
    sim.clock_offset_ms = -45_000
    result = client.send_voice("13800000009", "1234")
    again = client.send_voice("13800000009", "5678")
    assert result.success_count == again.success_count == 1
    assert len(sim.ledger) == 2


def test_a_clock_that_keeps_jumping_ends_in_clock_skew(
    sim: Simulator, connect: Callable[..., SendCloudClient]
) -> None:
    jumps = itertools.count(1)
    client = connect(clock=lambda: sim.clock() + 60 * next(jumps))
    with pytest.raises(errors.ClockSkewError) as info:
        client.send_voice("13800000009", "1234")
    assert info.value.code == 461
    assert len(sim.ledger) == 0
    no_secret_in(info.value)


def test_wrong_credentials(connect: Callable[..., SendCloudClient]) -> None:
    with pytest.raises(errors.AuthError) as sms:
        connect(sms_key="wrong-sms-key").send_voice("13800000009", "1234")
    with pytest.raises(errors.AuthError) as api:
        connect(api_key="wrong-api-key").list_address_lists()
    assert (sms.value.code, api.value.code) == (422, 40005)
    no_secret_in(sms.value)
    no_secret_in(api.value)


def test_limits_and_balance(sim: Simulator, client: SendCloudClient) -> None:
    sim.set_phone_limits(per_minute=1, per_day=None)
    client.send_voice("13800000009", "1234")
    with pytest.raises(errors.PhoneMinuteLimitError):
        client.send_voice("13800000009", "1234")
    sim.set_phone_limits(per_minute=None, per_day=None)
    sim.set_balance(0)
    with pytest.raises(errors.QuotaError) as info:
        client.send_voice("13800000008", "1234")
    assert info.value.code == 499


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "path", "cls", "code", "http_status"),
    [
        ("server_error_rate", "/smsapi/sendVoice", errors.ServerError, 501, 200),
        ("gateway_error_rate", "/smsapi/sendVoice", errors.ServerError, None, 502),
        ("throttle_rate", "/smsapi/sendVoice", errors.ThrottledError, 50001, 200),
        ("throttle_rate", "/apiv2/addresslist/list", errors.ThrottledError, 50000, 200),
        ("reset_rate", "/smsapi/sendVoice", errors.NetworkError, None, None),
        ("drop_after_accept_rate", "/apiv2/addresslist/list", errors.NetworkError, None, None),
    ],
)
def test_injected_faults_become_transient_errors(
    sim: Simulator,
    client: SendCloudClient,
    fault: str,
    path: str,
    cls: type[errors.SendCloudError],
    code: int | None,
    http_status: int | None,
) -> None:
    sim.faults.set(path, **{fault: 1.0})
    call = (
        (lambda: client.send_voice("13800000009", "1234"))
        if path.startswith("/smsapi")
        else client.list_address_lists
    )
    with pytest.raises(cls) as info:
        call()
    assert info.value.transient
    assert (info.value.code, info.value.http_status, info.value.endpoint) == (
        code,
        http_status,
        path,
    )
    no_secret_in(info.value)


def test_a_dropped_reply_then_retry_with_the_same_id_is_a_duplicate(
    sim: Simulator, client: SendCloudClient
) -> None:
    sim.faults.set("/smsapi/send", drop_after_accept_rate=1.0)
    with pytest.raises(errors.NetworkError):
        client.send_sms(1, ["13800000001"], {"name": "A", "money": "1"}, send_request_id="k-9")
    sim.faults.clear()
    with pytest.raises(errors.DuplicateRequestError):
        client.send_sms(1, ["13800000001"], {"name": "A", "money": "1"}, send_request_id="k-9")
    assert len(sim.ledger) == 1


def test_short_retries_ride_out_flaky_faults(sim: Simulator, client: SendCloudClient) -> None:
    sim.faults.set("*", server_error_rate=0.3, reset_rate=0.2, throttle_rate=0.2)
    slept: list[float] = []
    results = [
        call_with_retries(
            lambda: client.list_address_lists(), attempts=8, sleep=slept.append, jitter=lambda: 0
        )
        for _ in range(10)
    ]
    assert all(page.total == 0 for page in results)
    assert slept  # the seeded dice did inject faults


# -- mail ----------------------------------------------------------------------------------


def test_email_status_pages_and_filters(sim: Simulator, client: SendCloudClient) -> None:
    ids = sim.seed_email_status(5, recipients=[f"r{i}@x.org" for i in range(5)])
    sim.advance_email_status(ids[:2], status=4, sub_status=406)
    sim.advance_email_status(ids[2:3], status=1)
    page = client.email_status(days=1, limit=3)
    assert page.total == 5 and len(page.records) == 3
    rest = client.email_status(days=1, start=3, limit=3)
    assert [r.email_id for r in page.records + rest.records] == ids
    invalid = client.email_status(days=1, status=4)
    assert invalid.total == 2
    assert {(r.status, r.sub_status, r.sub_status_desc) for r in invalid.records} == {
        ("无效邮件", "406", "地址不存在")
    }
    delivered = client.email_status(days=1, email_ids=[ids[2], ids[3]])
    assert sorted(r.status for r in delivered.records) == ["请求中", "送达"]
    assert all(r.api_user == "sim_api_user" for r in delivered.records)


def test_address_list_lifecycle(sim: Simulator, client: SendCloudClient) -> None:
    created = client.add_address_list(LIST, "团队", "all of us")
    assert (created.address, created.name, created.description, created.member_count) == (
        LIST,
        "团队",
        "all of us",
        0,
    )
    client.add_address_list("other@maillist.sendcloud.org", "other")
    page = client.list_address_lists()
    assert (page.total, page.count) == (2, 2)
    only = client.list_address_lists([LIST])
    assert [a.address for a in only.items] == [LIST]
    assert client.update_address_list(LIST, name="新团队", desc="renamed") == 1
    assert client.list_address_lists([LIST]).items[0].name == "新团队"
    assert client.delete_address_list("other@maillist.sendcloud.org") == 1
    assert set(sim.address_lists) == {LIST}
    with pytest.raises(errors.InvalidRequestError) as info:
        client.delete_address_list("missing@maillist.sendcloud.org")
    assert info.value.code == 40517


def test_member_lifecycle(sim: Simulator, client: SendCloudClient) -> None:
    client.add_address_list(LIST, "team")
    added = client.add_members(
        LIST,
        ["a@x.org", "b@x.org", "bad-address"],
        names=["甲", "B", "C"],
        vars=[{"city": "上海", "money": "99"}, {}, {"k": "v"}],
    )
    assert (added.count, added.invalid_count, added.invalid_addresses) == (2, 1, ["bad-address"])
    assert added.reasons == ["address invalid"]
    page = client.list_members(LIST)
    assert (page.total, [m.member for m in page.items]) == (2, ["a@x.org", "b@x.org"])
    first = page.items[0]
    assert (first.name, first.vars, first.address) == ("甲", {"city": "上海", "money": "99"}, LIST)
    assert page.items[1].vars == {}
    updated = client.update_members(
        LIST, ["a@x.org", "ghost@x.org"], new_members=["a2@x.org", "g2@x.org"],
        vars=[{"money": "100"}, {}],
    )
    assert (updated.count, updated.reasons) == (1, ["address not found"])
    (renamed,) = client.get_members(LIST, ["a2@x.org"])
    assert renamed.vars == {"city": "上海", "money": "100"}
    deleted = client.delete_members(LIST, ["a2@x.org", "b@x.org"])
    assert deleted.count == 2
    assert client.list_members(LIST).total == 0


def test_members_of_someone_elses_list(client: SendCloudClient) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        client.add_members("nobody@maillist.sendcloud.org", ["a@x.org"])
    assert info.value.code == 40517


def test_every_simulated_path_is_covered(sim: Simulator) -> None:
    """The client has a method for each endpoint the simulator serves."""
    from worker.sendcloud import client as client_module

    used = {
        value
        for name, value in vars(client_module).items()
        if name.isupper() and isinstance(value, str) and value.startswith("/")
    }
    assert set(sim.paths) == used


def test_form_values_survive_encoding(sim: Simulator, client: SendCloudClient) -> None:
    """Non-ASCII, '&', '=', '%' and spaces reach SendCloud exactly as given."""
    client.add_address_list(LIST, "a & b = c d", "说明 100%")
    assert (sim.address_lists[LIST].name, sim.address_lists[LIST].description) == (
        "a & b = c d",
        "说明 100%",
    )
    (listed,) = client.list_address_lists([LIST]).items
    assert (listed.name, listed.description) == ("a & b = c d", "说明 100%")
