"""One SMSHook event in, at most one delivery record out: matching and the exactly-once write.

An event names an smsId; the smsId index (``producers.sms_index``) gives the job that sent it
and the recipient's position in it. :data:`_RECORD_LUA` then, in one script, decides whether
this (smsId, event) was recorded before, and if not writes the record, the recipient's state
(``producers.delivery``) and the campaign's counts together. So a duplicate, a replay or a
retry of a hook, or the same inbox entry handled twice after a consumer died, adds nothing.

- ``delivered`` / ``undelivered`` / ``rejected``: one record per (smsId, event), remembered in
  the recipient's seen bits. A ``delivered`` after an ``undelivered`` is its own record, and
  the recipient's state is whichever came last.
- ``reply``: one record per (smsId, reply time, text), remembered by a digest key for the
  receipt window: a number may reply more than once.
- an smsId the index does not know (yet: its job's result may still be on its way) is left
  for :attr:`Matcher.match_wait` seconds after it was received, then recorded *unmatched*
  (``key`` empty), remembered by a digest key so that a later copy adds nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from producers.campaign import campaign_key
from producers.contract import KEY_PREFIX, SMS_DELIVERY_STREAM
from producers.delivery import CODE_BASE, EVENTS, chunk_of, codes_key, delivery_key
from producers.sms_index import SmsIndex
from worker.jobs.policy import SHANGHAI
from worker.jobs.results import flatten, iso
from worker.sendcloud.codes import HOOK_CODES

ONCE_PREFIX = f"{KEY_PREFIX}receipts:once:"
_STATE_NUMBERS = {"delivered": 1, "undelivered": 2, "rejected": 3}

# KEYS: delivery key ('' when unmatched), stream, campaign hash ('' when none), its codes hash,
# once-key. ARGV: mode, position, state number (1-3; 0 for a reply), code - 400 (0 for none),
# ttl of the delivery key and once-key, stream maxlen, then the record's field/value pairs.
# mode "state": a matched delivered/undelivered/rejected, remembered in the recipient's bits
# (and refused if the same event was recorded unmatched: the once-key exists); mode "once":
# a reply or an unmatched event, remembered by the once-key.
_RECORD_LUA = """
local mode, state, code = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
if mode == 'once' then
    if not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ttl) then return false end
else
    if redis.call('EXISTS', KEYS[5]) == 1 then return false end
    local at = tonumber(ARGV[2]) * 2
    local pair = redis.call('GETRANGE', KEYS[1], at, at + 1)
    local seen, old_code = 0, 0
    if #pair == 2 then seen, old_code = string.byte(pair, 1), string.byte(pair, 2) end
    local bit = 2 ^ (state - 1)
    if math.floor(seen / bit) % 2 == 1 then return false end
    local old = math.floor(seen / 16) % 4
    local flags = seen % 16 + bit
    local fresh = redis.call('EXISTS', KEYS[1]) == 0
    redis.call('SETRANGE', KEYS[1], at, string.char(flags + state * 16, code))
    local meta = KEYS[3]
    if meta ~= '' and redis.call('EXISTS', meta) == 1 then
        local names = {'delivered', 'undelivered', 'rejected'}
        if fresh then ttl = tonumber(redis.call('HGET', meta, 'retention') or ttl) end
        redis.call('HINCRBY', meta, names[state], 1)
        if old > 0 then redis.call('HINCRBY', meta, names[old], -1) end
        if old_code > 0 then redis.call('HINCRBY', KEYS[4], old_code + 400, -1) end
        if code > 0 then redis.call('HINCRBY', KEYS[4], code + 400, 1) end
        if redis.call('TTL', KEYS[4]) < 0 then
            redis.call('EXPIRE', KEYS[4], math.max(1, redis.call('TTL', meta)))
        end
    end
    if fresh then redis.call('EXPIRE', KEYS[1], ttl) end
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(fields))
"""


def hook_reason(code: int | None) -> str:
    """The English meaning of an SMSHook statusCode (the docs' table), "" for none."""
    if code is None:
        return ""
    entry = HOOK_CODES.get(code)
    return entry.meaning if entry is not None else "undocumented SMSHook statusCode"


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _message(event: Mapping[str, Any]) -> str:
    if event.get("event") == "reply":
        return str(event.get("replyContent") or "")
    encoded = event.get("encodeMessage")
    if encoded:
        try:
            return base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            pass  # SendCloud's plain message below is the same text
    return str(event.get("message") or "")


def milliseconds(value: Any) -> int | None:
    """A SendCloud millisecond timestamp; None if absent, unreadable or not positive."""
    ms = _int(value)
    return ms if ms is not None and ms > 0 else None


def shanghai_iso(value: Any, timespec: str = "milliseconds") -> str:
    """SendCloud's millisecond timestamp as ISO 8601 in China's time (+08:00); "" if unreadable."""
    ms = milliseconds(value)
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, SHANGHAI).isoformat(timespec=timespec)


