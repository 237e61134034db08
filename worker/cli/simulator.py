"""``sendcloud-jobs simulator``: serve the SendCloud simulator over HTTP until stopped.

Credentials come from SENDCLOUD_SMS_USER / _SMS_KEY / _API_USER / _API_KEY when set, else the
simulator's public demo defaults. The start-up line names the users, never the keys.

``--sms-hook URL`` / ``--mail-hook URL`` make it POST SendCloud's signed SMSHook / mail WebHook
events there, signed with the app keys from ``--sms-hook-key`` / ``--mail-hook-key`` or, better
(a command line is visible to other users), SENDCLOUD_SMS_HOOK_KEY / SENDCLOUD_MAIL_HOOK_KEY,
which the product's receiver reads too. The ``--hook-*`` options set the outcome mix, replies,
delays, duplicates, reordering, encoding and retries (see simulator/hook_events.py); the admin
API changes them at run time.
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
    _register_hooks(parser)
    parser.set_defaults(func=run)


#: HookSettings fields by the option that sets them, for one-line errors naming the option.
HOOK_OPTIONS = {
    "sms_url": "--sms-hook", "mail_url": "--mail-hook", "sms_key": "--sms-hook-key",
    "mail_key": "--mail-hook-key", "sms_mix": "--hook-mix", "mail_mix": "--hook-mail-mix",
    "reply_rate": "--hook-reply-rate", "open_rate": "--hook-open-rate",
    "click_rate": "--hook-click-rate", "min_delay": "--hook-delay", "max_delay": "--hook-delay",
    "duplicate_ratio": "--hook-duplicate-ratio", "reorder_ratio": "--hook-reorder-ratio",
    "encoding": "--hook-encoding", "seed": "--hook-seed", "connections": "--hook-connections",
    "max_attempts": "--hook-max-attempts", "retry_base": "--hook-retry-base",
    "retry_max": "--hook-retry-max", "timeout": "--hook-timeout",
}


def _register_hooks(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("webhooks (what SendCloud POSTs back)")
    group.add_argument("--sms-hook", metavar="URL", help="POST SMSHook events to this URL")
    group.add_argument("--mail-hook", metavar="URL", help="POST mail WebHook events to this URL")
    group.add_argument("--sms-hook-key", metavar="KEY",
                       help="SMSHook app key (default: $SENDCLOUD_SMS_HOOK_KEY)")
    group.add_argument("--mail-hook-key", metavar="KEY",
                       help="mail WebHook app key (default: $SENDCLOUD_MAIL_HOOK_KEY)")
    group.add_argument("--hook-mix", metavar="EVENT=SHARE,...",
                       help="SMS outcome shares (default deliver=0.9,delivererror=0.07,"
                       "workererror=0.03)")
    group.add_argument("--hook-mail-mix", metavar="EVENT=SHARE,...",
                       help="email outcome shares (default deliver=0.9,invalid=0.05,"
                       "soft_bounce=0.05)")
    for name, what in (("reply-rate", "share of delivered SMS answered with a reply"),
                       ("open-rate", "share of delivered emails opened"),
                       ("click-rate", "share of opened emails clicked"),
                       ("duplicate-ratio", "share of events POSTed twice"),
                       ("reorder-ratio", "share of events held back behind later ones"),
                       ("retry-base", "seconds before the first retry (doubling)"),
                       ("retry-max", "longest wait between retries, seconds"),
                       ("timeout", "seconds a receiver has to answer 200")):
        group.add_argument(f"--hook-{name}", type=float, metavar="X", help=what)
    group.add_argument("--hook-delay", metavar="MIN[:MAX]",
                       help="seconds between an event and its POST (default 0)")
    group.add_argument("--hook-encoding", choices=("form", "json", "mixed"),
                       help="body encoding (default form)")
    group.add_argument("--hook-seed", type=int, metavar="N",
                       help="seed of the hook dice (default: --seed)")
    group.add_argument("--hook-connections", type=int, metavar="N",
                       help="keep-alive connections to the receivers (default 4)")
    group.add_argument("--hook-max-attempts", type=int, metavar="N",
                       help="attempts per event before it is given up (default 10)")


def _mix(option: str, raw: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, share = part.partition("=")
        try:
            mix[name.strip()] = float(share)
        except ValueError:
            raise UsageError(f"{option}: expected EVENT=SHARE,..., got {part!r}") from None
        if not sep:
            raise UsageError(f"{option}: expected EVENT=SHARE,..., got {part!r}")
    return mix


def _hook_settings(args: argparse.Namespace) -> Any:
    from simulator import HookSettings

    changes: dict[str, Any] = {
        "sms_url": args.sms_hook, "mail_url": args.mail_hook,
        "sms_key": args.sms_hook_key or os.environ.get("SENDCLOUD_SMS_HOOK_KEY", ""),
        "mail_key": args.mail_hook_key or os.environ.get("SENDCLOUD_MAIL_HOOK_KEY", ""),
        "seed": args.seed if args.hook_seed is None else args.hook_seed,
    }
    if args.hook_mix:
        changes["sms_mix"] = _mix("--hook-mix", args.hook_mix)
    if args.hook_mail_mix:
        changes["mail_mix"] = _mix("--hook-mail-mix", args.hook_mail_mix)
    if args.hook_delay:
        low, _, high = args.hook_delay.partition(":")
        try:
            changes["min_delay"], changes["max_delay"] = float(low), float(high or low)
        except ValueError:
            raise UsageError(f"--hook-delay: expected MIN[:MAX] seconds, got "
                             f"{args.hook_delay!r}") from None
    for name in ("reply_rate", "open_rate", "click_rate", "duplicate_ratio", "reorder_ratio",
                 "retry_base", "retry_max", "timeout", "encoding", "connections",
                 "max_attempts"):
        value = getattr(args, f"hook_{name}")
        if value is not None:
            changes[name] = value
    try:
        return HookSettings().updated(changes)
    except ValueError as exc:
        field, _, rule = str(exc).partition(": ")
        option = HOOK_OPTIONS.get(field.split(",")[0], field)
        raise UsageError(f"{option}: {rule or exc}") from None


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
    hooks = _hook_settings(args)
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
        hooks=hooks,
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
    for name, url in (("SMSHook", hooks.sms_url), ("mail WebHook", hooks.mail_url)):
        if url:
            print(f"posting {name} events to {url}", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
        sim.close()
    print("SendCloud simulator stopped", flush=True)
    return 0
