"""Reading the result streams the workers write (names in :mod:`producers.contract`).

Workers append one flat entry per finished job: scalar fields as strings, lists and dicts as JSON
text. :class:`ResultReader` turns entries back into :class:`ResultRecord` objects, decoding every
field whose text starts with ``[`` or ``{``.

Without a group the reader remembers the last id it returned and continues after it (XREAD).
With a group it reads new entries for its consumer (XREADGROUP ``>``) and the caller acknowledges
them with :meth:`ResultReader.ack` once handled; :meth:`ResultReader.read_pending` re-reads
entries this consumer received but never acknowledged, e.g. after a crash.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from producers.contract import SMS_RESULTS_STREAM


@dataclass(frozen=True, slots=True)
class ResultRecord:
    id: str
    fields: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_fields(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        text = _text(value)
        if text[:1] in ("[", "{"):
            try:
                fields[_text(name)] = json.loads(text)
                continue
            except ValueError:
                pass  # text that merely starts with a bracket stays text
        fields[_text(name)] = text
    return fields


def _records(reply: Any) -> list[ResultRecord]:
    """XREAD/XREADGROUP reply (RESP2 list or RESP3 dict) for one stream → records."""
    if not reply:
        return []
    entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    if entries and isinstance(entries[0], list):
        entries = entries[0]  # RESP3 nests the entry list once more
    return [
        ResultRecord(id=_text(entry_id), fields=decode_fields(raw or {}))
        for entry_id, raw in entries
    ]


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ResultReader:
    def __init__(
        self,
        redis: redis.Redis,
        stream: str = SMS_RESULTS_STREAM,
        *,
        group: str | None = None,
        consumer: str | None = None,
        start_id: str = "0-0",
    ) -> None:
        """``start_id``: where a reader without a group starts ("$" for only new entries)."""
        if consumer is not None and group is None:
            raise ValueError("consumer needs a group")
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or (default_consumer_name() if group else None)
        self.last_id = start_id

    def ensure_group(self, start_id: str = "0") -> bool:
        """Create the consumer group (and the stream) if missing; True if it was created."""
        if self.group is None:
            raise ValueError("this reader has no group")
        try:
            self.redis.xgroup_create(self.stream, self.group, id=start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        return True

    def read(self, count: int = 100, block_ms: int | None = None) -> list[ResultRecord]:
        """Up to ``count`` entries after the last one read (or new for the group's consumer).

        ``block_ms``: wait up to that long for an entry when there is none; None: do not
        wait; 0: wait until one arrives (Redis's BLOCK 0).
        """
        if self.group is None:
            records = _records(
                self.redis.xread({self.stream: self.last_id}, count=count, block=block_ms)
            )
            if records:
                self.last_id = records[-1].id
            return records
        return self._read_group(">", count, block_ms)

    def read_pending(self, count: int = 100) -> list[ResultRecord]:
        """Entries delivered to this consumer and not yet acknowledged."""
        return self._read_group("0", count, None)

    def _read_group(self, start: str, count: int, block_ms: int | None) -> list[ResultRecord]:
        assert self.group is not None and self.consumer is not None
        for attempt in (1, 2):
            try:
                reply = self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
                )
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc) or attempt == 2:
                    raise
                self.ensure_group()
                continue
            return _records(reply)
        return []

    def ack(self, ids: Iterable[str | ResultRecord]) -> int:
        """Acknowledge handled entries (ids or records); returns how many were pending."""
        if self.group is None:
            raise ValueError("this reader has no group")
        entry_ids = [item.id if isinstance(item, ResultRecord) else item for item in ids]
        if not entry_ids:
            return 0
        return int(self.redis.xack(self.stream, self.group, *entry_ids))
