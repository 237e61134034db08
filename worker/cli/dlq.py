"""``sendcloud-jobs dlq``: the messages that failed for good, why, and what to do with them.

``dlq list`` shows each dead-lettered message: its id, actor, idempotency key, the state of its
job, when it died and the reason (the error of its final attempt). ``dlq replay`` puts them back
on their queue and removes them from the dead-letter queue; replay is safe because every job is
idempotent. For the same reason a letter whose job already ended (``failed``: SendCloud refused
it for good; its result is on the stream) is kept, not replayed: the worker would not run it
again. Fix the cause, enqueue the job again under a new key, then purge the letter.
``dlq purge --yes`` deletes them. Each takes ``--queue`` (default: every product queue) and
optional message ids to act on only those. Dead letters expire after 7 days (Dramatiq's TTL).
With ``SENDCLOUD_BROKER_URL`` set the same commands act on RabbitMQ's ``<queue>.XQ`` queues.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker

from producers.contract import ALL_QUEUES
from worker.broker import dead_letters as dlq
from worker.broker import rabbitmq as rabbit
from worker.cli import UsageError
from worker.cli.health import connect_redis, load_settings
from worker.settings import Settings


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _as_dict(letter: dlq.DeadLetter) -> dict[str, Any]:
    return {
        "queue": letter.queue,
        "message_id": letter.message_id,
        "actor": letter.actor,
        "key": letter.key,
        "dead_at": _when(letter.dead_at),
        "retries": letter.retries,
        "job_state": letter.job_state,
        "reason": letter.reason,
    }


@contextmanager
def _stores() -> Iterator[tuple[Settings, redis.Redis, Broker | None]]:
    """Redis, and the RabbitmqBroker when the queues live in RabbitMQ (else None)."""
    from worker.broker import make_broker

    settings = load_settings()
    client = connect_redis(settings)
    broker = make_broker(None, redis_client=client, settings=settings) if settings.rabbitmq \
        else None
    try:
        yield settings, client, broker
    finally:
        if broker is not None:
            broker.close()
        client.close()


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    with _stores() as (_, client, broker):
        if broker is not None:
            letters = rabbit.list_dead_letters(broker, client, queue=args.queue)
        else:
            letters = dlq.list_dead_letters(client, namespace=dlq.NAMESPACE, queue=args.queue)
    if args.ids:
        letters = [x for x in letters if x.message_id in args.ids or x.redis_id in args.ids]
    if args.json:
        for letter in letters:
            print(json.dumps(_as_dict(letter), ensure_ascii=False))
        return 0
    if not letters:
        print(f"no dead letters in {args.queue or 'any queue'}")
        return 0
    table = Table(title=f"{len(letters)} dead letter(s)", title_justify="left")
    table.add_column("message id", no_wrap=True, min_width=36)  # copied into replay/purge
    for column in ("queue", "actor", "key", "job", "dead at", "reason"):
        table.add_column(column, overflow="fold")
    for x in letters:
        job = x.job_state or "-"
        table.add_row(x.message_id, x.queue, x.actor, x.key or "-", job, _when(x.dead_at), x.reason)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped into a file or grep: no need to fold at 80
    console.print(table)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from worker.broker import make_broker

    with _stores() as (settings, client, broker):
        if broker is not None:
            report = rabbit.replay(broker, client, queue=args.queue, ids=args.ids or None)
        else:
            redis_broker = make_broker(None, redis_client=client, settings=settings)
            try:
                assert isinstance(redis_broker, RedisBroker)
                report = dlq.replay(redis_broker, queue=args.queue, ids=args.ids or None)
            finally:
                redis_broker.close()
    for letter in report.replayed:
        print(f"replayed {letter.message_id} {letter.actor} key={letter.key} -> {letter.queue}")
    for letter in report.final:
        print(
            f"kept     {letter.message_id} {letter.actor} key={letter.key}: the job already "
            f"ended ({letter.job_state}), so a replay would not run it; enqueue it again under "
            "a new key, then purge this letter"
        )
    print(f"{len(report.replayed)} message(s) replayed, {len(report.final)} kept")
    return 0


def _purge(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("purge deletes dead letters for good: add --yes to confirm")
    with _stores() as (_, client, broker):
        if broker is not None:
            removed = rabbit.purge(broker, client, queue=args.queue, ids=args.ids or None)
        else:
            removed = dlq.purge(client, namespace=dlq.NAMESPACE, queue=args.queue,
                                ids=args.ids or None)
    print(f"{removed} dead letter(s) purged")
    return 0


def _queue(text: str) -> str:
    if text in ALL_QUEUES:
        return text
    short = {q.split(".", 1)[-1]: q for q in ALL_QUEUES}
    if text in short:
        return short[text]
    choices = ", ".join(sorted(short)) + " (or the full names)"
    raise argparse.ArgumentTypeError(f"unknown queue {text!r}; choose from {choices}")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list, replay or purge dead-lettered messages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    for name, text, func in (
        ("list", "show dead letters with their reason", _list),
        ("replay", "re-enqueue dead letters and remove them from the DLQ", _replay),
        ("purge", "delete dead letters for good (needs --yes)", _purge),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--queue", type=_queue, help="codes, sms, members or status (default: all)"
        )
        sub.add_argument("ids", nargs="*", metavar="MESSAGE_ID", help="only these messages")
        sub.set_defaults(func=func)
        if name == "list":
            sub.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "purge":
            sub.add_argument("--yes", action="store_true", help="confirm the deletion")
