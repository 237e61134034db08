"""Mail WebHook events, events made by hand, hook settings, the bounded window and the CLI."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from simulator import HookSettings, Simulator
from simulator.admin import SimulatorAdmin, SimulatorAdminError
from simulator.hook_dispatch import WINDOW, backoff
from simulator.hook_events import MAIL_SUBSTATS, sign
from simulator.protocol import RawRequest
from tests.hook_receiver import MAIL_HOOK_KEY, SMS_HOOK_KEY, HookReceiver, phones
from tests.redis_server import free_port
from tests.test_simulator_support import signature, signed

STATUS_OF = {"deliver": "送达", "invalid": "无效邮件", "soft_bounce": "软退信"}


def test_seeded_emails_get_one_fate_each_that_matches_email_status(rig):
    r = rig(seed=4, mail_mix={"deliver": 0.6, "invalid": 0.2, "soft_bounce": 0.2},
            open_rate=0.5, click_rate=0.5)
    ids = r.admin.seed_email_status(80)
    stats = r.settle()
    [request] = r.receiver.events("request", "/mail")
    assert request.fields["emailIds"] == ids and int(request.fields["recipientSize"]) == 80
    assert request.fields["recipientArray"] == [i.split("$")[1] for i in ids]
    finals = {e.fields["emailId"]: e for e in r.receiver.events(path="/mail")
              if e.event in STATUS_OF}
    assert set(finals) == set(ids)
    records = {rec["emailId"]: rec for rec in r.admin.email_records()}
    for email_id, event in finals.items():
        assert records[email_id]["status"] == STATUS_OF[event.event]
        assert event.fields["category"] == "sim_api_user"
        if event.event in MAIL_SUBSTATS:
            assert int(event.fields["substat"]) in MAIL_SUBSTATS[event.event]
            assert records[email_id]["subStatus"] == event.fields["substat"]
            assert event.fields["substatdesc"] == records[email_id]["subStatDesc"]
    seen = Counter(e.event for e in finals.values())
    assert stats["mail"]["outcomes"] == {k: seen[k] for k in STATUS_OF}
    assert min(seen.values()) > 5
    order = [(e.event, e.fields.get("emailId")) for e in r.receiver.events(path="/mail")]
    opens = r.receiver.events("open", "/mail")
    clicks = r.receiver.events("click", "/mail")
    assert len(opens) == stats["mail"]["opens"] > 0 and len(clicks) == stats["mail"]["clicks"] > 0
    for click in clicks:
        assert click.fields["url"].startswith("https://")
    for event in opens + clicks:  # only delivered mail is opened, and opened before clicked
        email_id = event.fields["emailId"]
        assert finals[email_id].event == "deliver"
        before = "deliver" if event.event == "open" else "open"
        assert order.index((before, email_id)) < order.index((event.event, email_id))
    assert stats["mail"]["posted"] == {"request": 1, **seen, "open": len(opens),
                                       "click": len(clicks)}


def test_emails_moved_by_hand_post_their_new_status(rig):
    r = rig()
    r.admin.configure_hooks(mail_url=None)
    ids = r.admin.seed_email_status(3)  # no mail hook yet: they stay requesting
    r.admin.configure_hooks(mail_url=r.receiver.url("/mail"), mail_key=MAIL_HOOK_KEY)
    r.admin.advance_email_status(ids[:2], status=5, sub_status=507)
    stats = r.settle()
    bounces = r.receiver.events("soft_bounce", "/mail")
    assert sorted(e.fields["emailId"] for e in bounces) == sorted(ids[:2])
    assert {e.fields["substat"] for e in bounces} == {"507"}
    assert stats["advanced"] == 2 and len(r.receiver.events(path="/mail")) == 2


def test_events_made_by_hand_reach_the_receiver(rig):
    r = rig(sms_mix={"deliver": 1.0})
    [sms_id] = r.send(phones(1))
    [email_id] = r.admin.seed_email_status(1)
    r.settle()
    r.admin.trigger_sms_event(sms_id, "delivererror", status_code=580)
    r.admin.trigger_sms_event(sms_id, "reply", reply_content="退订")
    r.admin.trigger_mail_event(email_id, "click")
    r.admin.trigger_mail_event(email_id, "invalid", substat=404)
    stats = r.settle()
    [failed] = r.receiver.events("delivererror")
    assert (failed.fields["smsId"], failed.fields["statusCode"]) == (sms_id, "580")
    assert failed.fields["message"] == "SMS failure, phone powered off"
    [reply] = r.receiver.events("reply")
    assert reply.fields["replyContent"] == "退订"
    assert [e.fields["url"] for e in r.receiver.events("click", "/mail")] \
        == ["https://example.com/offer"] * (1 + stats["mail"]["clicks"])
    assert any(e.fields.get("substat") == "404" for e in r.receiver.events("invalid", "/mail"))
    assert stats["triggered"] == 4
    assert r.admin.sms_outcomes([sms_id]) == {sms_id: ("deliver", None)}  # the truth stays
    with pytest.raises(SimulatorAdminError, match="sms_id"):
        r.admin.trigger_sms_event("1_1_3_0_x$13900000000", "deliver")
    with pytest.raises(SimulatorAdminError, match="status_code"):
        r.admin.trigger_sms_event(sms_id, "workererror", status_code=500)
    with pytest.raises(SimulatorAdminError, match="email_id"):
        r.admin.trigger_mail_event("nope", "deliver")
    with pytest.raises(SimulatorAdminError, match="substat"):
        r.admin.trigger_mail_event(email_id, "soft_bounce", substat=401)


def test_settings_are_checked_and_never_show_the_app_keys(rig):
    r = rig()
    shown = r.admin.hook_settings()
    assert shown["sms_key_set"] and SMS_HOOK_KEY not in str(shown) + str(r.admin.state())
    with pytest.raises(SimulatorAdminError, match="sms_mix: the shares must add up to 1"):
        r.admin.configure_hooks(sms_mix={"deliver": 0.5})
    with pytest.raises(SimulatorAdminError, match="unknown hook settings: colour"):
        r.admin.configure_hooks(colour="red")
    with pytest.raises(SimulatorAdminError, match=r"reorder_ratio: must be within 0\.\.1"):
        r.admin.configure_hooks(reorder_ratio=2)
    with pytest.raises(ValueError, match="sms_key: the app key is required"):
        HookSettings(sms_url="http://127.0.0.1/x")
    assert r.admin.configure_hooks(max_delay=0.02)["max_delay"] == 0.02


def test_backoff_doubles_up_to_its_cap():
    settings = HookSettings(retry_base=0.5, retry_max=3.0)
    assert [backoff(settings, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_signature_is_hmac_sha256_of_timestamp_and_token():
    # The example values of webhooks.txt, recomputed with the standard library by hand.
    import hashlib
    import hmac

    token = "iSXtPWbCNO5qiBrLhTRX48dbRujd3t0lL8RLg7ocJbhiDh6WxJ"
    expected = hmac.new(b"k", f"1426571113188{token}".encode(), hashlib.sha256).hexdigest()
    assert sign("k", 1426571113188, token) == expected


def test_a_big_campaign_holds_only_a_window_of_posts_while_the_receiver_is_stuck():
    receiver = HookReceiver({"/sms": SMS_HOOK_KEY})
    receiver.gate = threading.Event()
    sim = Simulator(hooks=HookSettings(sms_url=receiver.url("/sms"), sms_key=SMS_HOOK_KEY,
                                       connections=2))
    sim.seed_template(1)
    try:
        for k in range(10):
            body = httpx.QueryParams(signed({"templateId": 1,
                                             "phone": ",".join(phones(2000, 2000 * k))}))
            reply = sim.serve(RawRequest("POST", "/smsapi/send", "", str(body).encode(),
                                         "application/x-www-form-urlencoded"))
            assert b'"statusCode": 200' in reply.body
        assert receiver.first_arrival.wait(30)
        while (stats := sim.hooks.stats())["sms"]["outcomes"]["deliver"] == 0 \
                or stats["pending"] != 20010:
            assert not sim.hooks.dispatcher.wait_idle(0.05)
        assert sum(stats["sms"]["outcomes"].values()) == 20000
        assert stats["window"] == WINDOW and receiver.posts <= 2  # full, and no further
    finally:
        sim.close()
        receiver.stop()


def test_cli_posts_signed_sms_hooks_with_the_key_from_the_environment():
    receiver = HookReceiver({"/sms": "env-app-key"})
    port = free_port()
    env = {**os.environ, "SENDCLOUD_SMS_HOOK_KEY": "env-app-key"}
    for name in ("SENDCLOUD_SMS_USER", "SENDCLOUD_SMS_KEY"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "sendcloud-jobs"), "simulator", "--port",
               str(port), "--template", "1:hi", "--sms-hook", receiver.url("/sms"),
               "--hook-mix", "deliver=0,workererror=1", "--hook-encoding", "json"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: queue.Queue[str] = queue.Queue()
    printed: list[str] = []

    def read_stdout() -> None:  # the one reader of stdout, to its end (the process exiting)
        assert process.stdout is not None
        for line in process.stdout:
            printed.append(line)
            lines.put(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert "listening" in lines.get(timeout=30)
        assert lines.get(timeout=30).strip() == f"posting SMSHook events to {receiver.url('/sms')}"
        params = {"smsUser": "sim_sms_user", "templateId": "1", "phone": "13900000001"}
        params["signature"] = signature(params)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/smsapi/send", data=params).json()["statusCode"] == 200
        with SimulatorAdmin(f"http://127.0.0.1:{port}") as admin:
            assert admin.wait_for_hooks(60)
            assert admin.hook_stats()["sms"]["outcomes"]["workererror"] == 1
        # Several sender connections post them: like SendCloud, no order between events.
        assert receiver.bad == [] and sorted(e.event for e in receiver.events()) \
            == ["request", "workererror"]
    finally:
        process.terminate()
        assert process.stderr is not None
        err = process.stderr.read()  # to its end: the process has exited
        process.wait(timeout=30)
        reader.join(timeout=30)
        receiver.stop()
    assert process.returncode == 0, err
    assert "env-app-key" not in "".join(printed) + err
