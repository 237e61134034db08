"""``dashboard_app(settings)``: the dashboard's Starlette app, mounted at ``/dashboard``.

One blocking Redis client (worker.connections) serves it: the pages call the producers' and the
broker's synchronous readers, each request's work in Starlette's thread pool. Middleware, from
the outside in: security headers, then the signed session cookie.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from producers import Producer
from worker.broker.dead_letter_queues import DeadLetterQueues
from worker.connections import redis_client
from worker.settings import Settings
from worker.web.dashboard.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    LoginLimiter,
    SecurityHeaders,
    masker,
)

HERE = Path(__file__).resolve().parent
#: Pages answer or fail within this, whatever Redis does.
REDIS_TIMEOUT = 5.0


@dataclass
class Dashboard:
    """What every view shares."""

    settings: Settings
    client: redis.Redis
    templates: Jinja2Templates
    queues: DeadLetterQueues
    limiter: LoginLimiter
    _producer: Producer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def producer(self) -> Producer:
        """On the queues' broker and this client: made on first use (views run in several
        threads of the pool), so a page that reads nothing of the producers needs no broker."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer(broker=self.queues.broker(), redis=self.client)
            return self._producer

    def mask(self, value: Any) -> Any:
        return masker(self.settings.web_mask_phones)(value)


def dashboard_app(settings: Settings, *, client: redis.Redis | None = None) -> Starlette:
    """The app; ``settings`` must hold a ``SENDCLOUD_WEB_SECRET`` of 32 characters or more.

    ``client``: a Redis client of the caller's; else one made here, which lives as long as
    the process (Starlette runs no lifespan of a mounted app).
    """
    from worker.web.dashboard.views import routes

    settings.require_web_secret()
    client = client if client is not None else redis_client(settings, timeout=REDIS_TIMEOUT,
                                                             retries=1)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    dashboard = Dashboard(settings, client, templates, DeadLetterQueues(settings, client),
                          LoginLimiter(client))
    templates.env.filters["mask"] = dashboard.mask

    app = Starlette(
        routes=[*routes(), Mount("/static", StaticFiles(directory=str(HERE / "static")),
                                 name="static")],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(SessionMiddleware, secret_key=settings.web_secret,
                       session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE,
                       same_site="lax", https_only=settings.web_tls),
        ],
    )
    app.state.dashboard = dashboard
    return app
