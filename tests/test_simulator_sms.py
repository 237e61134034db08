from __future__ import annotations

import json
import re
from typing import Any

import pytest

from simulator import Simulator
from tests.test_simulator_support import (
    SMS_USER,
    Clock,
    SimClient,
    make_sim,
    signature,
    signed,
)

PHONE = "13800138000"
OTHER = "13900139000"


@pytest.fixture
def setup() -> tuple[Simulator, SimClient, Clock]:
    sim, client, clock = make_sim()
    sim.seed_template(1, "您好 %name%，余额 %money%")
    sim.seed_template(2, "draft", approved=False)
    sim.seed_template(3, "mms body", msg_type=1)
    return sim, client, clock


def send(client: SimClient, **params: Any) -> dict[str, Any]:
    return client.sms("send", **{"templateId": 1, "phone": PHONE, **params})


def code_of(reply: dict[str, Any]) -> int:
    return int(reply["statusCode"])


def test_send_success_shape_ledger_and_rendered_text(setup: tuple[Simulator, SimClient, Clock]):
    sim, client, clock = setup
    reply = send(client, phone=f"{PHONE},{OTHER}", vars=json.dumps({"name": "李雷", "%money%": 5}))
    assert reply["result"] is True and reply["statusCode"] == 200
    assert reply["message"] == "请求成功"
    assert reply["info"]["successCount"] == 2
    sms_ids = reply["info"]["smsIds"]
    assert [i.split("$")[1] for i in sms_ids] == [PHONE, OTHER]
    assert all(re.fullmatch(r"\d{13}_\d+_\d+_\d+_[0-9a-z]{6}\$1\d{10}", i) for i in sms_ids)
    assert len(set(sms_ids)) == 2
    entries = sim.ledger.entries()
    assert [(e.seq, e.kind, e.phone, e.template_id, e.sms_id) for e in entries] == [
        (1, "sms", PHONE, 1, sms_ids[0]), (2, "sms", OTHER, 1, sms_ids[1])]
    assert entries[0].text == "您好 李雷，余额 5"
    assert entries[0].at == clock.now
    assert sim.ledger.count_by_phone() == {PHONE: 1, OTHER: 1}


def test_sha256_signatures_and_upper_case_hex_are_accepted(setup):
    sim, client, _ = setup
    params = signed({"templateId": 1, "phone": PHONE}, method="sha256")
    assert code_of(client.post_form("/smsapi/send", params)) == 200
    params = signed({"templateId": 1, "phone": OTHER})
    params["signature"] = params["signature"].upper()
    assert code_of(client.post_form("/smsapi/send", params)) == 200
    assert len(sim.ledger.entries()) == 2


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.pop("smsUser"), 472),
        (lambda p: p.update(smsUser=""), 472),
        (lambda p: p.pop("signature"), 421),
        (lambda p: p.update(phone=OTHER), 422),  # tampered after signing
        (lambda p: p.update(signature="0" * 32), 422),
        (lambda p: p.update(signature="abc"), 422),
    ],
)
def test_credential_and_signature_codes(setup, mutate, expected):
    sim, client, _ = setup
    params = signed({"templateId": 1, "phone": PHONE})
    mutate(params)
    assert code_of(client.post_form("/smsapi/send", params)) == expected
    assert sim.ledger.entries() == []


def test_unknown_sms_user_and_wrong_key(setup):
    _, client, _ = setup
    stranger = signed({"templateId": 1, "phone": PHONE}, user="someone_else")
    assert code_of(client.post_form("/smsapi/send", stranger)) == 471
    wrong_key = signed({"templateId": 1, "phone": PHONE}, key="not-the-key")
    assert code_of(client.post_form("/smsapi/send", wrong_key)) == 422


