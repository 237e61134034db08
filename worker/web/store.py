"""The one Redis call of a hook: window check, token dedupe and append, in one Lua script.

One script, so a hook is either appended with its token marked seen or neither (a post that
fails half-way is retried by SendCloud and stored then), and so the window is judged by
Redis's clock, the one clock the service decides by. The token is kept only as a digest: the
dedupe key proves "seen" without holding a secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from worker.web.inbox import INBOXES, Channel

#: ``<prefix><channel>:<digest of the token>``, kept for twice the window.
SEEN_PREFIX = "sendcloud:hooks:seen:"

# KEYS: the token's seen key, the inbox stream.
# ARGV: the hook's timestamp (ms), the window (ms), the seen key's lifetime (ms), the event.
# Returns {outcome, now_ms}: 1 stored, 0 already seen, -1 timestamp outside the window.
APPEND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if math.abs(now - tonumber(ARGV[1])) > tonumber(ARGV[2]) then
  return {-1, now}
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return {0, now}
end
redis.call('XADD', KEYS[2], '*', 'event', ARGV[4], 'received_at', string.format('%d', now))
return {1, now}
"""

Outcome = Literal["stored", "duplicate", "outside_window"]
_OUTCOMES: dict[int, Outcome] = {1: "stored", 0: "duplicate", -1: "outside_window"}


@dataclass(frozen=True)
class Appended:
    outcome: Outcome
    #: Redis's TIME when the script ran, in milliseconds.
    now_ms: int


def seen_key(channel: Channel, token: str) -> str:
    return f"{SEEN_PREFIX}{channel}:{hashlib.blake2b(token.encode(), digest_size=16).hexdigest()}"


class HookStore:
    """Appends verified hooks to their inbox; ``window`` in seconds (``SENDCLOUD_HOOK_WINDOW``)."""

    def __init__(self, client: aioredis.Redis, window: int) -> None:
        self.client = client
        self.window_ms = window * 1000
        # EVALSHA, loading the script on NOSCRIPT (a restarted or flushed Redis).
        self._append = client.register_script(APPEND_SCRIPT)

    async def append(self, channel: Channel, token: str, timestamp_ms: int,
                     event: str) -> Appended:
        """Raises redis-py's errors when Redis cannot be reached; nothing is stored then."""
        outcome, now_ms = await self._append(
            keys=[seen_key(channel, token), INBOXES[channel]],
            args=[timestamp_ms, self.window_ms, 2 * self.window_ms, event],
        )
        return Appended(_OUTCOMES[int(outcome)], int(now_ms))
