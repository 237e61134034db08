from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import simulator.core
from simulator import Simulator
from tests.test_simulator_support import SimClient, make_sim, signed

PHONE = "13800138000"


@pytest.fixture
def setup() -> tuple[Simulator, SimClient]:
    sim, client, _ = make_sim()
    sim.seed_template(1, "hello")
    return sim, client


def patch_simulator_sleep(
    monkeypatch: pytest.MonkeyPatch, sleep: Callable[[float], object]
) -> None:
    """The simulator's ``time.sleep`` only. Patching ``time.sleep`` itself would also catch
    every other thread of the test session (a Dramatiq consumer backing off after another
    test), and its sleeps would count as the simulator's."""
    own_time = SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                  if not name.startswith("_")})
    own_time.sleep = sleep
    monkeypatch.setattr(simulator.core, "time", own_time)


def send(client: SimClient, phone: str = PHONE, **params: Any) -> httpx.Response:
    return client.http.post("/smsapi/send",
                            data=signed({"templateId": 1, "phone": phone, **params}))


def test_server_error_is_statuscode_501_without_effect(setup):
    sim, client = setup
    sim.faults.set("/smsapi/send", server_error_rate=1.0)
    response = send(client)
    assert response.status_code == 200
    assert response.json() == {"result": False, "statusCode": 501, "message": "sever exception",
                               "info": {}}
    assert client.sms("sendCode", phone=PHONE, code="1234", signName="s")["statusCode"] == 200
    assert [e.kind for e in sim.ledger.entries()] == ["code"]


def test_throttle_replies_per_api_family(setup):
    sim, client = setup
    sim.faults.set(throttle_rate=1.0)
    assert send(client).json() == {"result": False, "statusCode": 50001,
                                   "message": "Frequency limited", "info": {}}
    assert client.api("addresslist/list") == {"result": False, "statuscode": 50000,
                                              "message": "interface frequency is limited",
                                              "info": {}}
    assert sim.ledger.entries() == []


def test_gateway_error_is_http_502_html(setup):
    sim, client = setup
    sim.faults.set(gateway_error_rate=1.0)
    response = send(client)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert sim.ledger.entries() == []


def test_reset_raises_a_network_error_before_any_effect(setup):
    sim, client = setup
    sim.faults.set("/smsapi/send", reset_rate=1.0)
    with pytest.raises(httpx.ReadError):
        send(client, sendRequestId="r-1")
    sim.faults.clear()
    assert send(client, sendRequestId="r-1").json()["statusCode"] == 200
    assert len(sim.ledger.entries()) == 1


@pytest.mark.parametrize("mode", ["error", "replay"])
def test_drop_after_accept_takes_effect_and_the_retry_is_a_duplicate(setup, mode):
    sim, client = setup
    sim.duplicate_mode = mode
    sim.faults.set("/smsapi/send", drop_after_accept_rate=1.0)
    with pytest.raises(httpx.ReadError):
        send(client, sendRequestId="r-2")
    [entry] = sim.ledger.entries()
    assert (entry.phone, entry.send_request_id) == (PHONE, "r-2")
    sim.faults.clear("/smsapi/send")
    retry = send(client, sendRequestId="r-2").json()
    if mode == "error":
        assert (retry["statusCode"], retry["message"]) == (400, "duplicate request")
    else:
        assert retry["statusCode"] == 200 and retry["info"]["smsIds"] == [entry.sms_id]
    assert len(sim.ledger.entries()) == 1


def test_an_endpoint_setting_replaces_the_wildcard(setup):
    sim, client = setup
    sim.faults.set("*", server_error_rate=1.0)
    sim.faults.set("/smsapi/sendCode")
    assert send(client).json()["statusCode"] == 501
    assert client.sms("sendCode", phone=PHONE, code="1234", signName="s")["statusCode"] == 200
    with pytest.raises(ValueError):
        sim.faults.set("smsapi/send", latency=1)
    with pytest.raises(ValueError):
        sim.faults.set(reset_rate=1.5)


def test_fault_dice_are_seeded(setup):
    def pattern(seed: int) -> list[int]:
        sim, client, _ = make_sim(seed=seed)
        sim.seed_template(1)
        sim.faults.set(server_error_rate=0.5)
        return [send(client).json()["statusCode"] for _ in range(40)]

    first = pattern(7)
    assert pattern(7) == first
    assert set(first) == {200, 501}
    assert pattern(8) != first


