"""The API's single jobs, verifications and job results: the producers' validation and
idempotency over HTTP, on a real RedisBroker and redis-server."""

from __future__ import annotations

from collections.abc import Callable

from producers.contract import CODES_QUEUE, MEMBERS_QUEUE, SEND_VOICE_CODE_ACTOR, SMS_QUEUE
from producers.idempotency import record_key
from producers.verification import unseal
from tests.api_support import VERIFY_SECRET, Api, api_fixture  # noqa: F401  (fixture `api`)

PHONE = "13800138000"


def test_an_sms_is_enqueued_with_the_producers_payload(api: Callable[..., Api]) -> None:
    a = api()
    answer = a.http.post("/sms", headers=a.auth("send"), json={
        "template_id": 7, "phones": ["+86 138-0013-8000", "13900139000"],
        "vars": {"name": "Li", "money": 100}, "tag": {"order": "o-1"}})
    assert answer.status_code == 202
    key = answer.json()["key"]
    assert answer.json()["result"] == f"/v1/jobs/{key}"
    [message] = a.queued(SMS_QUEUE)
    payload = message["args"][0]
    assert payload["key"] == key
    assert payload["phones"] == [PHONE, "13900139000"]  # normalised by the producers
    assert payload["vars"] == {"name": "Li", "money": "100"}
    assert payload["tag"] == {"order": "o-1"}


def test_bad_input_is_a_422_naming_the_field_and_nothing_is_queued(
    api: Callable[..., Api],
) -> None:
    a = api()
    auth = a.auth("send")
    cases = [
        ("/sms", {"template_id": 7, "phones": ["12345"]}, "phones[0]"),
        ("/sms", {"template_id": 0, "phones": [PHONE]}, "template_id"),
        ("/sms", {"template_id": 7, "phones": "13800138000"}, "phones"),
        ("/sms", {"template_id": 7}, "phones"),
        ("/sms", {"template_id": 7, "phones": [PHONE], "colour": "red"}, "colour"),
        ("/codes", {"phone": PHONE, "code": "12"}, "code"),
        ("/codes", {"phone": PHONE, "code": "1234"}, "sign_id"),
        ("/voice-codes", {"phone": "+4915112345678", "code": "1234"}, "phone"),
        ("/members/add", {"address": "list@example.com", "members": ["not-mail"]}, "members[0]"),
        ("/members/update", {"address": "list@example.com", "members": ["a@example.com"],
                             "new_members": []}, "new_members"),
    ]
    for path, body, field in cases:
        answer = a.http.post(path, headers=auth, json=body)
        assert answer.status_code == 422, (path, body, answer.text)
        error = answer.json()["error"]
        assert error["field"] == field, (path, body, error)
        assert error["rule"] and error["message"].startswith(field)
    for body in (b"[1, 2]", b"{not json", b""):
        answer = a.http.post("/sms", headers={**auth, "content-type": "application/json"},
                             content=body)
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "body"
    assert a.queued(SMS_QUEUE) == a.queued(CODES_QUEUE) == a.queued(MEMBERS_QUEUE) == []
    assert a.redis.keys(record_key("*")) == []


def test_idempotency_key_same_body_same_job_other_body_409(api: Callable[..., Api]) -> None:
    a = api()
    auth = {**a.auth("send"), "Idempotency-Key": "order-42-code"}
    body = {"phone": PHONE, "code": "123456", "sign_id": 3}
    first = a.http.post("/codes", headers=auth, json=body)
    again = a.http.post("/codes", headers=auth, json=body)
    assert first.status_code == again.status_code == 202
    assert first.json()["key"] == again.json()["key"] == "order-42-code"
    # Still queued: the producers enqueue a repeat (the first may have died before enqueueing);
    # the worker's claim lets one copy run. Once taken, a repeat enqueues nothing.
    a.redis.hset(record_key("order-42-code"), "state", "in_flight")
    a.http.post("/codes", headers=auth, json=body)
    assert len(a.queued(CODES_QUEUE)) == 2
    other = a.http.post("/codes", headers=auth, json={**body, "code": "654321"})
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "idempotency_key"
    assert "654321" not in other.text and "123456" not in other.text
    job = a.http.get("/jobs/order-42-code", headers=a.auth("read"))
    assert job.json()["kind"] == "code" and "123456" not in job.text  # the code is never shown
    bad = a.http.post("/codes", headers={**auth, "Idempotency-Key": "has space"}, json=body)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "idempotency_key"
    assert len(a.queued(CODES_QUEUE)) == 2


