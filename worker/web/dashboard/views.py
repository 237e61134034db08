"""The dashboard's pages, their JSON twins (polled by ``static/dashboard.js``) and actions.

Every route but the login needs a session: a page without one redirects to the login, a JSON
read or an action answers 401. Actions (POST) also need the CSRF token and the ``operator``
role (403 otherwise). The blocking Redis work of each request runs in the thread pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from producers.campaign import validate_campaign_id
from producers.campaign_index import list_campaigns
from producers.campaign_report import CampaignNotFound, campaign_status, cancel_campaign
from producers.errors import ProducerValidationError
from worker.web.dashboard import queues, reads, reports
from worker.web.dashboard.security import (
    CSRF_FIELD,
    client_address,
    csrf_ok,
    csrf_token,
    current_user,
    log_in,
)
from worker.web.dashboard.users import User, authenticate

if TYPE_CHECKING:  # the app imports these views
    from worker.web.dashboard.app import Dashboard

    View = Callable[[Request, Dashboard, User], Awaitable[Response]]

log = structlog.get_logger(__name__)


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, template: str, user: User | None, status_code: int = 200,
           **context: Any) -> Response:
    dashboard = _dashboard(request)
    return dashboard.templates.TemplateResponse(
        request, template, {"user": user, "base": _base(request), "csrf": csrf_token(request),
                        "csrf_field": CSRF_FIELD, **context},
        status_code=status_code,
    )


def guarded(*, json: bool = False, act: bool = False) -> Callable[[View], Callable[..., Any]]:
    """A view that needs a session (and for ``act`` a POST with the CSRF token, by an
    operator)."""
    def wrap(view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            dashboard = _dashboard(request)
            user = await run_in_threadpool(current_user, request, dashboard.client)
            if user is None:
                if json or act:
                    return JSONResponse({"error": "login required"}, status_code=401)
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                                   else ""), safe="")
                return RedirectResponse(f"{_base(request)}/login?next={target}", 303)
            if act:
                form = await request.form()
                if not csrf_ok(request, form.get(CSRF_FIELD)):
                    return render(request, "error.html", user, 403,
                                  message="This form is out of date or was not sent by the "
                                          "dashboard (CSRF token missing or wrong). Reload the "
                                          "page and try again.")
                if not user.can_act:
                    return render(request, "error.html", user, 403,
                                  message=f"{user.name} is a viewer: only an operator may do "
                                          "this.")
            return await view(request, dashboard, user)

        return endpoint

    return wrap


# -- login -----------------------------------------------------------------------------------


def _next(request: Request, raw: object) -> str:
    """Where to go after the login: only a path of the dashboard itself."""
    base = _base(request)
    if isinstance(raw, str) and raw.startswith(base + "/") and not raw.startswith("//") \
            and "\\" not in raw:
        return raw
    return base + "/"


async def login_page(request: Request) -> Response:
    target = _next(request, request.query_params.get("next"))
    return render(request, "login.html", None, next=target)


async def login(request: Request) -> Response:
    dashboard = _dashboard(request)
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = _next(request, form.get("next"))
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return render(request, "login.html", None, 403, next=target, login_name=name,
                      error="The login form is out of date: reload the page and try again.")
    address = client_address(request)
    wait = await run_in_threadpool(dashboard.limiter.retry_after, name, address)
    if wait > 0:
        log.warning("dashboard_login_refused", user=name, address=address, rule="rate_limit")
        response = render(request, "login.html", None, 429, next=target, login_name=name,
                          error=f"Too many failed logins: try again in {int(wait) + 1} s.")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = await run_in_threadpool(authenticate, dashboard.client, name, password)
    if user is None:
        await run_in_threadpool(dashboard.limiter.failed, name, address)
        log.warning("dashboard_login_failed", user=name, address=address)
        return render(request, "login.html", None, 401, next=target, login_name=name,
                      error="Wrong name or password.")
    await run_in_threadpool(dashboard.limiter.succeeded, name, address)
    log_in(request, user)
    log.info("dashboard_login", user=user.name, role=user.role, address=address)
    return RedirectResponse(target, 303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if csrf_ok(request, form.get(CSRF_FIELD)):
        request.session.clear()
    return RedirectResponse(f"{_base(request)}/login", 303)


# -- overview --------------------------------------------------------------------------------


def _overview(dashboard: Dashboard) -> dict[str, Any]:
    client = dashboard.client
    broker = dashboard.queues.broker() if dashboard.settings.rabbitmq else None
    return {
        "queues": [dataclasses.asdict(q) for q in reads.queue_depths(client, broker)],
        "outcomes": reads.outcomes_per_minute(client),
        "pauses": [dataclasses.asdict(p) for p in reads.account_pauses(client)],
        "poller": dataclasses.asdict(reads.poller_state(client)),
    }


@guarded()
async def overview(request: Request, dashboard: Dashboard, user: User) -> Response:
    data = await run_in_threadpool(_overview, dashboard)
    return render(request, "overview.html", user, **data)


@guarded(json=True)
async def overview_json(request: Request, dashboard: Dashboard, user: User) -> Response:
    return JSONResponse(await run_in_threadpool(_overview, dashboard))


# -- campaigns -------------------------------------------------------------------------------


def _campaigns(dashboard: Dashboard) -> list[dict[str, Any]]:
    return [reports.progress(s) for s in list_campaigns(producer=dashboard.producer)]


@guarded()
async def campaigns(request: Request, dashboard: Dashboard, user: User) -> Response:
    return render(request, "campaigns.html", user,
                  campaigns=await run_in_threadpool(_campaigns, dashboard))


@guarded(json=True)
async def campaigns_json(request: Request, dashboard: Dashboard, user: User) -> Response:
    return JSONResponse({"campaigns": await run_in_threadpool(_campaigns, dashboard)})


def _campaign(dashboard: Dashboard, campaign_id: str) -> dict[str, Any]:
    status = campaign_status(campaign_id, producer=dashboard.producer)
    return {**reports.progress(status),
            "failures": reports.failures_by_reason(dashboard.producer, campaign_id)}


def _campaign_id(request: Request) -> str:
    return validate_campaign_id(request.path_params["campaign_id"])


async def _campaign_or_404(request: Request, dashboard: Dashboard, user: User,
                           json: bool) -> dict[str, Any] | Response:
    try:
        return await run_in_threadpool(_campaign, dashboard, _campaign_id(request))
    except (CampaignNotFound, ProducerValidationError) as exc:
        if json:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return render(request, "error.html", user, 404, message=str(exc))


@guarded()
async def campaign(request: Request, dashboard: Dashboard, user: User) -> Response:
    data = await _campaign_or_404(request, dashboard, user, json=False)
    if isinstance(data, Response):
        return data
    return render(request, "campaign.html", user, campaign=data,
                  notice=request.query_params.get("notice"))


@guarded(json=True)
async def campaign_json(request: Request, dashboard: Dashboard, user: User) -> Response:
    data = await _campaign_or_404(request, dashboard, user, json=True)
    return data if isinstance(data, Response) else JSONResponse(data)


@guarded(act=True)
async def campaign_cancel(request: Request, dashboard: Dashboard, user: User) -> Response:
    try:
        cid = _campaign_id(request)
        await run_in_threadpool(cancel_campaign, cid, producer=dashboard.producer)
    except (CampaignNotFound, ProducerValidationError) as exc:
        return render(request, "error.html", user, 404, message=str(exc))
    log.info("dashboard_campaign_cancelled", user=user.name, campaign_id=cid)
    return RedirectResponse(f"{_base(request)}/campaigns/{quote(cid)}?notice=cancel", 303)


@guarded()
async def campaign_report(request: Request, dashboard: Dashboard, user: User) -> Response:
    try:
        cid = _campaign_id(request)
        pieces = await run_in_threadpool(reports.report_csv, dashboard.producer, cid,
                                         dashboard.mask)
    except (CampaignNotFound, ProducerValidationError) as exc:
        return render(request, "error.html", user, 404, message=str(exc))
    return StreamingResponse(pieces, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="campaign-{cid}.csv"'})


# -- jobs ------------------------------------------------------------------------------------


def _job(dashboard: Dashboard, key: str) -> dict[str, Any] | None:
    record = dashboard.producer.get_record(key)
    if record is None:
        return None
    result = dashboard.producer.get_result(key)
    return dashboard.mask({"record": record, "result": result})


@guarded()
async def job(request: Request, dashboard: Dashboard, user: User) -> Response:
    key = request.query_params.get("key", "").strip()
    if not key:
        return render(request, "job.html", user, key="", job=None)
    if len(key) > 256 or any(not c.isprintable() for c in key):
        return render(request, "job.html", user, 422, key="", job=None,
                      error="key: must be at most 256 printable characters")
    found = await run_in_threadpool(_job, dashboard, key)
    return render(request, "job.html", user, 200 if found else 404, key=key, job=found,
                  error=None if found else f"no job with key {key!r} (unknown or expired)")


# -- dead letters ----------------------------------------------------------------------------


@guarded()
async def dead_letters(request: Request, dashboard: Dashboard, user: User) -> Response:
    letters = await run_in_threadpool(queues.list_letters, dashboard.queues)
    return render(request, "dead_letters.html", user, letters=dashboard.mask(letters),
                  notice=request.query_params.get("notice"))


@guarded(json=True)
async def dead_letters_json(request: Request, dashboard: Dashboard, user: User) -> Response:
    letters = await run_in_threadpool(queues.list_letters, dashboard.queues)
    return JSONResponse({"letters": dashboard.mask(letters)})


def _message_id(form: Any) -> str | None:
    value = str(form.get("message_id", "")).strip()
    return value or None


@guarded(act=True)
async def dead_letters_replay(request: Request, dashboard: Dashboard, user: User) -> Response:
    message_id = _message_id(await request.form())
    notice = await run_in_threadpool(queues.replay, dashboard.queues, message_id)
    log.info("dashboard_dead_letters_replayed", user=user.name, message_id=message_id or "*",
             outcome=notice)
    return RedirectResponse(f"{_base(request)}/dead-letters?notice={quote(notice)}", 303)


@guarded(act=True)
async def dead_letters_purge(request: Request, dashboard: Dashboard, user: User) -> Response:
    form = await request.form()
    if form.get("confirm") != "purge":
        return render(request, "error.html", user, 422,
                      message="confirm: type purge to delete dead letters for good")
    message_id = _message_id(form)
    notice = await run_in_threadpool(queues.purge, dashboard.queues, message_id)
    log.info("dashboard_dead_letters_purged", user=user.name, message_id=message_id or "*",
             outcome=notice)
    return RedirectResponse(f"{_base(request)}/dead-letters?notice={quote(notice)}", 303)


def routes() -> list[BaseRoute]:
    return [
        Route("/login", login_page, methods=["GET"], name="login_page"),
        Route("/login", login, methods=["POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/", overview, methods=["GET"], name="overview"),
        Route("/overview.json", overview_json, methods=["GET"]),
        Route("/campaigns", campaigns, methods=["GET"], name="campaigns"),
        Route("/campaigns.json", campaigns_json, methods=["GET"]),
        Route("/campaigns/{campaign_id}", campaign, methods=["GET"], name="campaign"),
        Route("/campaigns/{campaign_id}/status.json", campaign_json, methods=["GET"]),
        Route("/campaigns/{campaign_id}/cancel", campaign_cancel, methods=["POST"]),
        Route("/campaigns/{campaign_id}/report.csv", campaign_report, methods=["GET"]),
        Route("/jobs", job, methods=["GET"], name="job"),
        Route("/dead-letters", dead_letters, methods=["GET"], name="dead_letters"),
        Route("/dead-letters.json", dead_letters_json, methods=["GET"]),
        Route("/dead-letters/replay", dead_letters_replay, methods=["POST"]),
        Route("/dead-letters/purge", dead_letters_purge, methods=["POST"]),
    ]