def test_timestamp_window_and_clock_offset(setup):
    sim, client, clock = setup
    now_ms = int(clock.now * 1000)
    assert code_of(send(client, timestamp=now_ms + 6000)) == 200
    assert code_of(send(client, phone=OTHER, timestamp=now_ms - 6001)) == 461
    assert code_of(send(client, phone=OTHER, timestamp="yesterday")) == 461
    sim.clock_offset_ms = 10_000
    assert code_of(send(client, phone=OTHER, timestamp=now_ms)) == 461
    server = client.http.get("/smsapi/timestamp/get").json()
    assert server == {"result": True, "statusCode": 200, "message": "请求成功",
                      "info": {"timestamp": now_ms + 10_000}}
    assert code_of(send(client, phone=OTHER, timestamp=server["info"]["timestamp"])) == 200
    assert len(sim.ledger.entries()) == 2


def test_timestamp_get_is_get_only_and_send_is_post_only(setup):
    _, client, _ = setup
    assert client.http.post("/smsapi/timestamp/get").status_code == 405
    response = client.http.get("/smsapi/send", params=signed({"templateId": 1, "phone": PHONE}))
    assert response.status_code == 405
    assert response.json()["result"] is False
    assert client.http.get("/smsapi/nothing").status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"templateId": ""}, 433),
        ({"templateId": 99}, 431),
        ({"templateId": "x1"}, 431),
        ({"templateId": 2}, 432),
        ({"templateId": 3}, 431),  # an MMS template sent as SMS
        ({"templateId": 1, "msgType": 1}, 431),
        ({"templateId": 1, "msgType": 7}, 431),
        ({"phone": ""}, 411),
        ({"phone": "12345"}, 412),
        ({"phone": f"{PHONE},{PHONE}"}, 413),
        ({"vars": "{not json"}, 441),
        ({"vars": '["a"]'}, 441),
        ({"vars": '{"name": {"nested": 1}}'}, 441),
        ({"vars": '{"name": "see http://x.cn"}'}, 441),
        ({"vars": '{"name": "HTTPS://x.cn"}'}, 441),
        ({"vars": json.dumps({"name": "x" * 33})}, 483),
        ({"tag": "not json"}, 441),
        ({"tag": json.dumps({"k": "v" * 130})}, 441),
        ({"sendRequestId": "r" * 129}, 441),
    ],
)
def test_send_validation_codes(setup, params, expected):
    sim, client, _ = setup
    reply = send(client, **params)
    assert reply["statusCode"] == expected and reply["result"] is False
    assert reply["info"] == {}
    assert sim.ledger.entries() == []


def test_limits_at_the_edge_are_accepted(setup):
    sim, client, _ = setup
    reply = send(client, templateId=3, msgType=1, vars=json.dumps({"name": "x" * 32}),
                 tag=json.dumps({"k": "v" * 118}), sendRequestId="r" * 128)
    assert code_of(reply) == 200
    assert sim.ledger.entries()[0].msg_type == 1


def test_more_than_2000_phones_is_412_and_2000_is_accepted(setup):
    sim, client, _ = setup
    phones = [f"138{i:08d}" for i in range(2001)]
    reply = send(client, phone=",".join(phones))
    assert reply["statusCode"] == 412
    assert reply["message"] == "phone numbers cannot be more than 2000"
    assert code_of(send(client, phone=",".join(phones[:2000]))) == 200
    assert len(sim.ledger.entries()) == 2000


def test_sms_ids_are_unique_across_requests_and_the_ledger_reads_from_a_seq(setup):
    sim, client, _ = setup
    ids: list[str] = []
    for r in range(3):
        phones = [f"138{r}{i:07d}" for i in range(2000)]
        ids += send(client, phone=",".join(phones))["info"]["smsIds"]
    voice = client.sms("sendVoice", phone=PHONE, code="1234")["info"]["smsIds"]
    assert len(set(ids + voice)) == 6001
    suffixes = [{i.split("_")[4][:6] for i in ids[k : k + 2000]} for k in (0, 2000)]
    assert len(suffixes[0]) == 1 and suffixes[0] != suffixes[1]  # one per request
    later = sim.ledger.entries(since=5999)
    assert [(e.seq, e.kind, e.phone, e.sms_id) for e in later] == [
        (6000, "sms", "1382" + f"{1999:07d}", ids[-1]), (6001, "voice", PHONE, voice[0])]
    assert len(sim.ledger) == 6001


