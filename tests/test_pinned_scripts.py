"""PinnedScripts: scripts on a connection each thread keeps, against a real redis-server.

What the pool did for every call must still hold: a connection the server closed is replaced
without an error, a script missing from the cache is loaded, an error reply leaves the
connection usable, and threads do not share a connection. The socket's timeout is the
kernel's, and still bounds a call to a server that does not answer.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.common import wait_for
from producers import replication
from producers.replication import PinnedScripts, run_replicated

SCRIPT = "redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"


def _name(scripts: PinnedScripts, name: str) -> None:
    """Name the calling thread's pinned connection, so CLIENT LIST can find it (a script may
    not run CLIENT)."""
    connection = scripts._connection()
    connection.send_command("CLIENT", "SETNAME", name)
    assert connection.read_response() in (b"OK", "OK")


def _ids(client: redis.Redis, prefix: str) -> list[int]:
    return [int(c["id"]) for c in client.client_list() if c["name"].startswith(prefix)]


def test_runs_a_script_and_keeps_one_connection(redis_client: redis.Redis) -> None:
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    _name(scripts, "pinned-one")
    before = _ids(redis_client, "pinned-one")
    replies = [scripts.run(script, ["pinned:n"], [2]) for _ in range(5)]
    assert [int(reply) for reply, _ in replies] == [2, 4, 6, 8, 10]
    assert {acknowledged for _, acknowledged in replies} == {0}
    assert _ids(redis_client, "pinned-one") == before and len(before) == 1


def test_an_idle_connection_the_server_closed_is_replaced_without_an_error(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle connection is checked before use as the pool checks its connections: no retry
    policy is needed."""
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    scripts = PinnedScripts(client)
    script = client.register_script(SCRIPT)
    _name(scripts, "pinned-killed")
    scripts.run(script, ["pinned:k"], [1])
    monkeypatch.setattr(replication, "CHECK_IDLE_AFTER", 0.0)  # idle from now on
    (victim,) = _ids(redis_client, "pinned-killed")
    redis_client.client_kill_filter(_id=victim)
    reply, _ = scripts.run(script, ["pinned:k"], [1])
    assert int(reply) == 2
    client.close()


def test_a_busy_connection_the_server_closed_is_retried_by_the_clients_policy(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Used a moment ago, a connection is not checked: the call fails on it and the client's
    retry policy runs it again on a new one. Without retries the error is the caller's."""
    # Busy however slow the machine: no time between two calls counts as idle here.
    monkeypatch.setattr(replication, "CHECK_IDLE_AFTER", float("inf"))
    for retries, survives in ((1, True), (0, False)):
        client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), retries))
        scripts = PinnedScripts(client)
        script = client.register_script(SCRIPT)
        key = f"pinned:busy:{retries}"
        _name(scripts, f"pinned-busy-{retries}")
        scripts.run(script, [key], [1])
        (victim,) = _ids(redis_client, f"pinned-busy-{retries}")
        redis_client.client_kill_filter(_id=victim)
        if survives:
            reply, _ = scripts.run(script, [key], [1])
            assert int(reply) == 2
        else:
            with pytest.raises(redis.ConnectionError):
                scripts.run(script, [key], [1])
            reply, _ = scripts.run(script, [key], [1])  # the next call connects afresh
            assert int(reply) == 2
        client.close()


