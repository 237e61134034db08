"""``sendcloud-jobs health``: is Redis reachable and are the SendCloud credentials valid?

Checks run in order and stop at the first failure, which is printed as one line on stderr with
exit status 1. ``--redis-only`` is the cheap liveness check for container health probes.

The checks never send a message and cost little:

- Redis: PING on ``REDIS_URL``.
- apiUser/apiKey: one emailStatus query (``days=1, limit=1``), a read.
- SMS clock: ``timestamp/get`` (unsigned) shows how far our clock is from SendCloud's.
- smsUser/smsKey: SendCloud has no signed read-only SMS endpoint, so the check is a signed
  ``send`` with no recipient, which cannot deliver anything. A signature error (421/422) or an
  unknown user (471-474) means the credentials are wrong; the 411 "phone number cannot be
  empty" it answers otherwise shows the signature was not refused. SendCloud does not document
  whether it checks the signature before the parameters, so this check can only catch bad
  credentials when it does (the simulator does).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from worker.broker.redis_checks import inspect
from worker.connections import redis_client
from worker.sendcloud.errors import AuthError, ClockSkewError, InvalidRequestError, SendCloudError
from worker.settings import Settings

#: Beyond this, SendCloud refuses SMS calls (461); the client then re-syncs its offset.
SKEW_LIMIT_MS = 6000


class CheckFailed(Exception):
    """One failed check, already phrased for the operator."""


def load_settings(*, log_level: str | None = None) -> Settings:
    """Settings from the environment, with logs on stderr so stdout stays the command's output."""
    from worker.logs import configure_logging

    settings = Settings.from_env()
    if log_level is not None:
        settings = dataclasses.replace(settings, log_level=log_level)
    configure_logging(settings)
    return settings


def display_url(url: str) -> str:
    """The URL without its password, fit for logs and terminals."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def redis_place(settings: Settings) -> str:
    """Where the commands' Redis is, fit for terminals: its URL, or its Sentinel master."""
    if not settings.redis_sentinels:
        return display_url(settings.redis_url)
    sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
    return f"master {settings.redis_master!r} via sentinels {sentinels}"


def connect_redis(settings: Settings, *, fail_fast: bool = False) -> redis.Redis:
    """A client for ``REDIS_URL``; ``fail_fast``: one attempt, short timeouts (health checks)."""
    if fail_fast:
        return redis_client(settings, timeout=3, retries=0)
    return redis_client(settings)


def check_redis(settings: Settings) -> str:
    client = connect_redis(settings, fail_fast=True)
    started = time.perf_counter()
    try:
        client.ping()
    except redis.RedisError as err:
        raise CheckFailed(f"redis: {redis_place(settings)} unreachable ({err})") from None
    finally:
        client.close()
    return f"{redis_place(settings)} answered PING in {_ms(started)} ms"


def check_redis_setup(settings: Settings) -> list[str]:
    """Persistence, eviction and clock lines; an evicting Redis fails the check."""
    client = connect_redis(settings, fail_fast=True)
    try:
        report = inspect(client)
    except redis.RedisError as err:
        raise CheckFailed(f"redis: {redis_place(settings)} unreachable ({err})") from None
    finally:
        client.close()
    lines = []
    for fine, text in report.lines():
        if report.evicts and text.startswith("eviction"):
            raise CheckFailed(f"redis {text}")
        lines.append(f"{'ok' if fine else 'warn':<5}redis {text}")
    return lines


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f}"


def check_mail_credentials(client: Any, settings: Settings) -> str:
    started = time.perf_counter()
    try:
        client.email_status(days=1, limit=1)
    except AuthError as err:
        raise CheckFailed(f"mail api: apiUser/apiKey refused by SendCloud ({err})") from None
    except SendCloudError as err:
        raise CheckFailed(f"mail api: emailStatus failed at {settings.base_url} ({err})") from None
    return f"apiUser {settings.api_user!r} accepted by emailStatus in {_ms(started)} ms"


def check_sms_clock(client: Any) -> str:
    before = time.time() * 1000
    try:
        server_ms = client.server_timestamp()
    except SendCloudError as err:
        raise CheckFailed(f"sms clock: timestamp/get failed ({err})") from None
    after = time.time() * 1000
    skew = server_ms - (before + after) / 2
    note = "" if abs(skew) < SKEW_LIMIT_MS else " (beyond 6 s: the client re-syncs on 461)"
    return f"SendCloud's clock is {skew:+.0f} ms from ours{note}"


def check_sms_credentials(client: Any, settings: Settings) -> str:
    try:
        client.send_sms(0, [])
    except ClockSkewError as err:
        raise CheckFailed(f"sms api: timestamp refused even after a re-sync ({err})") from None
    except AuthError as err:
        raise CheckFailed(f"sms api: smsUser/smsKey refused by SendCloud ({err})") from None
    except InvalidRequestError as err:
        return (
            f"smsUser {settings.sms_user!r}: signature not refused "
            f"(probe without recipients answered statusCode {err.code})"
        )
    except SendCloudError as err:
        raise CheckFailed(f"sms api: probe failed at {settings.base_url} ({err})") from None
    # A send without recipients must be refused; a success means the endpoint is not SendCloud.
    raise CheckFailed(f"sms api: {settings.base_url} accepted a send without recipients")


def run_checks(settings: Settings, *, redis_only: bool, client: Any = None) -> list[str]:
    """Every check's success line, in order; raises CheckFailed at the first failure."""
    lines = [f"ok   redis       {check_redis(settings)}"]
    if redis_only:
        return lines
    lines += check_redis_setup(settings)
    settings.require_credentials()
    if client is None:
        from worker.sendcloud.client import SendCloudClient

        client = SendCloudClient(settings)
    try:
        lines.append(f"ok   mail api    {check_mail_credentials(client, settings)}")
        lines.append(f"ok   sms clock   {check_sms_clock(client)}")
        lines.append(f"ok   sms api     {check_sms_credentials(client, settings)}")
    finally:
        client.close()
    return lines


def _health(args: argparse.Namespace) -> int:
    # The checks' own lines say it all; the client's call logs would bury them.
    settings = load_settings(log_level="ERROR")
    try:
        lines = run_checks(settings, redis_only=args.redis_only)
    except CheckFailed as failed:
        print(f"sendcloud-jobs: health: {failed}", file=sys.stderr)
        return 1
    if not args.quiet:
        print("\n".join(lines))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health",
        help="check Redis and the SendCloud credentials (never sends a message)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--redis-only",
        action="store_true",
        help="only PING Redis: the cheap liveness check for container probes",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    parser.set_defaults(func=_health)