def test_partial_success_is_311_with_result_true(setup):
    sim, client, _ = setup
    reply = send(client, phone=f"{PHONE},1312222", vars='{"name":"a"}')
    assert reply["result"] is True and reply["statusCode"] == 311
    assert reply["message"] == "部分成功"
    info = reply["info"]
    assert info["successCount"] == 1 and info["failedCount"] == 1
    assert info["items"] == [
        {"phone": "1312222", "vars": {"name": "a"}, "message": "手机号格式错误"}]
    assert [i.split("$")[1] for i in info["smsIds"]] == [PHONE]
    assert [e.phone for e in sim.ledger.entries()] == [PHONE]


def test_all_phones_invalid_is_312_with_items(setup):
    sim, client, _ = setup
    reply = send(client, phone="1312222,99")
    assert reply["result"] is False and reply["statusCode"] == 312
    assert reply["info"]["successCount"] == 0 and reply["info"]["failedCount"] == 2
    assert [item["phone"] for item in reply["info"]["items"]] == ["1312222", "99"]
    assert sim.ledger.entries() == []


def test_each_send_request_id_expires_an_hour_after_its_own_acceptance(setup):
    sim, client, clock = setup
    assert code_of(send(client, sendRequestId="a")) == 200
    clock.advance(1800)
    assert code_of(send(client, sendRequestId="b", phone=OTHER)) == 200
    clock.advance(1800)  # a's hour is over, b has 30 minutes left
    assert code_of(send(client, sendRequestId="a")) == 200
    assert code_of(send(client, sendRequestId="b", phone=OTHER)) == 400
    clock.advance(3600)  # a's second acceptance expires too
    assert code_of(send(client, sendRequestId="a")) == 200
    assert [e.send_request_id for e in sim.ledger.entries()] == ["a", "b", "a", "a"]


def test_duplicate_send_request_id_error_mode(setup):
    sim, client, clock = setup
    assert code_of(send(client, sendRequestId="order-1")) == 200
    clock.advance(3599)
    again = send(client, sendRequestId="order-1", phone=OTHER)
    assert again == {"result": False, "statusCode": 400, "message": "duplicate request", "info": {}}
    assert len(sim.ledger.entries()) == 1
    clock.advance(1)  # the hour is over: processed again
    assert code_of(send(client, sendRequestId="order-1")) == 200
    assert [e.send_request_id for e in sim.ledger.entries()] == ["order-1", "order-1"]


def test_duplicate_send_request_id_replay_mode_returns_first_reply(setup):
    sim, client, _ = setup
    sim.duplicate_mode = "replay"
    first = send(client, sendRequestId="order-2")
    assert send(client, sendRequestId="order-2") == first
    assert client.sms("sendCode", phone=OTHER, code="1234", signName="s",
                      sendRequestId="order-2") == first
    assert len(sim.ledger.entries()) == 1
    with pytest.raises(ValueError, match="duplicate_mode"):
        sim.duplicate_mode = "ignore"


def test_refused_request_does_not_consume_its_send_request_id(setup):
    sim, client, _ = setup
    sim.set_balance(0)
    assert code_of(send(client, sendRequestId="order-3")) == 499
    sim.set_balance(None)
    assert code_of(send(client, sendRequestId="order-3")) == 200
    assert len(sim.ledger.entries()) == 1


def test_balance_is_charged_per_message(setup):
    sim, client, _ = setup
    sim.set_balance(2)
    assert code_of(send(client, phone=f"{PHONE},{OTHER},13700137000")) == 499
    assert sim.ledger.entries() == []
    assert code_of(send(client, phone=f"{PHONE},{OTHER}")) == 200
    assert sim.balance == 0
    assert code_of(client.sms("sendVoice", phone=PHONE, code="1234")) == 499
    sim.set_balance(None)
    assert code_of(client.sms("sendVoice", phone=PHONE, code="1234")) == 200


def test_per_phone_minute_limit(setup):
    sim, client, clock = setup
    sim.set_phone_limits(per_minute=2, per_day=None)
    assert code_of(send(client)) == 200
    assert code_of(client.sms("sendCode", phone=PHONE, code="1234", signName="s")) == 200
    assert code_of(send(client, phone=f"{OTHER},{PHONE}")) == 496
    assert sim.ledger.count_by_phone() == {PHONE: 2}  # nothing of the refused request was sent
    clock.advance(60)
    assert code_of(send(client)) == 200