def test_a_call_stopped_before_its_reply_leaves_no_reply_for_the_next(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised into the thread between a call's send and its read (Dramatiq's time
    limit does that) leaves the reply unread on the connection; the next call must not take it
    for its own, even on a connection used a moment ago."""
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    scripts.run(script, ["pinned:s"], [1])
    connection = scripts._connection()

    class Interrupted(Exception):
        pass

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted

    monkeypatch.setattr(connection, "read_response", interrupted)
    with pytest.raises(Interrupted):
        scripts.run(script, ["pinned:s"], [10])
    monkeypatch.undo()
    reply, _ = scripts.run(script, ["pinned:s"], [100])
    assert int(reply) == 111  # its own reply: 1 + 10 (sent, unread) + 100


def test_a_reconnect_stopped_in_its_handshake_leaves_nothing_for_the_next_call(
    redis_db: Callable[[int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconnect's handshake (HELLO, CLIENT SETINFO, SELECT) stopped between a send and its
    reply, by an exception raised into the thread, must not leave that reply, or a connection
    on the wrong database, to the next call, however recently the connection was used."""
    client = redis.Redis.from_url(redis_db(5))
    scripts = PinnedScripts(client)
    script = client.register_script(SCRIPT)
    scripts.run(script, ["pinned:h"], [1])
    connection = scripts._connection()
    connection.disconnect()  # as run() does after a WAIT short of replicas

    class Interrupted(BaseException):  # as Dramatiq's TimeLimitExceeded
        pass

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted

    monkeypatch.setattr(connection, "read_response", interrupted)
    with pytest.raises(Interrupted):
        scripts.run(script, ["pinned:h"], [10])  # stopped at the handshake's first reply
    monkeypatch.undo()
    reply, _ = scripts.run(script, ["pinned:h"], [100])
    assert int(reply) == 101  # its own reply; the interrupted call never ran
    assert int(client.get("pinned:h") or 0) == 101  # and on database 5
    client.close()


