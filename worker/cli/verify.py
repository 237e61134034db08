"""``sendcloud-jobs verify start|check|status|cancel``: verifications by hand, for testing.

``start`` sends a new code (or the pending one's again) and prints the verification, never the
code: it reaches only the phone (with the simulator, its ledger under ``/_sim/``). ``check``
exits 0 when the code is approved, 1 otherwise. Limits and the secret come from the
``SENDCLOUD_VERIFY_*`` variables, as for the producers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.cli import EXIT_FAILED, EXIT_OK

REFUSED = EXIT_FAILED


def _verifier() -> Any:
    from producers import Producer
    from worker.cli.health import load_settings

    settings = load_settings()
    return Producer(redis_url=settings.redis_url).verifier()


def _print(value: dict[str, Any]) -> None:
    print(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))


def _start(args: argparse.Namespace) -> int:
    from producers import VerificationRefused

    verifier = _verifier()
    try:
        started = verifier.start(
            args.phone, channel=args.channel, client_id=args.client_id, sign_id=args.sign_id,
            sign_name=args.sign_name, length=args.length, ttl=args.ttl,
        )  # fmt: skip
    except VerificationRefused as exc:
        print(f"sendcloud-jobs: {exc}", file=sys.stderr)
        return REFUSED
    finally:
        verifier.producer.close()
    _print({
        "id": started.id, "phone": started.phone, "channel": started.channel,
        "expires_at": started.expires_at.isoformat(),
        "resend_at": started.resend_at.isoformat(), "send_key": started.send_key,
        "resent": started.resent,
    })  # fmt: skip
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    verifier = _verifier()
    try:
        result = verifier.check(args.phone, args.code, verification_id=args.id)
    finally:
        verifier.producer.close()
    _print({"status": result.status, "attempts_left": result.attempts_left,
            "verification_id": result.verification_id})  # fmt: skip
    return EXIT_OK if result.approved else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    verifier = _verifier()
    try:
        status = verifier.status(args.phone)
    finally:
        verifier.producer.close()
    if status is None:
        print(f"sendcloud-jobs: no verification for {args.phone}", file=sys.stderr)
        return EXIT_FAILED
    _print(status)
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    verifier = _verifier()
    try:
        cancelled = verifier.cancel(args.phone, verification_id=args.id)
    finally:
        verifier.producer.close()
    print("cancelled" if cancelled else "no pending verification to cancel")
    return EXIT_OK if cancelled else EXIT_FAILED


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="start, check or look at a verification (codes made and checked here)",
        description=__doc__,
    )  # fmt: skip
    commands = parser.add_subparsers(dest="verify_command", metavar="COMMAND", required=True)

    start = commands.add_parser("start", help="send a verification code to a phone")
    start.add_argument("--phone", required=True, help="the mobile number")
    start.add_argument("--channel", choices=("sms", "voice"), default="sms",
                       help="sms (default), or voice: a call reading the pending code")
    start.add_argument("--client-id", help="who asks (an IP, a device): for the client limits")
    start.add_argument("--sign-id", type=int,
                       help="the SMS signature's id (default SENDCLOUD_VERIFY_SIGN_ID)")
    start.add_argument("--sign-name", help="the SMS signature's name, instead of --sign-id")
    start.add_argument("--length", type=int, default=6, choices=(4, 5, 6),
                       help="digits of the code (default 6)")
    start.add_argument("--ttl", type=int, metavar="SECONDS",
                       help="the code's life (default SENDCLOUD_VERIFY_TTL, 600)")
    start.set_defaults(func=_start)

    check = commands.add_parser("check", help="check a code; exit 0 only when approved")
    check.add_argument("--phone", required=True, help="the mobile number")
    check.add_argument("--code", required=True, help="the code the phone received")
    check.add_argument("--id", help="the verification id start printed (optional)")
    check.set_defaults(func=_check)

    status = commands.add_parser("status", help="a phone's verification, without its code")
    status.add_argument("--phone", required=True, help="the mobile number")
    status.set_defaults(func=_status)

    cancel = commands.add_parser("cancel", help="stop a phone's pending verification")
    cancel.add_argument("--phone", required=True, help="the mobile number")
    cancel.add_argument("--id", help="only this verification (optional)")
    cancel.set_defaults(func=_cancel)
