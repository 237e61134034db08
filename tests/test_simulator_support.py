"""Helpers shared by the simulator tests: a settable clock, request signing, a client.

Signing is written here again, on purpose independent of both worker.sendcloud.signing and the
simulator, so the tests check the simulator against the documented algorithm.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import httpx

from simulator import Simulator
from simulator.protocol import SHANGHAI

SMS_USER = "sim_sms_user"
SMS_KEY = "sim-sms-key-0000"
API_USER = "sim_api_user"
API_KEY = "sim-api-key-0000"
BASE_URL = "https://api.sendcloud.net"
#: 2024-05-01 10:00:00 in Shanghai.
START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=SHANGHAI).timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def signature(params: dict[str, str], key: str = SMS_KEY, method: str = "md5") -> str:
    body = "&".join(f"{k}={params[k]}" for k in sorted(params))
    text = f"{key}&{body}&{key}".encode()
    return (hashlib.md5(text) if method == "md5" else hashlib.sha256(text)).hexdigest()


def signed(params: dict[str, Any], *, user: str = SMS_USER, key: str = SMS_KEY,
           method: str = "md5") -> dict[str, str]:
    values = {"smsUser": user, **{k: str(v) for k, v in params.items()}}
    return {**values, "signature": signature(values, key, method)}


class SimClient:
    """A plain httpx client on the simulator's in-process transport."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.http = httpx.Client(transport=sim.transport(), base_url=BASE_URL)

    def sms(self, action: str, **params: Any) -> dict[str, Any]:
        return self.post_form(f"/smsapi/{action}", signed(params))

    def post_form(self, path: str, data: dict[str, str]) -> dict[str, Any]:
        response = self.http.post(path, data=data)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def api(self, path: str, *, method: str = "POST", **params: Any) -> dict[str, Any]:
        data = {"apiUser": API_USER, "apiKey": API_KEY, **{k: str(v) for k, v in params.items()}}
        if method == "GET":
            response = self.http.get(f"/apiv2/{path}", params=data)
        else:
            response = self.http.post(f"/apiv2/{path}", data=data)
        assert response.status_code == 200, response.text
        return dict(response.json())


def make_sim(clock: Clock | None = None, **kwargs: Any) -> tuple[Simulator, SimClient, Clock]:
    clock = clock or Clock()
    sim = Simulator(clock=clock, **kwargs)
    return sim, SimClient(sim), clock
