"""``sendcloud-jobs enqueue``: one-off jobs from a shell, through the same producer API an app uses.

Each command validates like the Python API (a bad field is one line naming the field and the
rule), prints the job's idempotency key on stdout, and with ``--wait SECONDS`` waits for the
worker's result and prints it as JSON; its exit status then tells the outcome (0 accepted,
3 nothing went out, 4 needs review, 1 no result in time). Repeating a command with the same
``--key`` is safe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.cli import (
    EXIT_FAILED,
    EXIT_NEEDS_REVIEW,
    EXIT_NOT_SENT,
    EXIT_OK,
    EXIT_STATUSES,
    UsageError,
)
from worker.cli.health import load_settings

RESULT_POLL_S = 0.2

# --wait: the exit status by the job's outcome (an unknown outcome is not called a success).
OUTCOME_EXIT = {
    "sent": EXIT_OK, "partial": EXIT_OK, "duplicate": EXIT_OK, "done": EXIT_OK,
    "failed": EXIT_NOT_SENT, "expired": EXIT_NOT_SENT, "cancelled": EXIT_NOT_SENT,
    "needs_review": EXIT_NEEDS_REVIEW,
}  # fmt: skip


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _split(values: Sequence[str] | None) -> list[str]:
    """``--phone a --phone b,c`` → [a, b, c]."""
    return [item.strip() for value in values or () for item in value.split(",") if item.strip()]


def _pairs(values: Sequence[tuple[str, str]] | None) -> dict[str, str] | None:
    return dict(values) if values else None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", help="idempotency key (default: generated); repeat a command with it safely"
    )
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the worker's result, print it as JSON, and exit by its "
        "outcome (see exit status below)",
    )


def _run(args: argparse.Namespace, submit: Callable[[Any], str]) -> int:
    from producers import Producer

    settings = load_settings()
    producer = Producer(
        redis_url=settings.redis_url,
        idempotency_ttl=settings.idempotency_ttl,
        code_expiry=settings.code_expiry,
    )
    try:
        key = submit(producer)
        print(key, flush=True)
        if args.wait is None:
            return 0
        return _wait(producer, key, args.wait)
    finally:
        producer.close()


def _wait(producer: Any, key: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        result = producer.get_result(key)
        if result is not None:
            print(json.dumps(result, ensure_ascii=False, sort_keys=True))
            return OUTCOME_EXIT.get(str(result.get("outcome")), EXIT_NEEDS_REVIEW)
        if time.monotonic() >= deadline:
            record = producer.get_record(key) or {}
            state = record.get("state", "unknown")
            print(
                f"sendcloud-jobs: no result for {key} after {seconds:g} s (state: {state}); "
                "is a worker running?",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(RESULT_POLL_S)


def _sms(args: argparse.Namespace) -> int:
    phones = _split(args.phone)
    if not phones:
        raise UsageError("--phone: at least one phone number is required")
    return _run(
        args,
        lambda p: p.send_sms(
            args.template_id,
            phones,
            _pairs(args.var),
            msg_type=args.msg_type,
            tag=_pairs(args.tag),
            idempotency_key=args.key,
        ),
    )


def _code(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda p: p.send_code(
            args.phone,
            args.code,
            sign_id=args.sign_id,
            sign_name=args.sign_name,
            msg_type=args.msg_type,
            expires_in=args.expires_in,
            idempotency_key=args.key,
        ),
    )


def _voice(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda p: p.send_voice_code(
            args.phone, args.code, expires_in=args.expires_in, idempotency_key=args.key
        ),
    )


def _members(args: argparse.Namespace) -> int:
    members = _split(args.member)
    if not members:
        raise UsageError("--member: at least one member address is required")
    if args.op == "delete":
        return _run(
            args, lambda p: p.delete_members(args.address, members, idempotency_key=args.key)
        )
    names = _split(args.name) or None
    member_vars = args.vars or None
    if args.op == "add":
        return _run(
            args,
            lambda p: p.add_members(
                args.address, members, names=names, vars=member_vars, idempotency_key=args.key
            ),
        )
    new_members = _split(args.new_member) or None
    return _run(
        args,
        lambda p: p.update_members(
            args.address,
            members,
            new_members=new_members,
            names=names,
            vars=member_vars,
            idempotency_key=args.key,
        ),
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enqueue",
        help="enqueue one job (sms, code, voice, members) and print its idempotency key",
        description=__doc__,
    )
    _add_job_commands(parser.add_subparsers(dest="kind", metavar="KIND", required=True))
    # The same commands at the top level: `sendcloud-jobs code ...` reads as what it does.
    _add_job_commands(subparsers)


def _add_job_commands(kinds: Any) -> None:
    # Each job command documents the exit statuses its --wait gives.
    epilog = {"epilog": EXIT_STATUSES, "formatter_class": argparse.RawDescriptionHelpFormatter}
    sms = kinds.add_parser("sms", help="a template SMS to up to 2000 phones", **epilog)
    sms.add_argument(
        "--template-id", type=int, required=True, help="the approved SMS template's id"
    )
    sms.add_argument(
        "--phone", action="append", required=True, help="a phone, or several comma-separated"
    )
    sms.add_argument(
        "--var", action="append", type=_pair, metavar="NAME=VALUE", help="template variable"
    )
    sms.add_argument("--msg-type", type=int, default=0, help="0 SMS (default), 1 MMS")
    sms.add_argument(
        "--tag", action="append", type=_pair, metavar="NAME=VALUE",
        help="a tag SendCloud keeps with the request (repeatable)",
    )
    _common(sms)
    sms.set_defaults(func=_sms)

    code = kinds.add_parser(
        "code", help="a verification code by SMS (never sent once expired)", **epilog
    )
    code.add_argument("--phone", required=True, help="the mobile number (11 digits, or +86 ...)")
    code.add_argument("--code", required=True, help="4-6 digits")
    sign = code.add_mutually_exclusive_group(required=True)
    sign.add_argument("--sign-id", type=int, help="the approved signature's id")
    sign.add_argument("--sign-name", help="the approved signature's name")
    code.add_argument("--msg-type", type=int, default=0, help="0 mainland (default), 2 intl")
    code.add_argument(
        "--expires-in", type=float, metavar="SECONDS",
        help="never send after this (default SENDCLOUD_CODE_EXPIRY, 600)",
    )
    _common(code)
    code.set_defaults(func=_code)

    voice = kinds.add_parser("voice", help="a verification code by voice call", **epilog)
    voice.add_argument("--phone", required=True, help="the number to call")
    voice.add_argument("--code", required=True, help="4-6 digits")
    voice.add_argument(
        "--expires-in", type=float, metavar="SECONDS",
        help="never call after this (default SENDCLOUD_CODE_EXPIRY, 600)",
    )
    _common(voice)
    voice.set_defaults(func=_voice)

    members = kinds.add_parser("members", help="add, update or delete address-list members")
    ops = members.add_subparsers(dest="op", metavar="OP", required=True)
    for op, text in (
        ("add", "add members to a list"),
        ("update", "change members (addresses, names, variables)"),
        ("delete", "remove members from a list"),
    ):
        sub = ops.add_parser(op, help=text, **epilog)
        sub.add_argument("--address", required=True, help="the address list's alias")
        sub.add_argument(
            "--member", action="append", required=True, help="an address, or comma-separated"
        )
        if op != "delete":
            sub.add_argument("--name", action="append", help="one name per member, in order")
            sub.add_argument(
                "--vars",
                action="append",
                type=_json_object,
                metavar="JSON",
                help="one JSON object per member, in order",
            )
        if op == "update":
            sub.add_argument(
                "--new-member", action="append", help="new address per member, in order"
            )
        _common(sub)
        sub.set_defaults(func=_members)
