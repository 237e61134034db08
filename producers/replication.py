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
import socket
import struct
import sys
import threading
import time
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
    ``max_connections`` and closes with its thread). An idle one is checked before use as the
    pool checks its connections (one the server closed is reconnected, not reported); one in
    steady use is not, which saves a poll a call; a dropped one is retried with the client's
    own retry policy, as the client's commands are. Its socket's timeout is the kernel's
    (:func:`_kernel_timed`). A forked child
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

    def _pinned(self) -> _Pinned:
        pinned: _Pinned | None = getattr(self._local, "pinned", None)
        if pinned is None or pinned.generation != _fork_generation:
            pool = self.client.connection_pool
            connection = _kernel_timed(pool.connection_class)(**pool.connection_kwargs)
            pinned = self._local.pinned = _Pinned(connection)
        return pinned

    def _connection(self) -> AbstractConnection:
        return self._pinned().connection

    def _execute(self, commands: list[Command]) -> list[Any]:
        pinned = self._pinned()
        connection = pinned.connection

        def attempt() -> list[Any]:
            pinned.ready()
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:  # every reply is read, errors too, so the next call starts clean
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            pinned.clean = True
            pinned.used = time.monotonic()
            for reply in replies:  # the first error, in order: a lost script is replies[0]
                if isinstance(reply, ResponseError):
                    raise reply
            return replies

        retry = connection.retry
        if retry is None:
            return attempt()
        replies: list[Any] = retry.call_with_retry(attempt, lambda _: connection.disconnect())
        return replies


#: A pinned connection used more recently than this is not checked before its next call: a
#: server closes an idle client (its ``timeout`` setting) only after whole seconds, and a
#: connection dropped in between fails its call, which the client's retry policy repeats on a
#: new one, as it would after a check.
CHECK_IDLE_AFTER = 1.0


class _Pinned:
    """A thread's connection, and what is known of it without asking the kernel."""

    __slots__ = ("clean", "connection", "generation", "used")

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.generation = _fork_generation
        #: False between a call's send and its last reply: a call stopped there (an
        #: exception raised into the thread, such as Dramatiq's time limit) left its replies
        #: unread, and the next call would read them as its own.
        self.clean = True
        self.used = float("-inf")

    def ready(self) -> None:
        """Connected, with nothing unread. A busy connection is trusted (see
        :data:`CHECK_IDLE_AFTER`); an idle one is checked as the pool checks its connections.
        Marks the connection unclean until the caller has read its call's last reply."""
        connection = self.connection
        # Before anything can connect: a reconnect's handshake (HELLO, CLIENT SETINFO, SELECT)
        # can be interrupted between a send and its reply too, and would leave that reply, or a
        # connection on the wrong database, to the next call.
        was_clean, self.clean = self.clean, False
        if not was_clean:
            connection.disconnect()
        elif time.monotonic() - self.used >= CHECK_IDLE_AFTER:
            sock = getattr(connection, _KERNEL_TIMED_SOCKET, None)
            if sock is None:
                _ready(connection)  # not connected yet, or not kernel-timed: the pool's check
            elif not _idle_and_empty(_kernel_timed_again(sock)):
                connection.disconnect()
        connection.connect()  # a no-op when connected; a failure is the caller's to retry
        sock = getattr(connection, _KERNEL_TIMED_SOCKET, None)
        if sock is not None:
            _kernel_timed_again(sock)


#: Where a connection made by :func:`_kernel_timed` keeps the socket it tuned.
_KERNEL_TIMED_SOCKET = "kernel_timed_socket"
_TIMEVAL = struct.Struct("@ll")
_kernel_timed_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _kernel_timed(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls`` whose sockets leave their timeout to the kernel (SO_RCVTIMEO, SO_SNDTIMEO)
    instead of to Python.

    CPython polls a socket that has a timeout before every send and every receive, and each
    poll lets go of the GIL; with a worker's eight threads each let-go costs two context
    switches, which were the larger part of a script call's CPU. A blocking socket with the
    kernel's timeouts makes one system call a send or receive, with the same bound: a stalled
    server fails the call with a ``redis.ConnectionError`` once the timeout passes. Linux only,
    plain TCP and Unix sockets only (TLS keeps Python's timeout).
    """
    made = _kernel_timed_classes.get(cls)
    if made is not None:
        return made

    def _connect(self: AbstractConnection) -> socket.socket:
        sock: socket.socket = super(made_cls, self)._connect()  # type: ignore[misc]
        tuned = sys.platform == "linux" and type(sock) is socket.socket and _kernel_timeouts(sock)
        setattr(self, _KERNEL_TIMED_SOCKET, sock if tuned else None)
        return sock

    made_cls: type[AbstractConnection] = type(f"KernelTimed{cls.__name__}", (cls,),
                                              {"_connect": _connect})
    _kernel_timed_classes[cls] = made_cls
    return made_cls


def _kernel_timeouts(sock: socket.socket) -> bool:
    """Move ``sock``'s timeout (if any) from Python to the kernel. True when the socket polls
    nothing now (a blocking socket never did); False when its timeout stays Python's: zero, or
    a platform whose ``struct timeval`` is not two longs (setsockopt refuses it)."""
    timeout = sock.gettimeout()
    if timeout is None or timeout <= 0:
        return timeout is None
    seconds = int(timeout)
    micros = int((timeout - seconds) * 1_000_000)
    timeval = _TIMEVAL.pack(seconds, micros if seconds or micros else 1)  # 0 would mean never
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        return False
    sock.settimeout(None)
    return True


def _kernel_timed_again(sock: socket.socket) -> socket.socket:
    """``sock`` with its timeout moved back to the kernel if redis-py gave it a Python one again
    (a read with a timeout of its own, a maintenance notification relaxing the timeout): an
    attribute read when it did not. A closed socket is left as it is."""
    if sock.gettimeout() is not None and sock.fileno() != -1:
        _kernel_timeouts(sock)
    return sock


def _idle_and_empty(sock: socket.socket) -> bool:
    """Nothing to read on ``sock`` and no end of stream: a server that closed the connection
    shows as readable. Peeks without blocking and without changing the socket's mode."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


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
