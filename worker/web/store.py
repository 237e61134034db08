"""The one Redis call of a hook: window check, token dedupe and append, in one Lua script.

A script, so the window is judged by Redis's clock (the one clock the service decides by) and
so a hook is appended and its token marked seen together: the append comes first, and the mark
only once it has succeeded, so a post that fails half-way is stored when SendCloud retries it,
and one that was stored is never stored again. The token is kept only as a digest: the dedupe
key proves "seen" without holding a secret.

Hooks that arrive while a call is in flight wait for it and then go together, in one call of
the script that handles each of them in turn: a lone hook goes at once, and under load the round
trip and redis-py's per-call work are shared. The call is atomic, so a batch is judged at one
instant of Redis's clock. A hook whose append fails (a wrong type at its inbox key, Redis out of
memory) gets that error alone, and the others of the batch their own outcomes: one broken
inbox does not hold up the other channel's hooks. Redis out of reach is every waiting hook's
error (503). A reply lost after the script ran (a timeout; the client tries once more) finds
the hooks stored and answers them ``duplicate``: each is appended once, whatever is retried.
The script is run by SHA and loaded on NOSCRIPT (a restarted or flushed Redis), as redis-py's
``Script`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from worker.web.inbox import INBOXES, Channel

#: ``<prefix><channel>:<digest of the token>``, kept for twice the window.
SEEN_PREFIX = "sendcloud:hooks:seen:"
#: Most hooks in one script call; more wait for the next (a call holds Redis while it runs).
MAX_BATCH = 256

# KEYS: per hook, its token's seen key and its inbox stream.
# ARGV: the window (ms), the seen keys' lifetime (ms), then per hook its timestamp (ms) and event.
# Returns {now_ms, outcome...}: per hook 1 stored, 0 already seen, -1 timestamp outside the window,
# or the error text of its failed XADD (nothing stored for it, its token not marked).
APPEND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local received = string.format('%d', now)
local window = tonumber(ARGV[1])
local out = {now}
for i = 1, #KEYS / 2 do
  local seen = KEYS[2 * i - 1]
  if math.abs(now - tonumber(ARGV[2 * i + 1])) > window then
    out[i + 1] = -1
  elseif redis.call('EXISTS', seen) == 1 then
    out[i + 1] = 0
  else
    local added = redis.pcall('XADD', KEYS[2 * i], '*', 'event', ARGV[2 * i + 2],
                              'received_at', received)
    if type(added) == 'table' and added.err then
      out[i + 1] = added.err
    else
      redis.call('SET', seen, '1', 'PX', ARGV[2])
      out[i + 1] = 1
    end
  end
end
return out
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


_Call = tuple[tuple[str, str, int, str], "asyncio.Future[tuple[int, int]]"]


class HookStore:
    """Appends verified hooks to their inbox; ``window`` in seconds (``SENDCLOUD_HOOK_WINDOW``)."""

    def __init__(self, client: aioredis.Redis, window: int) -> None:
        self.client = client
        self.window_ms = window * 1000
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def append(self, channel: Channel, token: str, timestamp_ms: int,
                     event: str) -> Appended:
        """Raises redis-py's errors: Redis out of reach (nothing stored by this call), or this
        hook's append refused (``ResponseError``; nothing stored for it)."""
        hook = (seen_key(channel, token), INBOXES[channel], timestamp_ms, event)
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((hook, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        outcome, now_ms = await future
        return Appended(_OUTCOMES[outcome], now_ms)

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    now, *outcomes = await self._call([hook for hook, _ in batch])
                    replies: list[Any] = [
                        ResponseError(_error_text(o)) if isinstance(o, bytes | str)
                        else (int(o), int(now))
                        for o in outcomes
                    ]
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

    async def _call(self, hooks: Sequence[tuple[str, str, int, str]]) -> list[Any]:
        """The script's reply for ``hooks`` (Redis's time, then an outcome per hook); the
        script is loaded and called again if Redis lost it."""
        keys: list[str] = []
        args: list[str | int] = [self.window_ms, 2 * self.window_ms]
        for seen, inbox, timestamp_ms, event in hooks:
            keys += (seen, inbox)
            args += (timestamp_ms, event)
        try:
            reply = await self.client.evalsha(APPEND_SHA, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(APPEND_SCRIPT)
            reply = await self.client.evalsha(APPEND_SHA, len(keys), *keys, *args)
        return list(reply)


def _error_text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