@dataclass(frozen=True)
class Outcome:
    status: str  # recorded | duplicate | waiting | ignored
    entry: str | None = None
    key: str = ""  # the matched job's key, "" when unmatched


class Matcher:
    """Matches SMSHook events to their jobs and writes each (smsId, event) once."""

    def __init__(
        self, client: redis.Redis, *, window: int, match_wait: float, maxlen: int,
        index: SmsIndex | None = None,
    ) -> None:
        self.client = client
        self.window = window
        self.match_wait = match_wait
        self.maxlen = maxlen
        self.index = index or SmsIndex(client, window)
        self._record = client.register_script(_RECORD_LUA)

    def handle(self, event: Mapping[str, Any], received_at_ms: int, now: float) -> Outcome:
        """``now``: Redis's time (s), which decides when an unknown smsId has waited enough."""
        name = EVENTS.get(str(event.get("event") or ""))
        sms_id = str(event.get("smsId") or "")
        if name is None or not sms_id:
            return Outcome("ignored")  # request events, and events this service has no use for
        hit = self.index.find(sms_id, now)
        if hit is None and now * 1000 - received_at_ms < self.match_wait * 1000:
            return Outcome("waiting")
        code = _int(event.get("statusCode")) if name in ("undelivered", "rejected") else None
        chunk = chunk_of(hit.key) if hit is not None else None
        key = hit.key if hit is not None else ""
        record: dict[str, Any] = {
            "kind": "delivery",
            "key": key,
            "sms_id": sms_id,
            "phone": str(event.get("phone") or ""),
            "event": name,
            "status_code": code,
            "reason": hook_reason(code),
            "message": _message(event),
            "campaign_id": chunk[0] if chunk else "",
            "chunk_index": chunk[1] if chunk else None,
            "at": shanghai_iso(event.get("timestamp")),
            "received_at": iso(received_at_ms / 1000),
        }
        digest = hashlib.blake2b(sms_id.encode(), digest_size=12).hexdigest()
        if name == "reply":
            said = f"{event.get('replyTime') or ''}\n{record['message']}"
            digest += ":" + hashlib.blake2b(said.encode(), digest_size=8).hexdigest()
        once = f"{ONCE_PREFIX}{digest}:{name}"
        meta = campaign_key(chunk[0]) if chunk else ""
        stored = code - CODE_BASE if code is not None and CODE_BASE < code < CODE_BASE + 256 else 0
        if hit is None or name == "reply":
            keys = ["", SMS_DELIVERY_STREAM, "", "", once]
            args: list[Any] = ["once", 0, 0, 0, self.window]
        else:
            keys = [delivery_key(hit.key), SMS_DELIVERY_STREAM, meta,
                    codes_key(meta) if meta else "", once]
            args = ["state", hit.position, _STATE_NUMBERS[name], stored, self.window]
        args.append(self.maxlen)
        for field, value in flatten(record).items():
            args += [field, value]
        entry = self._record(keys=keys, args=args)
        if entry is None:
            return Outcome("duplicate", key=key)
        return Outcome("recorded", entry.decode() if isinstance(entry, bytes) else str(entry),
                       key)
