"""``sendcloud-jobs simulator``: serve the SendCloud simulator over HTTP until stopped.

Credentials come from SENDCLOUD_SMS_USER / _SMS_KEY / _API_USER / _API_KEY when set, else the
simulator's public demo defaults. The start-up line names the users, never the keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import threading
from types import FrameType
from typing import Any

from worker.cli import UsageError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulator",
        help="serve a local SendCloud simulator over HTTP",
        description="Serve a local SendCloud simulator (SMS, emailStatus, address lists) with "
        "fault injection and a JSON admin API under /_sim/.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="S",
                        help="seconds of added latency on every API call")
    parser.add_argument("--duplicate-mode", choices=("error", "replay"), default="error",
                        help="reply to a repeated sendRequestId: 400 error or the first reply")
    parser.add_argument("--email-status-cache", type=float, default=0.0, metavar="SECONDS",
                        help="cache emailStatus queries this long, as SendCloud does (600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice and ids")
    parser.add_argument("--template", action="append", default=[], metavar="ID[:TEXT]",
                        help="seed an approved SMS template (repeatable)")
    parser.add_argument("--address-list", action="append", default=[], metavar="ALIAS[:NAME]",
                        help="seed an address list owned by the apiUser (repeatable)")
    parser.set_defaults(func=run)


def _credentials() -> dict[str, str]:
    from simulator.core import DEMO_CREDENTIALS

    return {name: os.environ.get(name) or default for name, default in DEMO_CREDENTIALS.items()}


def _parse_template(spec: str) -> tuple[int, str | None]:
    raw_id, _, text = spec.partition(":")
    try:
        template_id = int(raw_id)
    except ValueError:
        raise UsageError(f"--template: the id must be an integer, got {raw_id!r}") from None
    return template_id, text or None


def run(args: argparse.Namespace) -> int:
    from simulator import Simulator
    from simulator.protocol import ApiError
    from simulator.server import serve_in_thread
    from worker.logs import configure_logging
    from worker.settings import Settings

    if args.latency < 0:
        raise UsageError("--latency: must be >= 0")
    if args.email_status_cache < 0:
        raise UsageError("--email-status-cache: must be >= 0")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port: must be within 0..65535")
    templates = [_parse_template(spec) for spec in args.template]
    creds = _credentials()
    # The keys are passed on so the log redactor masks them wherever they might appear.
    configure_logging(dataclasses.replace(
        Settings.from_env(), sms_key=creds["SENDCLOUD_SMS_KEY"], api_key=creds["SENDCLOUD_API_KEY"]
    ))
    sim = Simulator(
        sms_user=creds["SENDCLOUD_SMS_USER"],
        sms_key=creds["SENDCLOUD_SMS_KEY"],
        api_user=creds["SENDCLOUD_API_USER"],
        api_key=creds["SENDCLOUD_API_KEY"],
        seed=args.seed,
        duplicate_mode=args.duplicate_mode,
        email_status_cache_seconds=args.email_status_cache,
    )
    for template_id, text in templates:
        if text is None:
            sim.seed_template(template_id)
        else:
            sim.seed_template(template_id, text)
    for spec in args.address_list:
        alias, _, name = spec.partition(":")
        try:
            sim.seed_address_list(alias, name or "Simulator list")
        except ApiError as exc:
            raise UsageError(f"--address-list: {alias!r} refused ({exc})") from None
    if args.latency:
        sim.faults.set("*", latency=args.latency)
    try:
        server = serve_in_thread(sim, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"SendCloud simulator listening on {server.url} "
          f"(smsUser={sim.sms_user}, apiUser={sim.api_user}, duplicate mode "
          f"{sim.duplicate_mode}, admin API at {server.url}/_sim/)", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    print("SendCloud simulator stopped", flush=True)
    return 0
