"""Writes that decide whether an SMS may go out, made to survive a failover: ``WAIT``.

Redis replicates asynchronously: a write the primary acknowledged may be missing on the replica
that Sentinel promotes when the primary dies. For the writes that decide whether an SMS may go
out (the producer's reservation, the worker's claim and finish), the script is followed by
``WAIT <replicas> <timeout>`` in the same pipeline, one round trip, and the caller learns how
many replicas had the write when WAIT answered. ``WAIT`` is not consensus: a write that reached
too few replicas is still on the primary; callers treat it as not decided (see
:mod:`producers.idempotency` and ``worker.jobs.idempotency``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.commands.core import Script
from redis.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

T = TypeVar("T")


class NotReplicated(Exception):
    """A decisive write reached fewer replicas than ``SENDCLOUD_REDIS_WAIT_REPLICAS`` in time.

    It is on the primary, and may be lost if the primary fails now; nothing was done on its
    strength. The caller may retry (the write is idempotent).
    """

    def __init__(self, what: str, acknowledged: int, wanted: int) -> None:
        self.what = what
        self.acknowledged = acknowledged
        self.wanted = wanted
        super().__init__(
            f"{what} reached {acknowledged} of the {wanted} replica(s) SENDCLOUD_REDIS_WAIT_"
            "REPLICAS asks for within SENDCLOUD_REDIS_WAIT_TIMEOUT_MS; nothing was done on its "
            "strength, retry"
        )


def run_replicated(
    client: redis.Redis,
    script: Script,
    keys: Sequence[Any],
    args: Sequence[Any],
    *,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """Run ``script`` and, with ``replicas`` > 0, ``WAIT`` in the same round trip.

    Returns the script's reply and how many replicas acknowledged the write (``replicas`` when
    none are asked for). Script errors raise as from ``script(...)``.
    """
    if replicas <= 0:
        return script(keys=list(keys), args=list(args), client=client), replicas

    def once() -> tuple[Any, int]:
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        reply, acknowledged = pipe.execute()
        return reply, int(acknowledged)

    return _loading(script, once, client.script_load)


def _loading(script: Script, call: Callable[[], T], load: Callable[[Any], Any]) -> T:
    """``call()``, and once more after ``load(script.script)`` if Redis has lost the script (a
    new primary, a restart or SCRIPT FLUSH empties its cache)."""
    for _ in range(2):
        try:
            return call()
        except NoScriptError:
            load(script.script)
    raise NoScriptError("the script vanished from Redis's cache twice in a row")


Command = tuple[Any, ...]


class PinnedScripts:
    """:func:`run_replicated`'s semantics on a connection each thread keeps.

    Borrowing a pooled connection for every call (the pool's lock, its liveness poll and its
    connection-count bookkeeping) and returning it cost a third of the CPU of a script call,
    and a worker makes two such calls a job. Here each thread keeps a connection of its own,
    made with the client pool's class and settings but outside the pool (it counts against no
    ``max_connections`` and closes with its thread). Before each use it is checked as the pool
    checks its connections (one the server closed is reconnected, not reported); a dropped one
    is retried with the client's own retry policy, as the client's commands are. A forked child
    makes fresh connections. Under Sentinel a connection asks the sentinels for the master each
    time it connects, so a call that too few replicas acknowledged drops its connection: the
    next one finds the master again, where a pooled connection would have been checked on
    its return to the pool.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = threading.local()

    def run(
        self,
        script: Script,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        replicas: int = 0,
        timeout_ms: int = 0,
    ) -> tuple[Any, int]:
        """Run ``script``, and ``WAIT`` after it in the same round trip when ``replicas`` > 0:
        its reply and how many replicas acknowledged (``replicas`` when none are asked for)."""
        commands: list[Command] = [("EVALSHA", script.sha, len(keys), *keys, *args)]
        if replicas > 0:
            commands.append(("WAIT", replicas, timeout_ms))
        replies = _loading(script, lambda: self._execute(commands),
                           lambda text: self._execute([("SCRIPT", "LOAD", text)]))
        if replicas <= 0:
            return replies[0], replicas
        acknowledged = int(replies[1])
        if acknowledged < replicas:
            self._connection().disconnect()
        return replies[0], acknowledged

    def _connection(self) -> AbstractConnection:
        local = self._local
        if getattr(local, "generation", None) != _fork_generation:
            pool = self.client.connection_pool
            local.connection = pool.connection_class(**pool.connection_kwargs)
            local.generation = _fork_generation
        connection: AbstractConnection = local.connection
        return connection

    def _execute(self, commands: list[Command]) -> list[Any]:
        connection = self._connection()

        def attempt() -> list[Any]:
            _ready(connection)
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:  # every reply is read, errors too, so the next call starts clean
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            for reply in replies:  # the first error, in order: a lost script is replies[0]
                if isinstance(reply, ResponseError):
                    raise reply
            return replies

        retry = connection.retry
        if retry is None:
            return attempt()
        replies: list[Any] = retry.call_with_retry(attempt, lambda _: connection.disconnect())
        return replies


#: Counts forks: a child's threads take connections of their own (os.getpid() is a syscall).
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


def _ready(connection: AbstractConnection) -> None:
    """What ``ConnectionPool.get_connection`` checks: connected, and nothing unread (a server
    that closed the connection shows as readable)."""
    connection.connect()  # a no-op when connected; a failure is the caller's to retry
    try:
        if not connection.can_read():
            return
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        pass
    connection.disconnect()
    connection.connect()
    if connection.can_read():
        raise redis.ConnectionError("Connection not ready")
