"""The ledger: every effect the simulator let take place, in order.

One entry per accepted SMS recipient, verification code or voice code. Tests count deliveries
here instead of trusting the replies a client saw, which is how "exactly once" is checked when
replies are dropped on the way back.
"""

from __future__ import annotations

import threading
from collections import Counter
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


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []

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
        with self._lock:
            entry = LedgerEntry(
                seq=len(self._entries) + 1,
                kind=kind,
                phone=phone,
                template_id=template_id,
                send_request_id=send_request_id,
                sms_id=sms_id,
                at=at,
                msg_type=msg_type,
                text=text,
            )
            self._entries.append(entry)
            return entry

    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries)

    def count_by_phone(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(entry.phone for entry in self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