def test_per_phone_day_limit_follows_the_shanghai_calendar_day(setup):
    sim, client, clock = setup
    sim.set_phone_limits(per_minute=None, per_day=2)
    assert code_of(send(client)) == 200
    clock.advance(3600)
    assert code_of(send(client)) == 200
    clock.advance(3600)
    assert code_of(send(client)) == 498
    clock.advance(12 * 3600)  # 2024-05-02 00:00 in Shanghai
    assert code_of(send(client)) == 200
    with pytest.raises(ValueError):
        sim.set_phone_limits(per_minute=0, per_day=None)


def test_send_code_rules(setup):
    sim, client, _ = setup
    ok = client.sms("sendCode", phone=PHONE, code="123456", signName="SendCloud")
    assert code_of(ok) == 200 and ok["info"]["successCount"] == 1
    assert code_of(client.sms("sendCode", msgType=2, phone="+85291234567", code="0042",
                              signId=7)) == 200
    entries = sim.ledger.entries()
    assert [(e.kind, e.phone, e.text, e.msg_type, e.template_id) for e in entries] == [
        ("code", PHONE, "123456", 0, None), ("code", "+85291234567", "0042", 2, None)]
    cases = [
        ({"code": "1234"}, 433),  # neither signId nor signName
        ({"code": "1234", "signId": "abc", "signName": "ok"}, 431),  # signId wins
        ({"code": "", "signName": "s"}, 481),
        ({"code": "123", "signName": "s"}, 482),
        ({"code": "1234567", "signName": "s"}, 482),
        ({"code": "12a4", "signName": "s"}, 482),
        ({"code": "1234", "signName": "s", "msgType": 1}, 482),
        ({"code": "1234", "signName": "s", "phone": "+85291234567"}, 412),
        ({"code": "1234", "signName": "s", "phone": f"{PHONE},{OTHER}"}, 412),
        ({"code": "1234", "signName": "s", "phone": ""}, 411),
    ]
    for params, expected in cases:
        assert code_of(client.sms("sendCode", **{"phone": PHONE, **params})) == expected, params
    assert len(sim.ledger.entries()) == 2


def test_send_voice_rules(setup):
    sim, client, _ = setup
    assert code_of(client.sms("sendVoice", phone=PHONE, code="8888")) == 200
    assert code_of(client.sms("sendVoice", phone=PHONE, code="88")) == 482
    assert code_of(client.sms("sendVoice", phone=PHONE)) == 481
    assert code_of(client.sms("sendVoice", phone="", code="8888")) == 411
    assert code_of(client.sms("sendVoice", phone="+85291234567", code="8888")) == 412
    assert [(e.kind, e.text) for e in sim.ledger.entries()] == [("voice", "8888")]


def test_utf8_multipart_and_query_string_parameters_are_signed_as_decoded(setup):
    sim, client, _ = setup
    params = signed({"templateId": 1, "phone": PHONE, "vars": json.dumps({"name": "王 & 李=%"})})
    response = client.http.post("/smsapi/send", data=params, files={"x": ("x.txt", b"x")})
    assert response.json()["statusCode"] == 200
    query = signed({"templateId": 1, "phone": OTHER})
    response = client.http.post("/smsapi/send", params={"smsUser": SMS_USER},
                                data={k: v for k, v in query.items() if k != "smsUser"})
    assert response.json()["statusCode"] == 200
    assert sim.ledger.entries()[0].text == "您好 王 & 李=%，余额 %money%"


@pytest.mark.parametrize("method", ["md5", "sha256"])
def test_the_client_signing_code_is_accepted(setup, method):
    from worker.sendcloud.signing import sign

    _, client, _ = setup
    params = {"smsUser": SMS_USER, "templateId": "1", "phone": PHONE, "vars": '{"name":"张 &"}'}
    params["signature"] = sign(params, "sim-sms-key-0000", method)
    assert code_of(client.post_form("/smsapi/send", params)) == 200
    assert signature({k: v for k, v in params.items() if k != "signature"}, method=method) == \
        params["signature"]
