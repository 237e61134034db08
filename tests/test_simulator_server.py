from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from simulator import Simulator
from simulator.admin import SimulatorAdmin, SimulatorAdminError
from simulator.server import SimulatorServer, serve_in_thread
from tests.test_simulator_support import API_KEY, API_USER, SMS_KEY, signature, signed

PHONE = "13800138000"


@pytest.fixture
def served() -> Iterator[tuple[Simulator, SimulatorServer]]:
    sim = Simulator()
    sim.seed_template(1, "hello %name%")
    server = serve_in_thread(sim)
    yield sim, server
    server.stop()


@pytest.fixture
def http(served: tuple[Simulator, SimulatorServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1].url, timeout=10) as client:
        yield client


def test_wrong_signature_is_422_and_md5_is_accepted_over_http(served, http):
    sim, server = served
    assert server.url == f"http://127.0.0.1:{server.port}"
    bad = signed({"templateId": 1, "phone": PHONE}, key="wrong-key")
    reply = http.post("/smsapi/send", data=bad)
    assert reply.status_code == 200
    assert reply.json() == {"result": False, "statusCode": 422, "message": "incorrect signature",
                            "info": {}}
    good = signed({"templateId": 1, "phone": PHONE, "vars": json.dumps({"name": "小明"})})
    assert len(good["signature"]) == 32
    reply = http.post("/smsapi/send", data=good)
    assert reply.json()["statusCode"] == 200
    assert reply.headers["content-type"] == "application/json;charset=UTF-8"
    [entry] = sim.ledger.entries()
    assert (entry.phone, entry.text) == (PHONE, "hello 小明")


def test_get_query_strings_and_timestamp_over_http(served, http):
    sim, _ = served
    sim.seed_email_status(2)
    reply = http.get("/apiv2/data/emailStatus",
                     params={"apiUser": API_USER, "apiKey": API_KEY, "days": 1})
    assert reply.json()["info"]["total"] == "2"
    stamp = http.get("/smsapi/timestamp/get").json()["info"]["timestamp"]
    assert isinstance(stamp, int)
    assert http.get("/nowhere").status_code == 404


def test_drop_after_accept_over_http_is_a_network_error_with_a_ledger_entry(served, http):
    sim, _ = served
    sim.faults.set("/smsapi/send", drop_after_accept_rate=1.0)
    with pytest.raises(httpx.TransportError):
        http.post("/smsapi/send", data=signed({"templateId": 1, "phone": PHONE,
                                                "sendRequestId": "x-1"}))
    assert [e.send_request_id for e in sim.ledger.entries()] == ["x-1"]
    sim.faults.clear()
    # The same client recovers on a fresh connection; the retry is recognised.
    retry = http.post("/smsapi/send", data=signed({"templateId": 1, "phone": PHONE,
                                                    "sendRequestId": "x-1"}))
    assert retry.json()["statusCode"] == 400
    assert len(sim.ledger.entries()) == 1


def test_reset_over_http_has_no_effect(served, http):
    sim, _ = served
    sim.faults.set(reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        http.post("/smsapi/send", data=signed({"templateId": 1, "phone": PHONE}))
    assert sim.ledger.entries() == []


def test_sixteen_concurrent_clients(served):
    sim, server = served

    def client_run(n: int) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return [
                client.post("/smsapi/send", data=signed(
                    {"templateId": 1, "phone": f"137{n:04d}{i:04d}", "sendRequestId": f"{n}"
                     if i == 0 else f"{n}-{i}"})).json()["statusCode"]
                for i in range(15)
            ] + [client.post("/smsapi/send", data=signed(
                {"templateId": 1, "phone": PHONE, "sendRequestId": f"{n}"})).json()["statusCode"]]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client_run, range(16)))
    assert results == [[200] * 15 + [400]] * 16
    assert len(sim.ledger.entries()) == 16 * 15
    assert PHONE not in sim.ledger.count_by_phone()


