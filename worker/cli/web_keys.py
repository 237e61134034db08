"""``sendcloud-jobs web api-key create|list|revoke``: the HTTP API's keys.

``create`` prints the new key alone on stdout (``KEY=$(sendcloud-jobs web api-key create
...)``), once: only its SHA-256 digest is stored (worker.web.api.keys). ``list`` shows every
key's id, name, scope and times, never a key; ``revoke ID`` refuses the key from the next call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from worker.cli import UsageError

T = TypeVar("T")


def register(commands: Any) -> None:
    keys = commands.add_parser(
        "api-key", help="create, list or revoke the HTTP API's keys",
        description="The HTTP API's keys (Authorization: Bearer KEY). Each has one scope: send "
        "(enqueue), read (jobs, campaigns), admin (both, and the keys). Uses REDIS_URL.",
    )
    actions = keys.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a key; it is printed this once",
                                description="Make an API key and print it on stdout, once: "
                                "only its digest is stored.")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'shop-php'")
    create.add_argument("--scope", required=True, choices=("send", "read", "admin"),
                        help="send: enqueue; read: jobs and campaigns; admin: all and keys")
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="every key's id, name, scope and times",
                                 description="Every API key (never the key itself).")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="refuse a key from its next call",
                                description="Revoke the key with this id (from 'list').")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(func=_revoke)


def _with_store(action: Callable[[Any], Awaitable[T]]) -> T:
    from worker.cli.health import load_settings
    from worker.connections import async_redis_client
    from worker.web.api.keys import KeyStore

    settings = load_settings()

    async def run() -> T:
        client = async_redis_client(settings, timeout=5.0, retries=1)
        try:
            return await action(KeyStore(client))
        finally:
            await client.aclose()

    return asyncio.run(run())


def _when(seconds: float | None) -> str:
    from producers.results import iso_utc

    return "-" if seconds is None else iso_utc(seconds)


def _create(args: argparse.Namespace) -> int:
    key, token = _with_store(lambda store: store.create(args.name, args.scope))
    print(token, flush=True)
    print(f"API key {key.id} ({key.name!r}, scope {key.scope}) created; it is shown this once",
          file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = _with_store(lambda store: store.list())
    if args.json:
        for key in keys:
            print(json.dumps(key.as_json(), ensure_ascii=False))
        return 0
    if not keys:
        print("no API keys")
        return 0
    print("id\tscope\tcreated\tlast used\tname")
    for key in keys:
        print(f"{key.id}\t{key.scope}\t{_when(key.created_at)}\t{_when(key.last_used)}\t{key.name}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not _with_store(lambda store: store.revoke(args.key_id)):
        raise UsageError(f"ID: no API key {args.key_id!r} (see 'sendcloud-jobs web api-key list')")
    print(f"API key {args.key_id} revoked")
    return 0
