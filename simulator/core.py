"""The simulator: SendCloud's endpoints, state and faults behind one request handler.

``Simulator.serve`` takes a transport-neutral request and returns a reply; ``handle`` adapts
it to httpx (for ``httpx.MockTransport``) and :mod:`simulator.server` to real HTTP. One lock
guards all state; injected latency sleeps outside it, so a slow reply never blocks others.

apiv2 endpoints check ``apiUser``/``apiKey`` first (40005 "认证失败" for a missing or wrong
pair). ``/_sim/...`` paths are the JSON admin API (see :mod:`simulator.admin`); they are
never subject to faults.

``hooks`` (:class:`simulator.hook_events.HookSettings`) makes it POST SendCloud's SMSHook and
mail WebHook events to a receiver (see :mod:`simulator.hooks`); ``close()`` stops the threads
that post them.
"""

from __future__ import annotations

import dataclasses
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from simulator.addresslist import AddressBook, AddressListView
from simulator.admin import serve_admin
from simulator.email_status import EmailRecord, EmailStatusStore
from simulator.faults import FaultDecision, Faults
from simulator.hook_events import HookSettings
from simulator.hooks import Hooks
from simulator.ledger import Ledger
from simulator.protocol import (
    ApiError,
    BadRequestBody,
    Params,
    RawReply,
    RawRequest,
    envelope,
    http_error,
    json_reply,
    parse_params,
)
from simulator.sms import DUPLICATE_MODES, SmsApi, Template

Handler = Callable[[Params], dict[str, Any]]

SMS_THROTTLED = {"result": False, "statusCode": 50001, "message": "Frequency limited", "info": {}}
API_THROTTLED = {"result": False, "statuscode": 50000, "message": "interface frequency is limited",
                 "info": {}}
BAD_GATEWAY = (b"<html><head><title>502 Bad Gateway</title></head>"
               b"<body><center><h1>502 Bad Gateway</h1></center></body></html>")
GET_POST = frozenset({"GET", "POST"})

#: The public demo credentials a simulator accepts by default, by the variable that sets them.
DEMO_CREDENTIALS = {
    "SENDCLOUD_SMS_USER": "sim_sms_user",
    "SENDCLOUD_SMS_KEY": "sim-sms-key-0000",
    "SENDCLOUD_API_USER": "sim_api_user",
    "SENDCLOUD_API_KEY": "sim-api-key-0000",
}


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    handler: Handler
    family: str  # "sms" | "api"


