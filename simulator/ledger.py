"""The ledger: every effect the simulator let take place, in order.

One entry per accepted SMS recipient, verification code or voice code. Tests count deliveries
here instead of trusting the replies a client saw, which is how "exactly once" is checked when
replies are dropped on the way back.

``listener``, when set, is called with each request's :class:`Batch` as it is recorded (the
SMSHook dispatcher keeps a reference to it instead of a copy of its smsIds).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    kind: str  # "sms" | "code" | "voice"
    phone: str
    template_id: int | None
    send_request_id: str | None
    sms_id: str
    at: float  # epoch seconds, simulator clock
    msg_type: int | None = None
    #: The rendered template text, or the code itself for "code" and "voice".
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerEntry:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Batch:
    """The recipients one request delivered to: they share all but the phone and the smsId.

    Kept as two plain lists per request rather than an object per recipient: at millions of
    entries, per-entry objects made every send slower (the cyclic GC walks them all)."""

    first_seq: int
    kind: str
    template_id: int | None
    send_request_id: str | None
    at: float
    msg_type: int | None
    text: str
    phones: list[str]
    sms_ids: list[str]

    def entries(self) -> list[LedgerEntry]:
        return [
            LedgerEntry(seq, self.kind, phone, self.template_id, self.send_request_id, sms_id,
                        self.at, self.msg_type, self.text)
            for seq, phone, sms_id in zip(
                range(self.first_seq, self.first_seq + len(self.phones)), self.phones,
                self.sms_ids, strict=True,
            )
        ]


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[Batch] = []
        self._count = 0
        self.listener: Callable[[Batch], None] | None = None

    def record(
        self,
        *,
        kind: str,
        phone: str,
        sms_id: str,
        at: float,
        template_id: int | None = None,
        send_request_id: str | None = None,
        msg_type: int | None = None,
        text: str = "",
    ) -> LedgerEntry:
        [entry] = self.record_many(
            kind=kind, phones=[phone], sms_ids=[sms_id], at=at, template_id=template_id,
            send_request_id=send_request_id, msg_type=msg_type, text=text,
        )  # fmt: skip
        return entry

    def record_many(
        self,
        *,
        kind: str,
        phones: list[str],
        sms_ids: list[str],
        at: float,
        template_id: int | None = None,
        send_request_id: str | None = None,
        msg_type: int | None = None,
        text: str = "",
    ) -> list[LedgerEntry]:
        """One request's deliveries, in order; returns their entries."""
        with self._lock:
            batch = Batch(self._count + 1, kind, template_id, send_request_id, at, msg_type,
                           text, phones, sms_ids)  # fmt: skip
            self._batches.append(batch)
            self._count += len(phones)
        if self.listener is not None:
            self.listener(batch)
        return batch.entries() if len(phones) == 1 else []

    def find(self, sms_id: str) -> LedgerEntry | None:
        """The entry of one smsId (a scan: for tests and hand-made events)."""
        with self._lock:
            batches = list(self._batches)
        for batch in batches:
            if sms_id in batch.sms_ids:
                return batch.entries()[batch.sms_ids.index(sms_id)]
        return None

    def entries(self, since: int = 0) -> list[LedgerEntry]:
        """Every entry (``since``: only those with a larger seq), in order."""
        with self._lock:
            batches = list(self._batches)
        found: list[LedgerEntry] = []
        for batch in batches:
            if batch.first_seq + len(batch.phones) - 1 > since:
                found += [e for e in batch.entries() if e.seq > since]
        return found

    def count(self, kind: str | None = None) -> int:
        """Entries of one kind ("sms", "code", "voice"), or all."""
        with self._lock:
            if kind is None:
                return self._count
            return sum(len(b.phones) for b in self._batches if b.kind == kind)

    def count_by_phone(self) -> dict[str, int]:
        with self._lock:
            batches = list(self._batches)
        counts: Counter[str] = Counter()
        for batch in batches:
            counts.update(batch.phones)
        return dict(counts)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._count = 0
