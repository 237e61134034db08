"""``sendcloud-jobs web user add|list|remove``: who may log in to the dashboard.

``add NAME --role operator|viewer`` asks for the password twice (or reads one line from stdin
with ``--password-stdin``, for scripts); it is stored only as an Argon2 hash. ``remove`` ends
the user's sessions at their next request.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from worker.cli import UsageError


def _client() -> Any:
    from worker.cli.health import connect_redis, load_settings

    return connect_redis(load_settings())


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password.removesuffix("\r")
    if not sys.stdin.isatty():
        raise UsageError("--password-stdin: stdin is not a terminal, so give the password on "
                         "stdin with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("password: the two entries differ")
    return first


def _add(args: argparse.Namespace) -> int:
    from worker.web.dashboard.users import UserError, add_user, check_name, check_role

    try:
        check_name(args.name)
        check_role(args.role)
        password = _password(args)
        client = _client()
        try:
            user = add_user(client, args.name, password, args.role)
        finally:
            client.close()
    except UserError as exc:
        raise UsageError(str(exc)) from None
    print(f"user {user.name} added ({user.role})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from worker.web.dashboard.users import list_users

    client = _client()
    try:
        users = list_users(client)
    finally:
        client.close()
    if not users:
        print("no dashboard users: add one with `sendcloud-jobs web user add NAME --role operator`")
    for user in users:
        print(f"{user.name}\t{user.role}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from worker.web.dashboard.users import remove_user

    client = _client()
    try:
        removed = remove_user(client, args.name)
    finally:
        client.close()
    if not removed:
        raise UsageError(f"name: no dashboard user named {args.name!r}")
    print(f"user {args.name} removed")
    return 0


def register(web_commands: Any) -> None:
    """Adds ``user`` under ``web``'s subcommands."""
    parser = web_commands.add_parser("user", help="add, list or remove dashboard users",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=("operator", "viewer"),
                     help="operator: may cancel campaigns and replay or purge dead letters")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin")
    add.set_defaults(func=_add)
    listing = commands.add_parser("list", help="the users and their roles")
    listing.set_defaults(func=_list)
    remove = commands.add_parser("remove", help="remove a user")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=_remove)
