"""The ``sendcloud-jobs`` command line.

Each command lives in a module of this package with a ``register(subparsers)`` function; the
dispatcher turns a user's mistake (bad input, missing setting, Redis down) into one clear line
on stderr and exit status 2, with no traceback.

The operator's tools live here too: ``demo_scenario`` (the embedded demo) and the commands
over dead letters, results and campaigns. The top of the import map: may import anything.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    "worker.cli.demo",
)


class UsageError(Exception):
    """A user's mistake, printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendcloud-jobs",
        description="Reliable background jobs for the SendCloud SMS and mail APIs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from producers.errors import IdempotencyConflict, ProducerValidationError
    from worker.settings import ConfigurationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (UsageError, ConfigurationError, ProducerValidationError, IdempotencyConflict) as exc:
        print(f"sendcloud-jobs: error: {exc}", file=sys.stderr)
        return 2
    except (RedisConnectionError, RedisTimeoutError) as exc:
        print(f"sendcloud-jobs: error: Redis unreachable ({exc}); check REDIS_URL", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