class Simulator:
    def __init__(
        self,
        sms_user: str = DEMO_CREDENTIALS["SENDCLOUD_SMS_USER"],
        sms_key: str = DEMO_CREDENTIALS["SENDCLOUD_SMS_KEY"],
        api_user: str = DEMO_CREDENTIALS["SENDCLOUD_API_USER"],
        api_key: str = DEMO_CREDENTIALS["SENDCLOUD_API_KEY"],
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        *,
        duplicate_mode: str = "error",
        email_status_cache_seconds: float = 0.0,
        hooks: HookSettings | None = None,
    ) -> None:
        self.sms_user = sms_user
        self.api_user = api_user
        self._api_key = api_key
        self.clock = clock
        self._lock = threading.RLock()
        self._initial = (duplicate_mode, email_status_cache_seconds)
        self.ledger = Ledger()
        self.faults = Faults(seed)
        self.sms = SmsApi(sms_user=sms_user, sms_key=sms_key, clock=clock, ledger=self.ledger,
                          seed=seed)
        self.address_book = AddressBook(clock)
        self.email_status = EmailStatusStore(api_user=api_user, clock=clock, seed=seed)
        self.duplicate_mode = duplicate_mode
        self.email_status_cache_seconds = email_status_cache_seconds
        self.hooks = Hooks(settings=hooks or HookSettings(), ledger=self.ledger,
                           emails=self.email_status, sms_user=sms_user, api_user=api_user,
                           clock_ms=self.sms.server_ms)
        self._routes = self._build_routes()

    def _build_routes(self) -> dict[str, Route]:
        sms, book = self.sms, self.address_book

        def api(method: Callable[[Params, str], dict[str, Any]]) -> Handler:
            return lambda params: envelope(200, method(params, self._api_user_of(params)))

        routes = {
            "/smsapi/send": Route(frozenset({"POST"}), sms.send, "sms"),
            "/smsapi/sendCode": Route(frozenset({"POST"}), sms.send_code, "sms"),
            "/smsapi/sendVoice": Route(frozenset({"POST"}), sms.send_voice, "sms"),
            "/smsapi/timestamp/get": Route(frozenset({"GET"}), sms.timestamp, "sms"),
            "/apiv2/data/emailStatus": Route(
                GET_POST,
                lambda params: self.email_status.query(params, self._api_user_of(params)),
                "api",
            ),
        }
        for action, method in (("list", book.list_lists), ("add", book.add_list),
                               ("delete", book.delete_list), ("update", book.update_list)):
            routes[f"/apiv2/addresslist/{action}"] = Route(GET_POST, api(method), "api")
        for action, method in (("list", book.list_members), ("get", book.get_members),
                               ("add", book.add_members), ("update", book.update_members),
                               ("delete", book.delete_members)):
            routes[f"/apiv2/addressmember/{action}"] = Route(GET_POST, api(method), "api")
        return routes

    def _api_user_of(self, params: Params) -> str:
        user = params.get("apiUser", "").strip()
        key = params.get("apiKey", "")
        if not (hmac.compare_digest(user.encode(), self.api_user.encode())
                and hmac.compare_digest(key.encode(), self._api_key.encode())):
            raise ApiError(40005)
        return user

    # -- serving ---------------------------------------------------------------------------

    @property
    def paths(self) -> list[str]:
        return sorted(self._routes)

    def serve(self, request: RawRequest) -> RawReply:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/_sim/"):
            return serve_admin(self, path, request)
        route = self._routes.get(path)
        if route is None:
            return http_error(404, "not found")
        if request.method not in route.methods:
            return http_error(405, "method not allowed")
        decision = self.faults.decide(path)
        with decision.served():
            return self._serve_route(route, request, decision)

    def _serve_route(self, route: Route, request: RawRequest, decision: FaultDecision) -> RawReply:
        if decision.latency:
            time.sleep(decision.latency)
        if decision.reset:
            return RawReply(0, b"", network_failure="reset")
        if decision.gateway_error:
            return RawReply(502, BAD_GATEWAY, "text/html")
        if decision.server_error:
            return json_reply(envelope(501))
        if decision.throttle:
            return json_reply(SMS_THROTTLED if route.family == "sms" else API_THROTTLED)
        try:
            params = parse_params(request)
        except BadRequestBody:
            return http_error(400, "the body must be a UTF-8 form")
        with self._lock:
            try:
                payload = route.handler(params)
            except ApiError as exc:
                payload = envelope(exc.code, exc.info, exc.message)
        reply = json_reply(payload)
        if decision.drop_after_accept:
            return dataclasses.replace(reply, network_failure="drop")
        return reply

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = RawRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query.decode("ascii", "replace"),
            body=request.read(),
            content_type=request.headers.get("content-type", ""),
        )
        reply = self.serve(raw)
        if reply.network_failure == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if reply.network_failure == "drop":
            raise httpx.ReadError("server closed the connection without a reply",
                                  request=request)
        return httpx.Response(reply.status, content=reply.body,
                              headers={"content-type": reply.content_type}, request=request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- configuration and state for tests -------------------------------------------------

    @property
    def duplicate_mode(self) -> str:
        return self.sms.duplicate_mode

    @duplicate_mode.setter
    def duplicate_mode(self, mode: str) -> None:
        if mode not in DUPLICATE_MODES:
            raise ValueError(f"duplicate_mode must be one of {', '.join(DUPLICATE_MODES)}")
        self.sms.duplicate_mode = mode

    @property
    def clock_offset_ms(self) -> int:
        return self.sms.clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, offset: int) -> None:
        self.sms.clock_offset_ms = int(offset)

    @property
    def email_status_cache_seconds(self) -> float:
        return self.email_status.cache_seconds

    @email_status_cache_seconds.setter
    def email_status_cache_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("email_status_cache_seconds must be >= 0")
        self.email_status.cache_seconds = float(seconds)

    @property
    def balance(self) -> int | None:
        return self.sms.balance

    def set_balance(self, n: int | None) -> None:
        """Messages left (each accepted message costs 1); None means unlimited."""
        if n is not None and n < 0:
            raise ValueError("balance must be >= 0 or None")
        with self._lock:
            self.sms.balance = n

    def set_phone_limits(self, per_minute: int | None, per_day: int | None) -> None:
        for name, value in (("per_minute", per_minute), ("per_day", per_day)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")
        with self._lock:
            self.sms.per_minute, self.sms.per_day = per_minute, per_day

    def seed_template(self, template_id: int, text: str = "SendCloud simulator template",
                      *, msg_type: int = 0, approved: bool = True) -> Template:
        if msg_type not in (0, 1):
            raise ValueError("msg_type must be 0 (SMS) or 1 (MMS)")
        template = Template(int(template_id), text, msg_type, approved)
        with self._lock:
            self.sms.templates[template.template_id] = template
        return template

    @property
    def templates(self) -> dict[int, Template]:
        with self._lock:
            return dict(self.sms.templates)

    def seed_email_status(self, count: int, *, start: datetime | None = None, status: int = 18,
                          api_user: str | None = None, spacing_seconds: float = 1.0,
                          recipients: Sequence[str] | None = None) -> list[str]:
        """Add ``count`` sent emails, ``spacing_seconds`` apart from ``start`` (a naive datetime
        is Asia/Shanghai time; by default they end now, not before today's midnight)."""
        with self._lock:
            ids = self.email_status.seed(count, start=start, status=status, api_user=api_user,
                                         spacing_seconds=spacing_seconds, recipients=recipients)
            if status == 18:
                self.hooks.emails_sent(ids)
            return ids

    def advance_email_status(self, email_ids: Sequence[str] | None = None, *,
                             count: int | None = None, status: int = 1,
                             sub_status: int | None = None) -> list[str]:
        """Move emails to ``status`` (modifiedTime now): the given ids, else those still
        requesting (18) oldest first, at most ``count``. Returns the ids moved."""
        with self._lock:
            ids = self.email_status.advance(email_ids, count=count, status=status,
                                            sub_status=sub_status)
            self.hooks.emails_advanced(ids)
            return ids

    def email_records(self) -> list[EmailRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self.email_status.records()]

    def seed_address_list(self, address: str, name: str = "Simulator list", *,
                          api_user: str | None = None) -> None:
        """Create an address list owned by ``api_user`` (default: this simulator's apiUser),
        through the same validation as ``addresslist/add``."""
        with self._lock:
            self.address_book.add_list({"address": address, "name": name},
                                       api_user or self.api_user)

    @property
    def address_lists(self) -> dict[str, AddressListView]:
        """A snapshot of every address list and its members, by alias."""
        with self._lock:
            return self.address_book.snapshot()

    def reset(self) -> None:
        """Back to the state just after construction: no data, no faults, dice re-seeded."""
        with self._lock:
            self.ledger.clear()
            self.faults.reset()
            self.sms.reset()
            self.address_book.reset()
            self.email_status.reset()
            self.hooks.reset()
            self.duplicate_mode, self.email_status_cache_seconds = self._initial

    def configure_hooks(self, **changes: Any) -> HookSettings:
        """Change hook settings (any field of HookSettings) while running."""
        with self._lock:
            return self.hooks.configure(changes)

    def close(self) -> None:
        """Stop posting hook events (pending ones are forgotten)."""
        self.hooks.close()
