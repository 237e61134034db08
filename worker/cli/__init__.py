"""The ``sendcloud-jobs`` command line.

Each command lives in a module of this package with a ``register(subparsers)`` function. The
dispatcher behaves like a well-made Unix tool: a user's mistake (bad input, a malformed or
missing setting, Redis down) is one line on stderr, never a traceback; a closed pipe
(``| head``) ends the command quietly; exit statuses are documented in ``EXIT_STATUSES``.

The operator's tools live here too: ``demo_scenario`` (the embedded demo) and the commands
over dead letters, results and campaigns. The top of the import map: may import anything.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata

# Modules that register commands; each is imported lazily so `--help` stays fast.
COMMAND_MODULES = (
    "worker.cli.simulator",
    "worker.cli.enqueue",
    "worker.cli.results",
    "worker.cli.dlq",
    "worker.cli.health",
    "worker.cli.status",
    "worker.cli.scheduler",
    "worker.cli.reconcile",
    "worker.cli.campaign",
    "worker.cli.verify",
    "worker.cli.receipts",
    "worker.cli.demo",
    "worker.cli.web",
)

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a failure (health check, no result in time)
EXIT_USAGE = 2  # bad input, a malformed or missing setting, Redis unreachable
EXIT_NOT_SENT = 3  # --wait: the job ended and nothing went out (failed, expired, cancelled)
EXIT_NEEDS_REVIEW = 4  # --wait: the job may have gone out; check SendCloud's console
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe

EXIT_STATUSES = f"""exit status:
  {EXIT_OK}    success (with --wait: the job ended sent, partial, duplicate or done)
  {EXIT_FAILED}    the command found a failure (health failed; --wait: no result in time)
  {EXIT_USAGE}    bad input, a malformed or missing setting, or Redis unreachable
  {EXIT_NOT_SENT}    --wait: the job ended and nothing went out (failed, expired, cancelled)
  {EXIT_NEEDS_REVIEW}    --wait: the job may have gone out (needs_review); check SendCloud's console
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_PIPE_CLOSED}  the reader of stdout went away (e.g. `| head`)"""


class UsageError(Exception):
    """A user's mistake, printed as one line."""


# Docstrings double as help text; drop their reST markup (``x``, :func:`x`) for a terminal.
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    if text is None:
        return None
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def version() -> str:
    try:
        return metadata.version("sendcloud-jobs")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            seen: set[int] = set()
            for sub in action.choices.values():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    yield from walk(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendcloud-jobs",
        description="Reliable background jobs for the SendCloud SMS and mail APIs.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for sub in walk(parser):
        sub.description = plain(sub.description)
        for action in sub._actions:
            action.help = plain(action.help)
    return parser


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from producers.errors import SettingError
    from producers.replication import NotReplicated
    from worker.settings import ConfigurationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE_CLOSED
    except (UsageError, ConfigurationError, SettingError) as exc:
        print(f"sendcloud-jobs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # The producers' errors (validation, idempotency and campaign conflicts) are
        # ValueErrors naming the field and the rule; any other ValueError is a bug.
        if not type(exc).__module__.startswith("producers."):
            raise
        print(f"sendcloud-jobs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RedisConnectionError, RedisTimeoutError) as exc:
        print(f"sendcloud-jobs: error: Redis unreachable ({exc}); check REDIS_URL"
              " (and SENDCLOUD_REDIS_SENTINELS, if set)", file=sys.stderr)
        return EXIT_USAGE
    except NotReplicated as exc:
        # Nothing was enqueued: the same command again is safe.
        print(f"sendcloud-jobs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
