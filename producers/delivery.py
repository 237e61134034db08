"""Delivery receipts as the service keeps them: per recipient, two bytes; per campaign, counts.

SendCloud's SMSHook tells, after a send was accepted, whether each SMS was delivered. The
receipts consumer (``worker.receipts``) turns each (smsId, event) into one record on
``sendcloud:results:sms_delivery`` and keeps each recipient's delivery state here, so that
``get_result``, ``campaign status`` and the campaign report can show it.

``sendcloud:delivery:<job key>`` is a string of two bytes per recipient, at the recipient's
position in the job's phones (a campaign chunk's 2000 numbers: 4 KB):

- byte 1: the events seen (bit 0 delivered, 1 undelivered, 2 rejected), and above them, in
  bits 4-5, the recipient's state, the last of those received (0 pending, 1 delivered,
  2 undelivered, 3 rejected);
- byte 2: SendCloud's statusCode for that state, minus 400 (the SMSHook codes are 410-590),
  or 0.

A campaign's hash ``campaign:<id>`` counts its recipients by state (``delivered``,
``undelivered``, ``rejected``) and ``campaign:<id>:delivery_codes`` counts the failed ones by
statusCode; pending is accepted minus the three.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from producers.contract import KEY_PREFIX

DELIVERY_PREFIX = f"{KEY_PREFIX}delivery:"
#: The recipient states, by their number in the state bits.
STATES = ("pending", "delivered", "undelivered", "rejected")
#: SMSHook event names (``event``, never ``eventType``) and what each records.
EVENTS = {"deliver": "delivered", "delivererror": "undelivered", "workererror": "rejected",
          "reply": "reply"}  # fmt: skip
CODE_BASE = 400

_CHUNK = re.compile(r"campaign:([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(?:g\d+:)?(\d+)")


def delivery_key(job_key: str) -> str:
    return DELIVERY_PREFIX + job_key


def codes_key(campaign_meta: str) -> str:
    return campaign_meta + ":delivery_codes"


def chunk_of(job_key: str) -> tuple[str, int] | None:
    """(campaign id, chunk index) of a campaign chunk's job key; None for any other job."""
    match = _CHUNK.fullmatch(job_key)
    return None if match is None else (match.group(1), int(match.group(2)))


@dataclass(frozen=True)
class Delivery:
    state: str  # pending | delivered | undelivered | rejected
    status_code: int | None  # SendCloud's SMSHook code of a failed state


def decode(raw: bytes | None, count: int) -> list[Delivery]:
    """The delivery state of each of a job's ``count`` recipients."""
    raw = raw or b""
    out = []
    for position in range(count):
        pair = raw[2 * position: 2 * position + 2]
        if len(pair) < 2:
            out.append(Delivery("pending", None))
            continue
        state = STATES[(pair[0] >> 4) & 3]
        out.append(Delivery(state, CODE_BASE + pair[1] if pair[1] else None))
    return out


def deliveries(client: redis.Redis, job_key: str, count: int) -> list[Delivery]:
    return decode(client.get(delivery_key(job_key)), count)  # type: ignore[arg-type]


def chunk_deliveries(
    client: redis.Redis, keys: Sequence[str], counts: Sequence[int]
) -> list[list[Delivery]]:
    """Several jobs' delivery states in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(delivery_key(key))
    return [decode(raw, n) for raw, n in zip(pipe.execute(), counts, strict=True)]
