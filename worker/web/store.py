"""The one Redis call of a hook: window check, token dedupe and append, in one Lua script.

One script, so a hook is either appended with its token marked seen or neither (a post that
fails half-way is retried by SendCloud and stored then), and so the window is judged by
Redis's clock, the one clock the service decides by. The token is kept only as a digest: the
dedupe key proves "seen" without holding a secret.

Hooks that arrive while a call is in flight wait for it and then go together, one EVALSHA
each in one pipeline: a lone hook goes at once, and under load the round trip and redis-py's
per-call work are shared (a pipelined script costs a fifth of the CPU of a call of its own).
Each script still runs alone and atomically. The script is run by SHA and loaded on NOSCRIPT
(a restarted or flushed Redis), as redis-py's ``Script`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

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
APPEND_SHA = hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest()

Outcome = Literal["stored", "duplicate", "outside_window"]
_OUTCOMES: dict[int, Outcome] = {1: "stored", 0: "duplicate", -1: "outside_window"}


@dataclass(frozen=True)
class Appended:
    outcome: Outcome
    #: Redis's TIME when the script ran, in milliseconds.
    now_ms: int


def seen_key(channel: Channel, token: str) -> str:
    return f"{SEEN_PREFIX}{channel}:{hashlib.blake2b(token.encode(), digest_size=16).hexdigest()}"


_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class HookStore:
    """Appends verified hooks to their inbox; ``window`` in seconds (``SENDCLOUD_HOOK_WINDOW``)."""

    def __init__(self, client: aioredis.Redis, window: int) -> None:
        self.client = client
        self.window_ms = window * 1000
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def append(self, channel: Channel, token: str, timestamp_ms: int,
                     event: str) -> Appended:
        """Raises redis-py's errors when Redis cannot be reached; nothing is stored then."""
        args = (seen_key(channel, token), INBOXES[channel], timestamp_ms, self.window_ms,
                2 * self.window_ms, event)  # fmt: skip
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        outcome, now_ms = await future
        return Appended(_OUTCOMES[int(outcome)], int(now_ms))

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    replies = await self._evalsha([args for args, _ in batch])
                except Exception as exc:  # Redis out of reach: every hook of the batch gets it
                    replies = [exc] * len(batch)
                except BaseException:  # cancelled: the server is stopping
                    for _, future in [*batch, *self._waiting]:
                        future.cancel()
                    self._waiting = []
                    raise
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its request went away
                        continue
                    if isinstance(reply, BaseException):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sender = None

    async def _evalsha(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each call's reply (or its error), in order; scripts Redis lost are loaded and rerun."""
        replies = await self._pipeline(calls)
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            await self.client.script_load(APPEND_SCRIPT)
            for i, reply in zip(lost, await self._pipeline([calls[i] for i in lost]),
                                strict=True):  # fmt: skip
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command("EVALSHA", APPEND_SHA, 2, *args)
        return list(await pipe.execute(raise_on_error=False))