def test_latency_sleeps_outside_the_lock(setup, monkeypatch: pytest.MonkeyPatch):
    sim, client = setup
    sleeping = threading.Event()
    release = threading.Event()
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        sleeping.set()
        assert release.wait(10)

    patch_simulator_sleep(monkeypatch, fake_sleep)
    sim.faults.set("/smsapi/send", latency=2.5)
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(send(client).json()["statusCode"]))
    slow.start()
    assert sleeping.wait(10)
    # While the slow request sleeps, another endpoint is served.
    assert client.sms("sendVoice", phone=PHONE, code="1234")["statusCode"] == 200
    release.set()
    slow.join(10)
    assert results == [200] and slept == [2.5]
    assert [e.kind for e in sim.ledger.entries()] == ["voice", "sms"]


def test_admin_paths_are_never_faulted(setup):
    sim, client = setup
    sim.faults.set(reset_rate=1.0)
    assert client.http.get("/_sim/ledger").json() == {"entries": []}


def test_reset_restores_the_initial_state(setup):
    sim, client = setup
    sim.duplicate_mode = "replay"
    sim.clock_offset_ms = 5000
    sim.set_balance(3)
    sim.set_phone_limits(1, 1)
    sim.email_status_cache_seconds = 600
    assert send(client).json()["statusCode"] == 200
    sim.seed_email_status(2)
    client.api("addresslist/add", address="a@maillist.sendcloud.org", name="a")
    sim.faults.set(server_error_rate=1.0)
    sim.reset()
    assert sim.ledger.entries() == [] and sim.templates == {} and sim.address_lists == {}
    assert sim.email_records() == [] and sim.faults.configs() == {}
    assert (sim.duplicate_mode, sim.clock_offset_ms, sim.balance,
            sim.email_status_cache_seconds) == ("error", 0, None, 0.0)
    sim.seed_template(1)
    assert send(client).json()["statusCode"] == 200
    assert send(client).json()["statusCode"] == 200  # no phone limit any more


def test_concurrent_in_process_sends_are_counted_exactly(setup):
    sim, _ = setup

    def worker(n: int) -> list[int]:
        client = SimClient(sim)
        codes = []
        for i in range(25):
            phone = f"139{n:04d}{i:04d}"
            # Every request id is sent twice: the second must be refused.
            for _ in range(2):
                response = client.http.post("/smsapi/send", data=signed(
                    {"templateId": 1, "phone": phone, "sendRequestId": f"{n}-{i}"}))
                codes.append(response.json()["statusCode"])
        return codes

    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, worker(n)))
               for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(codes == [200, 400] * 25 for codes in results.values()) and len(results) == 16
    counts = sim.ledger.count_by_phone()
    assert len(counts) == 16 * 25 and set(counts.values()) == {1}
    assert [e.seq for e in sim.ledger.entries()] == list(range(1, 401))


def test_capacity_serves_that_many_at_once_and_queues_the_rest(setup, monkeypatch):
    sim, client = setup
    gate = threading.Event()
    patch_simulator_sleep(monkeypatch, lambda seconds: gate.wait(10))
    sim.faults.set("/smsapi/send", latency=1.0, capacity=2)
    codes: list[int] = []
    senders = [threading.Thread(target=lambda i=i: codes.append(
        send(client, phone=f"1380013{i:04d}").json()["statusCode"])) for i in range(5)]
    for sender in senders:
        sender.start()

    def settled(expected: tuple[int, int]) -> bool:
        for _ in range(500):
            if sim.faults.busy("/smsapi/send") == expected:
                return True
            threading.Event().wait(0.02)
        return False

    # Two are inside their latency, three wait for a slot; other endpoints are not limited.
    assert settled((2, 3)), sim.faults.busy("/smsapi/send")
    assert client.sms("sendVoice", phone=PHONE, code="1234")["statusCode"] == 200
    gate.set()
    for sender in senders:
        sender.join(10)
    assert codes == [200] * 5 and sim.faults.busy("/smsapi/send") == (0, 0)
    assert sim.faults.busy("/smsapi/sendVoice") == (0, 0)


def test_capacity_must_be_a_whole_number(setup):
    sim, client = setup
    for bad in (-1, 2.5, float("inf")):
        with pytest.raises(ValueError, match="capacity must be a whole number >= 0"):
            sim.faults.set("/smsapi/send", capacity=bad)
    response = client.http.post("/_sim/faults", json={"endpoint": "/smsapi/send",
                                                      "capacity": 1.5})
    assert response.status_code == 400 and "capacity" in response.json()["error"]
    endless = client.http.post("/_sim/faults", content=b'{"capacity": Infinity}',
                               headers={"content-type": "application/json"})
    assert endless.status_code == 400 and "capacity" in endless.json()["error"]
    assert client.http.post("/_sim/faults", json={"capacity": 3}).status_code == 200
    assert sim.faults.configs()["*"].capacity == 3