def test_member_changes_voice_codes_and_a_split_call(api: Callable[..., Api]) -> None:
    a = api()
    auth = a.auth("send")
    members = [f"m{i}@example.com" for i in range(1500)]
    added = a.http.post("/members/add", headers=auth,
                        json={"address": "list@example.com", "members": members})
    assert added.status_code == 202
    parts = [m["args"][0] for m in a.queued(MEMBERS_QUEUE)]
    assert [(p["op"], p["key"], len(p["members"])) for p in parts] == [
        ("add", f"{added.json()['key']}:part0", 1000), ("add", f"{added.json()['key']}:part1", 500)]
    a.http.post("/members/update", headers=auth, json={
        "address": "list@example.com", "members": ["a@example.com"],
        "new_members": ["b@example.com"], "names": ["Bee"]})
    a.http.post("/members/delete", headers=auth,
                json={"address": "list@example.com", "members": ["b@example.com"]})
    ops = [m["args"][0]["op"] for m in a.queued(MEMBERS_QUEUE)]
    assert ops == ["add", "add", "update", "delete"]
    voice = a.http.post("/voice-codes", headers=auth, json={"phone": PHONE, "code": "4321"})
    assert voice.status_code == 202
    [message] = a.queued(CODES_QUEUE)
    assert message["actor_name"] == SEND_VOICE_CODE_ACTOR


def test_a_job_is_read_back_with_its_result(api: Callable[..., Api]) -> None:
    a = api()
    key = a.http.post("/sms", headers=a.auth("send"),
                      json={"template_id": 7, "phones": [PHONE]}).json()["key"]
    read = a.auth("read")
    job = a.http.get(f"/jobs/{key}", headers=read)
    assert job.status_code == 200
    assert (job.json()["key"], job.json()["state"], job.json()["result"]) == (key, "queued", None)
    missing = a.http.get("/jobs/no-such-job", headers=read)
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "key"


def test_a_verification_is_started_checked_and_cancelled(api: Callable[..., Api]) -> None:
    a = api()
    auth = a.auth("send")
    started = a.http.post("/verifications", headers=auth, json={"phone": PHONE})
    assert started.status_code == 201
    body = started.json()
    assert set(body) == {"id", "phone", "channel", "expires_at", "resend_at", "send_key",
                         "resent"}
    [message] = a.queued(CODES_QUEUE)
    assert message["args"][0]["key"] == body["send_key"]
    assert "code" not in message["args"][0]  # sealed; the API never has it in clear
    code = unseal(VERIFY_SECRET.encode(), body["id"], message["args"][0]["sealed_code"])
    wrong_code = "000000" if code != "000000" else "111111"
    wrong = a.http.post("/verifications/check", headers=auth,
                        json={"phone": PHONE, "code": wrong_code})
    assert wrong.json() == {"status": "wrong_code", "attempts_left": 4,
                            "verification_id": body["id"]}
    right = a.http.post("/verifications/check", headers=auth, json={"phone": PHONE, "code": code})
    assert right.json()["status"] == "approved"
    assert code not in started.text + wrong.text + right.text
    a.http.post("/verifications", headers=auth, json={"phone": PHONE})
    cancelled = a.http.post("/verifications/cancel", headers=auth, json={"phone": PHONE})
    assert cancelled.json() == {"cancelled": True}
    after = a.http.post("/verifications/check", headers=auth, json={"phone": PHONE, "code": "1"})
    assert after.json()["status"] == "not_found"
    assert VERIFY_SECRET not in started.text + wrong.text + after.text
    refused = a.http.post("/verifications", headers={**auth, "Idempotency-Key": "k"},
                          json={"phone": PHONE})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "Idempotency-Key"