def test_admin_client_round_trips(served, http):
    sim, server = served
    with SimulatorAdmin(server.url) as admin:
        admin.seed_template(9, "code %c%", msg_type=0)
        assert sim.templates[9].text == "code %c%"
        http.post("/smsapi/send", data=signed({"templateId": 9, "phone": PHONE,
                                                "vars": '{"c": "42"}'}))
        http.post("/smsapi/send", data=signed({"templateId": 9, "phone": "13900139000"}))
        assert admin.ledger() == sim.ledger.entries()
        assert [e.seq for e in admin.ledger(since=1)] == [2]
        assert admin.count_by_phone() == {PHONE: 1, "13900139000": 1}

        admin.set_faults("/smsapi/send", server_error_rate=1.0, latency=0.0)
        assert sim.faults.configs()["/smsapi/send"].server_error_rate == 1.0
        assert admin.state()["faults"]["/smsapi/send"]["server_error_rate"] == 1.0
        admin.clear_faults()
        assert sim.faults.configs() == {}

        admin.set_balance(5)
        assert sim.balance == 5
        admin.set_balance(None)
        assert sim.balance is None
        admin.set_phone_limits(3, 10)
        assert (sim.sms.per_minute, sim.sms.per_day) == (3, 10)
        admin.configure(duplicate_mode="replay", clock_offset_ms=-2000,
                        email_status_cache_seconds=600)
        assert (sim.duplicate_mode, sim.clock_offset_ms, sim.email_status_cache_seconds) == (
            "replay", -2000, 600.0)

        ids = admin.seed_email_status(3, start=datetime(2024, 5, 1, 9, 0), status=18,
                                      spacing_seconds=2)
        assert [r.email_id for r in sim.email_records()] == ids
        assert sim.email_records()[1].request_time - sim.email_records()[0].request_time == 2
        assert admin.advance_email_status(count=2, status=5, sub_status=503) == ids[:2]
        assert [r["status"] for r in admin.email_records()] == ["软退信", "软退信", "请求中"]

        http.post("/apiv2/addresslist/add", data={"apiUser": API_USER, "apiKey": API_KEY,
                                                   "address": "a@maillist.sendcloud.org",
                                                   "name": "a"})
        assert admin.address_lists() == {"a@maillist.sendcloud.org": {
            "name": "a", "description": "", "members": []}}

        with pytest.raises(SimulatorAdminError, match="duplicate_mode"):
            admin.configure(duplicate_mode="sometimes")
        with pytest.raises(SimulatorAdminError, match="unknown fault"):
            admin.set_faults(explode_rate=1.0)
        admin.reset()
        assert sim.ledger.entries() == [] and sim.templates == {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_until_terminated():
    port = _free_port()
    env = {**os.environ, "SENDCLOUD_SMS_USER": "cli_user", "SENDCLOUD_SMS_KEY": "cli-secret-key"}
    env.pop("SENDCLOUD_API_USER", None)
    env.pop("SENDCLOUD_API_KEY", None)
    command = [str(Path(sys.executable).parent / "sendcloud-jobs"), "simulator",
               "--port", str(port), "--template", "4:hi", "--duplicate-mode", "replay"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=lambda: lines.put(process.stdout.readline()),  # type: ignore[union-attr]
                         daemon=True).start()
        banner = lines.get(timeout=30)
        assert f"http://127.0.0.1:{port}" in banner and "smsUser=cli_user" in banner
        assert "apiUser=sim_api_user" in banner
        assert "cli-secret-key" not in banner and "sim-api-key-0000" not in banner
        params = {"smsUser": "cli_user", "templateId": "4", "phone": PHONE, "sendRequestId": "c"}
        params["signature"] = signature(params, key="cli-secret-key")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            first = client.post("/smsapi/send", data=params).json()
            assert first["statusCode"] == 200
            assert client.post("/smsapi/send", data=params).json() == first
            assert client.post("/apiv2/addresslist/list", data={
                "apiUser": API_USER, "apiKey": API_KEY}).json()["statusCode"] == 200
            with SimulatorAdmin(f"http://127.0.0.1:{port}") as admin:
                assert len(admin.ledger()) == 1
            wrong = {**params, "signature": signature(params, key=SMS_KEY)}
            assert client.post("/smsapi/send", data=wrong).json()["statusCode"] == 422
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "cli-secret-key" not in out + err