@pytest.mark.skipif(sys.platform != "linux", reason="kernel socket timeouts are set on Linux")
def test_a_timeout_redis_py_gives_back_to_python_moves_to_the_kernel_again(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py sets Python's timeout again after a read with a timeout of its own; an idle
    check on such a socket would wait out the whole timeout and drop a good connection."""
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    _name(scripts, "pinned-retimed")
    scripts.run(script, ["pinned:r"], [1])
    (before,) = _ids(redis_client, "pinned-retimed")
    sock = getattr(scripts._connection(), replication._KERNEL_TIMED_SOCKET)
    sock.settimeout(30.0)  # what redis-py's read_from_socket does after a custom timeout
    monkeypatch.setattr(replication, "CHECK_IDLE_AFTER", 0.0)
    reply, _ = scripts.run(script, ["pinned:r"], [1])
    assert int(reply) == 2
    assert sock.gettimeout() is None
    assert _ids(redis_client, "pinned-retimed") == [before]  # the same connection, kept


@pytest.mark.skipif(sys.platform != "linux", reason="kernel socket timeouts are set on Linux")
def test_the_socket_timeout_is_the_kernels(redis_url: str) -> None:
    """The client's socket_timeout moves to SO_RCVTIMEO and SO_SNDTIMEO; Python's is off, so a
    send or a receive is one system call, with no poll before it."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2.5)
    scripts = PinnedScripts(client)
    scripts.run(client.register_script(SCRIPT), ["pinned:kt"], [1])
    sock = getattr(scripts._connection(), replication._KERNEL_TIMED_SOCKET)
    assert isinstance(sock, socket.socket) and sock.gettimeout() is None
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        seconds, micros = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
        assert (seconds, micros) == (2, 500000)
    client.close()


def test_a_server_that_does_not_answer_fails_the_call_after_the_timeout() -> None:
    """A listener that never answers: the call raises a redis error once the socket timeout has
    passed, instead of waiting for ever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the backlog; nothing is ever read
        port = listener.getsockname()[1]
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.2,
                             socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))
        scripts = PinnedScripts(client)
        script = client.register_script(SCRIPT)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                scripts.run(script, ["pinned:silent"], [1])
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(60)  # a bound for a hang, far above the 0.2 s timeout; not a measurement
        assert not caller.is_alive(), "the call did not time out"
        assert len(outcome) == 1
        assert isinstance(outcome[0], redis.ConnectionError | redis.TimeoutError)


def test_a_forked_child_takes_a_connection_of_its_own(redis_client: redis.Redis) -> None:
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    scripts.run(script, ["pinned:fork"], [1])
    parent = scripts._connection()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own connection, and the call works
        try:
            reply, _ = scripts.run(script, ["pinned:fork"], [1])
            ok = scripts._connection() is not parent and int(reply) == 2
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    reply, _ = scripts.run(script, ["pinned:fork"], [1])  # the parent's is untouched
    assert int(reply) == 3 and scripts._connection() is parent


def test_a_script_flushed_from_the_cache_is_loaded_again(redis_client: redis.Redis) -> None:
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    scripts.run(script, ["pinned:f"], [1])
    redis_client.script_flush()
    reply, _ = scripts.run(script, ["pinned:f"], [1])
    assert int(reply) == 2


def test_an_error_reply_is_raised_and_the_connection_stays_usable(
    redis_client: redis.Redis,
) -> None:
    scripts = PinnedScripts(redis_client)
    failing = redis_client.register_script("return redis.error_reply('ERR refused here')")
    script = redis_client.register_script(SCRIPT)
    with pytest.raises(redis.ResponseError, match="refused here"):
        scripts.run(failing, [], [])
    reply, _ = scripts.run(script, ["pinned:e"], [3])
    assert int(reply) == 3


def test_wait_with_no_replica_reports_none_acknowledged(redis_client: redis.Redis) -> None:
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    reply, acknowledged = scripts.run(script, ["pinned:w"], [1], replicas=1, timeout_ms=10)
    assert (int(reply), acknowledged) == (1, 0)
    # The WAIT reply was read with it: the next call gets its own reply, not a stale one.
    reply, acknowledged = scripts.run(script, ["pinned:w"], [1])
    assert (int(reply), acknowledged) == (2, 0)


def test_each_thread_keeps_its_own_connection(redis_client: redis.Redis) -> None:
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    errors: list[BaseException] = []
    # The threads stay alive until their connections are counted: each closes with its thread.
    worked, counted = threading.Barrier(5), threading.Event()

    def work(i: int) -> None:
        try:
            _name(scripts, f"pinned-thread-{i}")
            for _ in range(50):
                scripts.run(script, ["pinned:t"], [1])
        except BaseException as exc:
            errors.append(exc)
        finally:
            worked.wait()
            counted.wait()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    worked.wait()
    try:
        assert errors == []
        assert int(redis_client.get("pinned:t") or 0) == 200
        assert len(_ids(redis_client, "pinned-thread-")) == 4
    finally:
        counted.set()
        for thread in threads:
            thread.join()


def test_connections_are_outside_the_pool_and_close_with_their_thread(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = redis.Redis.from_url(redis_url, max_connections=1)
    scripts = PinnedScripts(client)
    script = client.register_script(SCRIPT)
    client.ping()  # the pool's one connection, taken and given back

    made: list[weakref.ref[Any]] = []

    def work(i: int) -> None:
        _name(scripts, f"pinned-ended-{i}")
        scripts.run(script, ["pinned:x"], [1])
        made.append(weakref.ref(scripts._connection()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(redis_client.get("pinned:x") or 0) == 3  # no MaxConnectionsError
    gc.collect()
    assert len(made) == 3 and all(ref() is None for ref in made)  # closed by Connection.__del__
    # The server sees the closes on its next turns: waited for, not timed.
    assert wait_for(lambda: _ids(redis_client, "pinned-ended-") == [], 30)
    client.close()


def test_a_lost_script_is_loaded_with_wait_in_the_same_round_trip(
    redis_client: redis.Redis,
) -> None:
    """Both runners, PinnedScripts and run_replicated: the EVALSHA refused for a flushed cache,
    the WAIT after it still read, the script loaded and run once."""
    scripts = PinnedScripts(redis_client)
    script = redis_client.register_script(SCRIPT)
    redis_client.script_flush()
    reply, acknowledged = scripts.run(script, ["pinned:lw"], [1], replicas=1, timeout_ms=10)
    assert (int(reply), acknowledged) == (1, 0)
    redis_client.script_flush()
    reply, acknowledged = run_replicated(redis_client, script, ["pinned:lw"], [1], replicas=1,
                                         timeout_ms=10)
    assert (int(reply), acknowledged) == (2, 0)
