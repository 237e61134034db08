"""``sendcloud-jobs web``: the webhook receiver, the HTTP API under /v1/ and /healthz, under
uvicorn; ``web api-key create|list|revoke`` manage the API's keys (worker.cli.web_keys).

Needs ``SENDCLOUD_SMS_HOOK_KEY`` or ``SENDCLOUD_MAIL_HOOK_KEY`` (a path without its key answers
404) and ``REDIS_URL``. It starts without Redis: hooks then answer 503, SendCloud retries, and
``/healthz`` answers 503 until Redis is back. Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "web", help="receive SendCloud's SMSHook and mail WebHook posts into the inbox streams",
        description="Serve POST /hooks/sms and /hooks/mail (SendCloud's signed hooks, appended "
        "to sendcloud:inbox:sms and sendcloud:inbox:mail), the HTTP API under /v1/ (keys from "
        "'web api-key create') and GET /healthz. Uses REDIS_URL, SENDCLOUD_SMS_HOOK_KEY and "
        "SENDCLOUD_MAIL_HOOK_KEY.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.set_defaults(func=run_web)
    # The operator's dashboard: `web --dashboard` serves it, `web user ...` manages its users.
    parser.add_argument("--dashboard", action="store_true",
                        help="also serve the operator's dashboard at /dashboard (needs "
                        "SENDCLOUD_WEB_SECRET and a user: `web user add`)")
    from worker.cli import web_keys, web_users

    commands = parser.add_subparsers(dest="web_command", metavar="COMMAND")
    web_keys.register(commands)
    web_users.register(commands)


def run_web(args: argparse.Namespace) -> int:
    import structlog
    from starlette.routing import BaseRoute, Mount

    from worker.logs import configure_logging
    from worker.settings import Settings
    from worker.web.api.app import ApiMount, api_app, producer_for
    from worker.web.app import create_app, redis_client
    from worker.web.server import PortTaken, bind, serve

    settings = Settings.from_env().require_hook_key()
    mounts: list[BaseRoute] = []
    if args.dashboard:
        from worker.web.dashboard.app import dashboard_app

        mounts.append(Mount("/dashboard", app=dashboard_app(settings), name="dashboard"))
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0 to 65535, got {args.port}")
    try:
        sock = bind(args.host, args.port)
    except PortTaken as exc:
        raise UsageError(f"--port: {exc}") from None
    configure_logging(settings)
    host, port = sock.getsockname()[:2]
    structlog.get_logger(__name__).info(
        "web_started", host=host, port=port,
        hooks=[name for name, key in (("/hooks/sms", settings.sms_hook_key),
                                      ("/hooks/mail", settings.mail_hook_key)) if key],
        dashboard="/dashboard" if args.dashboard else None,
    )  # fmt: skip
    # One asyncio client for the hooks and the API's key checks; the producer's own (blocking)
    # clients serve the API's calls in threads.
    client = redis_client(settings)
    with producer_for(settings) as producer:
        mounts.insert(0, ApiMount("/v1", api_app(producer, client)))
        serve(create_app(settings, redis=client, mounts=mounts), sock)
    return 0
