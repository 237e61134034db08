"""The JSON admin API under ``/_sim/`` and :class:`SimulatorAdmin`, its HTTP client.

Tests and benchmarks drive a simulator running in another process through it. Endpoints
(request and reply bodies are JSON objects; a bad argument answers HTTP 400
``{"error": "..."}``):

==================================  ==========================================================
GET  /_sim/ledger[?since=SEQ]       ``{"entries": [LedgerEntry as JSON, ...]}`` (seq > SEQ)
GET  /_sim/count_by_phone           ``{"counts": {phone: n}}``
GET  /_sim/state                    balance, limits, modes, faults, templates
GET  /_sim/address_lists            ``{"lists": {alias: {name, description, members: [...]}}}``
GET  /_sim/email_status             ``{"records": [record as in emailStatus voList, ...]}``
POST /_sim/faults                   ``{"endpoint": "*", "latency": 0.5, ...}`` (Faults.set)
POST /_sim/faults/clear             ``{}`` or ``{"endpoint": path}``
POST /_sim/templates                ``{"template_id", "text", "msg_type", "approved"}``
POST /_sim/email_status/seed        seed_email_status kwargs, ``start`` as ISO 8601 text;
                                    replies ``{"emailIds": [...]}``
POST /_sim/email_status/advance     advance_email_status kwargs; ``{"emailIds": [...]}``
POST /_sim/balance                  ``{"balance": n | null}``
POST /_sim/phone_limits             ``{"per_minute": n | null, "per_day": n | null}``
POST /_sim/config                   any of duplicate_mode, clock_offset_ms,
                                    email_status_cache_seconds
POST /_sim/reset                    ``{}``
==================================  ==========================================================

The hook endpoints (settings, stats, waiting, per-smsId outcomes, events made by hand) are
listed in :mod:`simulator.admin_hooks`.

The admin API has no authentication: the simulator is a local test tool and listens on
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx

from simulator.addresslist import AddressListView
from simulator.admin_hooks import ROUTES as HOOK_ROUTES
from simulator.admin_hooks import HookAdminMixin
from simulator.email_status import EmailRecord
from simulator.faults import Faults, config_from_json
from simulator.hooks import Hooks
from simulator.ledger import Ledger, LedgerEntry
from simulator.protocol import RawReply, RawRequest
from simulator.sms import SmsApi, Template

Json = dict[str, Any]


class Simulator(Protocol):
    """What the admin API reads and changes of a :class:`simulator.core.Simulator`.

    Spelled out here so that the admin layer depends on the simulator's surface and
    ``simulator.core`` can route ``/_sim/`` to it without an import circle.
    """

    ledger: Ledger
    faults: Faults
    sms: SmsApi
    hooks: Hooks
    duplicate_mode: str
    clock_offset_ms: int
    email_status_cache_seconds: float

    @property
    def balance(self) -> int | None: ...
    @property
    def templates(self) -> dict[int, Template]: ...
    @property
    def address_lists(self) -> dict[str, AddressListView]: ...
    def set_balance(self, n: int | None) -> None: ...
    def set_phone_limits(self, per_minute: int | None, per_day: int | None) -> None: ...
    def seed_template(self, template_id: int, text: str = ..., *, msg_type: int = ...,
                      approved: bool = ...) -> Template: ...
    def seed_email_status(self, count: int, *, start: datetime | None = ..., status: int = ...,
                          api_user: str | None = ..., spacing_seconds: float = ...,
                          recipients: Sequence[str] | None = ...) -> list[str]: ...
    def advance_email_status(self, email_ids: Sequence[str] | None = ..., *,
                             count: int | None = ..., status: int = ...,
                             sub_status: int | None = ...) -> list[str]: ...
    def email_records(self) -> list[EmailRecord]: ...
    def configure_hooks(self, **changes: Any) -> Any: ...
    def reset(self) -> None: ...


def serve_admin(sim: Simulator, path: str, request: RawRequest) -> RawReply:
    route = _ROUTES.get((request.method, path))
    if route is None:
        return _json({"error": f"no admin endpoint {request.method} {path}"}, 404)
    try:
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        # GET endpoints take their arguments from the query string.
        body.update(parse_qsl(request.query))
        return _json(route(sim, body), 200)
    except (ValueError, KeyError, TypeError) as exc:
        return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)


def _json(payload: Json, status: int) -> RawReply:
    return RawReply(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                    "application/json")


OK: Json = {"ok": True}


def _ledger(sim: Simulator, body: Json) -> Json:
    since = int(body.get("since", 0))
    return {"entries": [e.to_json() for e in sim.ledger.entries(since)]}


def _count_by_phone(sim: Simulator, _: Json) -> Json:
    return {"counts": sim.ledger.count_by_phone()}


def _email_records(sim: Simulator, _: Json) -> Json:
    return {"records": [record.to_json() for record in sim.email_records()]}


def _clear_faults(sim: Simulator, body: Json) -> Json:
    sim.faults.clear(body.get("endpoint"))
    return OK


def _seed_template(sim: Simulator, body: Json) -> Json:
    sim.seed_template(int(body["template_id"]),
                      str(body.get("text", "SendCloud simulator template")),
                      msg_type=int(body.get("msg_type", 0)),
                      approved=bool(body.get("approved", True)))
    return OK


def _advance_email_status(sim: Simulator, body: Json) -> Json:
    ids = sim.advance_email_status(body.get("email_ids"), count=body.get("count"),
                                   status=int(body.get("status", 1)),
                                   sub_status=body.get("sub_status"))
    return {"emailIds": ids}


def _set_balance(sim: Simulator, body: Json) -> Json:
    sim.set_balance(body.get("balance"))
    return OK


def _set_phone_limits(sim: Simulator, body: Json) -> Json:
    sim.set_phone_limits(body.get("per_minute"), body.get("per_day"))
    return OK


def _reset(sim: Simulator, _: Json) -> Json:
    sim.reset()
    return OK


def _state(sim: Simulator, _: Json) -> Json:
    return {
        "balance": sim.balance,
        "per_minute": sim.sms.per_minute,
        "per_day": sim.sms.per_day,
        "duplicate_mode": sim.duplicate_mode,
        "clock_offset_ms": sim.clock_offset_ms,
        "email_status_cache_seconds": sim.email_status_cache_seconds,
        "faults": {path: config.to_json() for path, config in sim.faults.configs().items()},
        "hooks": sim.hooks.settings.to_json(),
        "templates": [
            {"template_id": t.template_id, "text": t.text, "msg_type": t.msg_type,
             "approved": t.approved}
            for t in sim.templates.values()
        ],
    }


def _address_lists(sim: Simulator, _: Json) -> Json:
    return {"lists": {
        alias: {"name": view.name, "description": view.description,
                "members": [{"member": m.member, "name": m.name, "vars": m.vars}
                            for m in view.members]}
        for alias, view in sim.address_lists.items()
    }}


def _set_faults(sim: Simulator, body: Json) -> Json:
    sim.faults.set(str(body.get("endpoint", "*")), **config_from_json(body))
    return OK


def _seed_email_status(sim: Simulator, body: Json) -> Json:
    start = body.get("start")
    ids = sim.seed_email_status(
        int(body["count"]),
        start=None if start is None else datetime.fromisoformat(start),
        status=int(body.get("status", 18)),
        api_user=body.get("api_user"),
        spacing_seconds=float(body.get("spacing_seconds", 1.0)),
        recipients=body.get("recipients"),
    )
    return {"emailIds": ids}


def _configure(sim: Simulator, body: Json) -> Json:
    unknown = set(body) - {"duplicate_mode", "clock_offset_ms", "email_status_cache_seconds"}
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    if "duplicate_mode" in body:
        sim.duplicate_mode = str(body["duplicate_mode"])
    if "clock_offset_ms" in body:
        sim.clock_offset_ms = int(body["clock_offset_ms"])
    if "email_status_cache_seconds" in body:
        sim.email_status_cache_seconds = float(body["email_status_cache_seconds"])
    return OK


_ROUTES: dict[tuple[str, str], Callable[[Simulator, Json], Json]] = {
    ("GET", "/_sim/ledger"): _ledger,
    ("GET", "/_sim/count_by_phone"): _count_by_phone,
    ("GET", "/_sim/state"): _state,
    ("GET", "/_sim/address_lists"): _address_lists,
    ("GET", "/_sim/email_status"): _email_records,
    ("POST", "/_sim/faults"): _set_faults,
    ("POST", "/_sim/faults/clear"): _clear_faults,
    ("POST", "/_sim/templates"): _seed_template,
    ("POST", "/_sim/email_status/seed"): _seed_email_status,
    ("POST", "/_sim/email_status/advance"): _advance_email_status,
    ("POST", "/_sim/balance"): _set_balance,
    ("POST", "/_sim/phone_limits"): _set_phone_limits,
    ("POST", "/_sim/config"): _configure,
    ("POST", "/_sim/reset"): _reset,
    **HOOK_ROUTES,
}


class SimulatorAdminError(RuntimeError):
    pass


class SimulatorAdmin(HookAdminMixin):
    """Drives a simulator in another process; methods mirror :class:`Simulator`'s."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorAdmin:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Json | None = None,
              params: dict[str, str] | None = None, timeout: float | None = None) -> Json:
        response = self._http.request(
            method, f"/_sim/{path}", json=body, params=params,
            timeout=self._http.timeout if timeout is None else httpx.Timeout(timeout),
        )
        data = response.json()
        if response.status_code != 200:
            raise SimulatorAdminError(data.get("error", f"HTTP {response.status_code}"))
        return dict(data)

    def ledger(self, since: int = 0) -> list[LedgerEntry]:
        """Every entry, or those after sequence number ``since``."""
        entries = self._call("GET", "ledger", params={"since": str(since)})["entries"]
        return [LedgerEntry.from_json(e) for e in entries]

    def count_by_phone(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._call("GET", "count_by_phone")["counts"].items()}

    def state(self) -> Json:
        return self._call("GET", "state")

    def address_lists(self) -> Json:
        return dict(self._call("GET", "address_lists")["lists"])

    def email_records(self) -> list[Json]:
        return list(self._call("GET", "email_status")["records"])

    def set_faults(self, endpoint: str = "*", **settings: float) -> None:
        self._call("POST", "faults", {"endpoint": endpoint, **settings})

    def clear_faults(self, endpoint: str | None = None) -> None:
        self._call("POST", "faults/clear", {} if endpoint is None else {"endpoint": endpoint})

    def seed_template(self, template_id: int, text: str = "SendCloud simulator template", *,
                      msg_type: int = 0, approved: bool = True) -> None:
        self._call("POST", "templates", {"template_id": template_id, "text": text,
                                         "msg_type": msg_type, "approved": approved})

    def seed_email_status(self, count: int, *, start: datetime | None = None, status: int = 18,
                          api_user: str | None = None, spacing_seconds: float = 1.0,
                          recipients: Sequence[str] | None = None) -> list[str]:
        body = {"count": count, "start": None if start is None else start.isoformat(),
                "status": status, "api_user": api_user, "spacing_seconds": spacing_seconds,
                "recipients": None if recipients is None else list(recipients)}
        return list(self._call("POST", "email_status/seed", body)["emailIds"])

    def advance_email_status(self, email_ids: Sequence[str] | None = None, *,
                             count: int | None = None, status: int = 1,
                             sub_status: int | None = None) -> list[str]:
        body = {"email_ids": None if email_ids is None else list(email_ids), "count": count,
                "status": status, "sub_status": sub_status}
        return list(self._call("POST", "email_status/advance", body)["emailIds"])

    def set_balance(self, n: int | None = None) -> None:
        self._call("POST", "balance", {"balance": n})

    def set_phone_limits(self, per_minute: int | None, per_day: int | None) -> None:
        self._call("POST", "phone_limits", {"per_minute": per_minute, "per_day": per_day})

    def configure(self, *, duplicate_mode: str | None = None, clock_offset_ms: int | None = None,
                  email_status_cache_seconds: float | None = None) -> None:
        body: Json = {"duplicate_mode": duplicate_mode, "clock_offset_ms": clock_offset_ms,
                      "email_status_cache_seconds": email_status_cache_seconds}
        self._call("POST", "config", {k: v for k, v in body.items() if v is not None})

    def reset(self) -> None:
        self._call("POST", "reset", {})
