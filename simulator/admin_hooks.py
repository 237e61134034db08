"""The admin API's hook endpoints (under ``/_sim/hooks``) and the client methods that call them.

==================================  ==========================================================
GET  /_sim/hooks                    the hook settings (app keys shown only as set or not)
POST /_sim/hooks                    any HookSettings fields, e.g. ``{"sms_url": ..., "sms_key":
                                    ..., "sms_mix": {"deliver": 0.9, ...}, "seed": 7}``;
                                    replies the settings
GET  /_sim/hooks/stats              chosen outcomes (by event and statusCode, and as expected
                                    delivered/undelivered/rejected), posted events by name,
                                    attempts, retries, duplicates, held back, reordered,
                                    given up, pending
POST /_sim/hooks/wait               ``{"timeout": 30}``: waits until nothing is pending;
                                    ``{"idle": bool, "pending": n}``
GET  /_sim/hooks/outcomes           ``{"outcomes": {smsId: {"event", "statusCode"}}}``;
                                    ``?sms_ids=a,b`` for some
POST /_sim/hooks/sms                ``{"sms_id", "event", "status_code", "reply_content"}``
POST /_sim/hooks/mail               ``{"email_id", "event", "substat"}``
==================================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from simulator.hooks import Hooks

Json = dict[str, Any]
#: The longest a wait through the admin API may take, so a request never hangs for good.
MAX_WAIT = 600.0


class HasHooks(Protocol):
    hooks: Hooks

    def configure_hooks(self, **changes: Any) -> Any: ...


def _settings(sim: HasHooks, _: Json) -> Json:
    return sim.hooks.settings.to_json()


def _configure(sim: HasHooks, body: Json) -> Json:
    return dict(sim.configure_hooks(**body).to_json())


def _stats(sim: HasHooks, _: Json) -> Json:
    return sim.hooks.stats()


def _wait(sim: HasHooks, body: Json) -> Json:
    timeout = float(body.get("timeout", 30.0))
    if not 0 <= timeout <= MAX_WAIT:
        raise ValueError(f"timeout: must be within 0..{MAX_WAIT:g} seconds")
    idle = sim.hooks.dispatcher.wait_idle(timeout)
    return {"idle": idle, "pending": sim.hooks.dispatcher.pending()}


def _outcomes(sim: HasHooks, body: Json) -> Json:
    raw = body.get("sms_ids")
    wanted = None if raw is None else [i for i in str(raw).split(",") if i]
    return {"outcomes": {
        sms_id: {"event": event, "statusCode": code}
        for sms_id, (event, code) in sim.hooks.sms_outcomes(wanted).items()
    }}


def _trigger_sms(sim: HasHooks, body: Json) -> Json:
    code = body.get("status_code")
    sim.hooks.trigger_sms(str(body["sms_id"]), str(body["event"]),
                          status_code=None if code is None else int(code),
                          reply_content=str(body.get("reply_content", "TD")))
    return {"ok": True}


def _trigger_mail(sim: HasHooks, body: Json) -> Json:
    substat = body.get("substat")
    sim.hooks.trigger_mail(str(body["email_id"]), str(body["event"]),
                           substat=None if substat is None else int(substat))
    return {"ok": True}


ROUTES: dict[tuple[str, str], Callable[[HasHooks, Json], Json]] = {
    ("GET", "/_sim/hooks"): _settings,
    ("POST", "/_sim/hooks"): _configure,
    ("GET", "/_sim/hooks/stats"): _stats,
    ("POST", "/_sim/hooks/wait"): _wait,
    ("GET", "/_sim/hooks/outcomes"): _outcomes,
    ("POST", "/_sim/hooks/sms"): _trigger_sms,
    ("POST", "/_sim/hooks/mail"): _trigger_mail,
}


class HookAdminMixin:
    """The hook methods of :class:`simulator.admin.SimulatorAdmin`."""

    def _call(self, method: str, path: str, body: Json | None = None,
              params: dict[str, str] | None = None, timeout: float | None = None) -> Json:
        raise NotImplementedError

    def hook_settings(self) -> Json:
        return self._call("GET", "hooks")

    def configure_hooks(self, **changes: Any) -> Json:
        """Change any HookSettings fields, e.g. ``sms_url=..., sms_key=..., reorder_ratio=0.1``."""
        return self._call("POST", "hooks", changes)

    def hook_stats(self) -> Json:
        return self._call("GET", "hooks/stats")

    def wait_for_hooks(self, timeout: float = 30.0) -> bool:
        """True once nothing is pending (every event accepted or given up)."""
        reply = self._call("POST", "hooks/wait", {"timeout": timeout}, timeout=timeout + 10)
        return bool(reply["idle"])

    def sms_outcomes(self, sms_ids: list[str] | None = None) -> dict[str, tuple[str, int | None]]:
        """The outcome the simulator chose per smsId: (event, statusCode)."""
        params = None if sms_ids is None else {"sms_ids": ",".join(sms_ids)}
        found = self._call("GET", "hooks/outcomes", params=params)["outcomes"]
        return {k: (v["event"], v["statusCode"]) for k, v in found.items()}

    def trigger_sms_event(self, sms_id: str, event: str, *, status_code: int | None = None,
                          reply_content: str = "TD") -> None:
        self._call("POST", "hooks/sms", {"sms_id": sms_id, "event": event,
                                         "status_code": status_code,
                                         "reply_content": reply_content})

    def trigger_mail_event(self, email_id: str, event: str, *,
                           substat: int | None = None) -> None:
        self._call("POST", "hooks/mail", {"email_id": email_id, "event": event,
                                          "substat": substat})
