"""A tiny webhook receiver for the simulator's hook tests: real HTTP, every signature checked.

Written from docs/sendcloud-api/webhooks.txt alone (not from the simulator's code): it accepts
form and JSON bodies, decodes the JSON-text list fields, and checks
signature = hex HMAC-SHA256(app key, timestamp + token) with the key of the path it was POSTed
to (``/sms`` or ``/mail``). ``status_for(n)`` decides the HTTP status of the n-th POST (1-based);
``gate`` holds every answer until it is set.

:func:`rigs` (the ``rig`` fixture) pairs one with a simulator served over HTTP and its admin
client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx

from simulator import Simulator
from simulator.admin import SimulatorAdmin
from simulator.server import SimulatorServer, serve_in_thread
from tests.test_simulator_support import signed

LIST_FIELDS = ("smsIds", "phones", "emailIds", "recipientArray")


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    fields: dict[str, Any]  # list fields decoded; scalars as sent (str in forms)
    raw: dict[str, Any]  # the body as parsed, list fields still JSON text

    @property
    def event(self) -> str:
        return str(self.fields["event"])

    @property
    def token(self) -> str:
        return str(self.fields["token"])

    @property
    def item(self) -> str:
        """What the event is about: an smsId, an emailId, or the request's first id."""
        for name in ("smsId", "emailId"):
            if name in self.fields:
                return str(self.fields[name])
        ids = self.fields.get("smsIds") or self.fields.get("emailIds") or [""]
        return str(ids[0])


class HookReceiver:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.status_for: Callable[[int], int] = lambda n: 200
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()
        self.posts = 0
        self.accepted: list[Received] = []  # answered 200, in the order answered
        self.refused: list[Received] = []
        self.bad: list[str] = []  # what failed verification, and why
        self.log: list[str] = []  # "arrived n", "answered n", in order
        self.first_arrival = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def events(self, name: str | None = None, path: str = "/sms") -> list[Received]:
        with self.lock:
            return [r for r in self.accepted
                    if r.path == path and (name is None or r.event == name)]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        content_type = handler.headers.get("Content-Type", "")
        with self.lock:
            self.posts += 1
            n = self.posts
            self.log.append(f"arrived {n}")
        self.first_arrival.set()
        received = self._parse(handler.path, content_type, body)
        if self.gate is not None:
            self.gate.wait(60)
        status = self.status_for(n)
        with self.lock:
            (self.accepted if status == 200 else self.refused).append(received)
            self.log.append(f"answered {n}")
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _parse(self, path: str, content_type: str, body: bytes) -> Received:
        if content_type.startswith("application/json"):
            raw: dict[str, Any] = json.loads(body)
        else:
            raw = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        fields = {k: json.loads(v) if k in LIST_FIELDS else v for k, v in raw.items()}
        key = self.keys[path]
        expected = hmac.new(key.encode(), f"{fields['timestamp']}{fields['token']}".encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(fields.get("signature", ""))):
            with self.lock:
                self.bad.append(f"signature of {fields.get('event')}")
        if len(str(fields["token"])) != 50:
            with self.lock:
                self.bad.append(f"token of {fields.get('event')}")
        return Received(path, content_type, fields, raw)


SMS_HOOK_KEY = "sms-app-key-for-tests"
MAIL_HOOK_KEY = "mail-app-key-for-tests"


@dataclass
class Rig:
    sim: Simulator
    server: SimulatorServer
    admin: SimulatorAdmin
    receiver: HookReceiver
    http: httpx.Client

    def send(self, phones: list[str]) -> list[str]:
        reply = self.http.post("/smsapi/send", data=signed(
            {"templateId": 1, "phone": ",".join(phones)})).json()
        assert reply["statusCode"] == 200, reply
        return list(reply["info"]["smsIds"])

    def hook_up(self, **settings: Any) -> None:
        self.admin.configure_hooks(sms_url=self.receiver.url("/sms"), sms_key=SMS_HOOK_KEY,
                                   mail_url=self.receiver.url("/mail"), mail_key=MAIL_HOOK_KEY,
                                   retry_base=0.01, retry_max=0.05, **settings)

    def restart(self, **settings: Any) -> None:
        """The simulator back to its start, the same hook settings, an empty receiver."""
        self.admin.reset()
        self.admin.seed_template(1, "hello")
        self.hook_up(**settings)
        with self.receiver.lock:
            self.receiver.accepted.clear()

    def stop(self) -> None:
        self.http.close()
        self.admin.close()
        self.server.stop()
        self.sim.close()
        self.receiver.stop()

    def settle(self) -> dict[str, Any]:
        assert self.admin.wait_for_hooks(120)
        stats = self.admin.hook_stats()
        assert stats["pending"] == 0
        assert self.receiver.bad == []
        return stats


@contextmanager
def rigs() -> Iterator[Callable[..., Rig]]:
    """``make(**hook settings)``: a served simulator hooked to a fresh receiver; all stopped
    at the end."""
    made: list[Rig] = []

    def make(**settings: Any) -> Rig:
        receiver = HookReceiver({"/sms": SMS_HOOK_KEY, "/mail": MAIL_HOOK_KEY})
        sim = Simulator()
        sim.seed_template(1, "hello")
        server = serve_in_thread(sim)
        admin = SimulatorAdmin(server.url)
        made.append(Rig(sim, server, admin, receiver, httpx.Client(base_url=server.url,
                                                                   timeout=30)))
        made[-1].hook_up(**settings)
        return made[-1]

    try:
        yield make
    finally:
        for made_rig in made:
            made_rig.stop()


def phones(n: int, start: int = 0) -> list[str]:
    return [f"139{start + i:08d}" for i in range(n)]
