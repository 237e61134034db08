"""The dead-letter page's reads and actions, through :class:`DeadLetterQueues` (the same code
``sendcloud-jobs dlq`` runs), shaped for the page and its JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.broker.dead_letter_queues import DeadLetterQueues
from worker.broker.dead_letters import DeadLetter

#: Letters shown per queue: the page is for looking; thousands are handled with replay all.
SHOWN_PER_QUEUE = 200


def letter_view(letter: DeadLetter) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "queue": letter.queue,
        "actor": letter.actor,
        "key": letter.key,
        "job_state": letter.job_state,
        "replayable": letter.message is not None and not letter.job_final,
        "dead_at": datetime.fromtimestamp(letter.dead_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "retries": letter.retries,
        "reason": letter.reason,
    }


def list_letters(queues: DeadLetterQueues) -> list[dict[str, Any]]:
    return [letter_view(x) for x in queues.list(limit=SHOWN_PER_QUEUE)]


def replay(queues: DeadLetterQueues, message_id: str | None) -> str:
    """Replay one letter (or all); the sentence the page shows about what happened."""
    report = queues.replay(ids=[message_id] if message_id else None)
    kept = ""
    if report.final:
        kept = (f"; {len(report.final)} kept: their job already ended, so a replay would not "
                "run it (enqueue the job again under a new key, then purge the letter)")
    return f"{len(report.replayed)} message(s) replayed{kept}"


def purge(queues: DeadLetterQueues, message_id: str | None) -> str:
    removed = queues.purge(ids=[message_id] if message_id else None)
    return f"{removed} dead letter(s) purged"
