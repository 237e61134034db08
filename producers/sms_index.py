"""The smsId index: from an smsId in a delivery receipt back to the job that sent it.

SendCloud's receipts (SMSHook events) name an smsId and a phone, nothing of ours. Every job that
SendCloud accepted writes, in its finish script (so once, and atomically with its final state),
one index entry per accepted recipient: which job sent it, and the recipient's position in that
job's phones. An smsId is treated as an opaque string: only its 8-byte BLAKE2b digest is kept.

Layout, per UTC day of Redis's clock (the day the job finished), all keys of a day expiring
together after ``SENDCLOUD_RECEIPT_WINDOW``:

``sendcloud:smsidx:<day>:<shard>``  a string of 14-byte records appended one after another:
                                    digest (8) + ref (4, big-endian) + position (2, big-endian);
                                    the shard is the digest's first 12 bits
``sendcloud:smsidx:<day>:refs``     hash: ref (decimal) -> job key; field ``n`` counts refs

So a number costs 14 bytes (a 2000-number campaign chunk adds one ref), where a hash field per
smsId would cost about 100. A lookup scans one shard string per day of the window inside Redis
(``string.find`` on the digest, records aligned at 14 bytes): at 10M numbers a day a shard holds
about 34 KB. Two smsIds sharing a digest (odds about 1 in 10^5 across 10^7 numbers) would
resolve to the first; the consumer checks the phone against the job's before it trusts a match.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from producers.contract import KEY_PREFIX

INDEX_PREFIX = f"{KEY_PREFIX}smsidx:"
RECORD_SIZE = 14
SHARD_BITS = 12
#: Default for SENDCLOUD_RECEIPT_WINDOW: how long after its send a receipt is still matched.
DEFAULT_WINDOW = 3 * 86400
DAY = 86400


def digest(sms_id: str) -> bytes:
    return hashlib.blake2b(sms_id.encode(), digest_size=8).digest()


def pack(sms_ids: Sequence[str | None]) -> bytes:
    """The finish script's argument: digest (8) + position (2) for each smsId a job got back,
    position being the recipient's index in the job's phones (None: not accepted, skipped)."""
    return b"".join(
        digest(sms_id) + struct.pack(">H", position)
        for position, sms_id in enumerate(sms_ids) if sms_id
    )


# A Lua function for the finish script. blob: pack()'s output; key: the job key; now: Redis's
# time (seconds); ttl: the window plus a day, so a day's keys outlive its last entry's window.
INDEX_LUA = f"""
local function sendcloud_index(blob, key, now, ttl)
    if blob == nil or #blob == 0 then return end
    local base = '{INDEX_PREFIX}' .. math.floor(now / {DAY}) .. ':'
    local refs = base .. 'refs'
    local ref = redis.call('HINCRBY', refs, 'n', 1)
    redis.call('HSET', refs, ref, key)
    if ref == 1 then redis.call('EXPIRE', refs, ttl) end
    -- Byte arithmetic, not struct: the embedded demo's Lua has no struct library.
    local r4 = string.char(math.floor(ref / 16777216) % 256, math.floor(ref / 65536) % 256,
                           math.floor(ref / 256) % 256, ref % 256)
    for off = 1, #blob - 9, 10 do
        local d = string.sub(blob, off, off + 7)
        local shard = math.floor((string.byte(d, 1) * 256 + string.byte(d, 2)) / 16)
        local entry = d .. r4 .. string.sub(blob, off + 8, off + 9)
        local size = redis.call('APPEND', base .. shard, entry)
        if size == {RECORD_SIZE} then redis.call('EXPIRE', base .. shard, ttl) end
    end
end
"""

# KEYS: none (the keys are found by day, as the finish script wrote them). ARGV: digest,
# days back to search, now (empty: Redis's TIME). Newest day first.
_LOOKUP_LUA = f"""
local d = ARGV[1]
local now = tonumber(ARGV[3])
if now == nil then local t = redis.call('TIME'); now = tonumber(t[1]) end
local today = math.floor(now / {DAY})
local shard = math.floor((string.byte(d, 1) * 256 + string.byte(d, 2)) / 16)
for day = today, today - tonumber(ARGV[2]), -1 do
    local base = '{INDEX_PREFIX}' .. day .. ':'
    local s = redis.call('GET', base .. shard)
    if s then
        local at = 1
        while true do
            local i = string.find(s, d, at, true)
            if not i then break end
            if (i - 1) % {RECORD_SIZE} == 0 then
                local b1, b2, b3, b4, p1, p2 = string.byte(s, i + 8, i + 13)
                local ref = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
                local position = p1 * 256 + p2
                local key = redis.call('HGET', base .. 'refs', ref)
                if key then return {{key, position}} end
            end
            at = i + 1
        end
    end
end
return false
"""


@dataclass(frozen=True)
class IndexHit:
    key: str  # the job that sent it
    position: int  # the recipient's index in that job's phones


class SmsIndex:
    """Lookups in the smsId index (the finish script writes it; see :data:`INDEX_LUA`)."""

    def __init__(self, client: redis.Redis, window: int = DEFAULT_WINDOW) -> None:
        self.client = client
        # A send up to `window` ago finished at most this many days before today.
        self.days = -(-window // DAY)
        self._lookup = client.register_script(_LOOKUP_LUA)

    def find(self, sms_id: str, now: float | None = None) -> IndexHit | None:
        reply = self._lookup(args=[digest(sms_id), self.days, "" if now is None else int(now)])
        if not reply:
            return None
        key, position = reply
        return IndexHit(key.decode() if isinstance(key, bytes) else str(key), int(position))
