"""``sendcloud-jobs results``: read the result streams the workers write.

``results tail`` prints the last entries of a stream, one per line (``--json`` for JSON lines),
and with ``--follow`` keeps printing new ones. With ``--group`` it reads as a consumer of that
consumer group (created at the start of the stream if missing), as an app would; ``--ack``
then acknowledges what it printed, so use a group of your own unless you mean to consume.

``results get KEY`` prints what is known about one job as one JSON object: key, kind, state,
attempts, its times (ISO 8601 UTC), last error, sendRequestId and its final record (``result``,
null until the job ends); the fields are listed in ``producers.results.JOB_STATUS_FIELDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

import redis

from producers.contract import (
    EMAIL_STATUS_STREAM,
    MEMBERS_RESULTS_STREAM,
    SMS_DELIVERY_STREAM,
    SMS_RESULTS_STREAM,
)
from producers.replies import reply_text
from worker.cli import UsageError
from worker.cli.health import connect_redis, load_settings

STREAMS = {
    "sms": SMS_RESULTS_STREAM,
    "members": MEMBERS_RESULTS_STREAM,
    "email_status": EMAIL_STATUS_STREAM,
    "sms_delivery": SMS_DELIVERY_STREAM,
}
FOLLOW_BLOCK_MS = 5000
# Fields shown first, in this order; the rest follow sorted by name.
LEADING_FIELDS = ("kind", "outcome", "key")


def stream_name(name: str) -> str:
    return STREAMS.get(name, name)


def entry_time(entry_id: str) -> str:
    """The time Redis added the entry, from the millisecond part of its id."""
    try:
        millis = int(entry_id.split("-", 1)[0])
    except ValueError:
        return "?"
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _value(value: Any) -> str:
    if value is None:  # no value: shown as the stream holds it
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def format_record(entry_id: str, fields: dict[str, Any], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps({"id": entry_id, **fields}, ensure_ascii=False, sort_keys=True)
    names = [f for f in LEADING_FIELDS if f in fields]
    names += sorted(f for f in fields if f not in LEADING_FIELDS)
    shown = " ".join(f"{name}={_value(fields[name])}" for name in names)
    return f"{entry_id}  {entry_time(entry_id)}  {shown}"


def _last_entries(client: redis.Redis, stream: str, count: int) -> tuple[list[Any], str]:
    """The last ``count`` records, oldest first, and the id to follow from."""
    from producers.results import ResultRecord, decode_fields

    raw: list[Any] = list(client.xrevrange(stream, count=max(count, 1)) or [])
    records = [
        ResultRecord(id=reply_text(entry_id), fields=decode_fields(fields))
        for entry_id, fields in reversed(raw)
    ]
    newest = records[-1].id if records else "0-0"
    return (records[-count:] if count > 0 else []), newest


def tail(
    client: redis.Redis,
    stream: str,
    *,
    count: int,
    follow: bool,
    group: str | None = None,
    consumer: str | None = None,
    ack: bool = False,
    as_json: bool = False,
    block_ms: int = FOLLOW_BLOCK_MS,
    max_batches: int | None = None,
) -> int:
    """Print entries; returns how many. ``max_batches`` bounds ``follow`` (tests)."""
    from producers.results import ResultReader

    printed = 0

    def show(records: list[Any]) -> None:
        nonlocal printed
        for record in records:
            print(format_record(record.id, record.fields, as_json=as_json), flush=True)
        printed += len(records)

    if group is None:
        latest, newest = _last_entries(client, stream, count)
        show(latest)
        reader = ResultReader(client, stream, start_id=newest)
    else:
        reader = ResultReader(client, stream, group=group, consumer=consumer)
        reader.ensure_group()
        first = reader.read(count=max(count, 1))
        show(first)
        if ack:
            reader.ack(first)
    batches = 0
    while follow and (max_batches is None or batches < max_batches):
        batches += 1
        records = reader.read(count=100, block_ms=block_ms)
        show(records)
        if ack and group is not None:
            reader.ack(records)
    return printed


def _tail(args: argparse.Namespace) -> int:
    if args.consumer and not args.group:
        raise UsageError("--consumer: needs --group")
    if args.ack and not args.group:
        raise UsageError("--ack: needs --group")
    if args.count < 0:
        raise UsageError("--count: must be 0 or more")
    settings = load_settings()
    client = connect_redis(settings)
    stream = stream_name(args.stream)
    if not client.exists(stream):
        client.close()
        from worker.cli.health import display_url

        known = ", ".join(STREAMS)
        raise UsageError(
            f"--stream: no stream {stream!r} in {display_url(settings.redis_url)} (workers "
            f"create {known} when they start; check REDIS_URL)"
        )
    try:
        tail(
            client,
            stream,
            count=args.count,
            follow=args.follow,
            group=args.group,
            consumer=args.consumer,
            ack=args.ack,
            as_json=args.json,
        )
    finally:
        client.close()
    return 0


def _get(args: argparse.Namespace) -> int:
    """Print :meth:`producers.Producer.get_record`: the fields of
    :data:`producers.results.JOB_STATUS_FIELDS`, in that order, never the internal hash."""
    from producers import Producer

    producer = Producer(redis_url=load_settings().redis_url)
    try:
        status = producer.get_record(args.key)
    finally:
        producer.close()
    if status is None:
        print(f"sendcloud-jobs: no job with key {args.key!r} (unknown or expired)", file=sys.stderr)
        return 1
    print(json.dumps(status, ensure_ascii=False, indent=2))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "results",
        help="read the result streams (tail, follow) or one job's result",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="results_command", metavar="COMMAND", required=True)

    tail_parser = commands.add_parser("tail", help="print the last entries of a result stream")
    tail_parser.add_argument(
        "--stream",
        default="sms",
        metavar="sms|members|email_status|NAME",
        help="which stream (default sms); any other NAME is used as the Redis key",
    )
    tail_parser.add_argument("--group", help="read as a consumer of this consumer group")
    tail_parser.add_argument("--consumer", help="consumer name (default: host-pid)")
    tail_parser.add_argument("--ack", action="store_true", help="acknowledge what is printed")
    tail_parser.add_argument("-n", "--count", type=int, default=10, help="how many (default 10)")
    tail_parser.add_argument("-f", "--follow", action="store_true", help="keep printing new ones")
    tail_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    tail_parser.set_defaults(func=_tail)

    get_parser = commands.add_parser("get", help="one job's state, attempts and result (JSON)")
    get_parser.add_argument("key", help="the idempotency key enqueue printed")
    get_parser.set_defaults(func=_get)
