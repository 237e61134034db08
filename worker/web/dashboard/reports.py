"""Campaign pages' reads: a campaign's progress as the page and its JSON show it, failures by
reason, and the per-recipient report streamed as CSV (never built whole in memory)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from producers import Producer
from producers.campaign import campaign_key
from producers.campaign_csv import campaign_report_rows
from producers.campaign_report import REPORT_HEADER, CampaignStatus

#: Rows written per piece of the streamed response.
ROWS_PER_PIECE = 500


def progress(status: CampaignStatus) -> dict[str, Any]:
    """The campaign's counters, and what its chart and progress bar show."""
    done = status.accepted + status.failed + status.cancelled + status.review
    return {
        **asdict(status),
        "delivery_codes": {str(code): n for code, n in status.delivery_codes.items()},
        "pending": status.pending,
        "delivery_pending": status.delivery_pending,
        "done": done,
        "percent": round(100 * done / status.valid, 1) if status.valid else 0.0,
        # The funnel, in this order (a list: JSON objects may be reordered on the way):
        # every valid number is in exactly one of these.
        "funnel": [
            {"label": label, "value": value} for label, value in (
                ("delivered", status.delivered),
                ("undelivered", status.undelivered),
                ("rejected", status.rejected),
                ("accepted, no receipt yet", status.delivery_pending),
                ("failed", status.failed),
                ("cancelled", status.cancelled),
                ("needs review", status.review),
                ("pending", status.pending),
            )
        ],
    }


def failures_by_reason(producer: Producer, campaign_id: str) -> list[dict[str, Any]]:
    """Chunks that did not go out, by outcome, statusCode and SendCloud's message (most first);
    undelivered and rejected numbers by their receipt's statusCode are in ``delivery_codes``."""
    reasons: Counter[tuple[str, str, str]] = Counter()
    for raw in producer.redis.hvals(f"{campaign_key(campaign_id)}:results"):
        try:
            result = json.loads(raw)
        except ValueError:
            continue
        outcome = str(result.get("outcome", ""))
        if outcome in ("sent", "duplicate", "partial"):
            continue
        reasons[(outcome, str(result.get("status_code", "")), str(result.get("message", "")))] += 1
    return [{"outcome": o, "status_code": c, "message": m, "chunks": n}
            for (o, c, m), n in reasons.most_common()]


def report_csv(producer: Producer, campaign_id: str,
               mask: Callable[[Any], Any]) -> Iterator[str]:
    """The CSV report in pieces; raises CampaignNotFound before the first piece."""
    rows = campaign_report_rows(campaign_id, producer=producer)

    def pieces() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(REPORT_HEADER)
        for n, row in enumerate(rows, start=1):
            writer.writerow(mask(list(row)))
            if n % ROWS_PER_PIECE == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return pieces()
