"""A throwaway Redis Sentinel group: a primary, a replica and three sentinels on free ports.

Started with the machine's ``redis-server`` (``--sentinel`` for the sentinels) in a temporary
directory, all bound to 127.0.0.1; the sentinels fail over within a few seconds of the primary
going silent (``down-after-milliseconds`` 1000, quorum 2). :func:`sentinel_group` yields the
group and stops every process it started, whatever the test did.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.redis_server import free_port

MASTER = "sendcloud"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def _binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    command: list[str] = field(default_factory=list)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a host that dies would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class SentinelGroup:
    workdir: Path
    primary: Node
    replica: Node
    sentinels: list[Node] = field(default_factory=list)
    #: Every process started, restarts included: all are stopped at the end.
    started: list[Node] = field(default_factory=list)

    def restart(self, node: Node, *, replica_of: int | None = None) -> Node:
        """Start a killed data node again on its port, with its configuration file and an
        empty dataset (no persistence). The sentinels would make it a replica of the new master
        on their own, some 10-20 s later; ``replica_of`` does it at once, as an operator's
        provisioning would, to keep the test short."""
        again = Node(node.name, node.port, subprocess.Popen(
            node.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), node.command)
        self.started.append(again)
        _wait_port(again, self.workdir / f"{node.name}.log")
        if replica_of is not None:
            client = again.client()
            try:
                client.replicaof("127.0.0.1", replica_of)
            finally:
                client.close()
        return again

    @property
    def env(self) -> dict[str, str]:
        """The settings that point producers and workers at this group (database 0)."""
        return {
            "REDIS_URL": "redis://127.0.0.1:1/0",  # its host and port are not used
            "SENDCLOUD_REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "SENDCLOUD_REDIS_MASTER": MASTER,
            # WAIT answers as soon as the replica has a write: the longest timeout allowed
            # costs a test nothing, and spares it a NotReplicated when a busy machine
            # schedules the replica late.
            "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS": "2000",
        }

    def master_ports(self) -> set[int]:
        """The master's port as each live sentinel names it now."""
        ports: set[int] = set()
        for sentinel in self.sentinels:
            if sentinel.process.poll() is not None:
                continue
            client = sentinel.client()
            try:
                ports.add(int(client.sentinel_get_master_addr_by_name(MASTER)[1]))
            except (redis.RedisError, TypeError):
                ports.add(0)  # no answer yet: not agreed
            finally:
                client.close()
        return ports

    def wait_for_failover(self, old_port: int, timeout: float = 60.0) -> int:
        """Wait until every sentinel names another master and it accepts writes; its port.

        All of them: a sentinel still naming the old address would, once that address answers
        again (a restarted node, empty), take it for the master and make the new one its
        replica, which empties it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.master_ports()
            if len(ports) == 1 and old_port not in ports and 0 not in ports:
                port = ports.pop()
                node = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
                try:
                    if node.info("replication").get("role") == "master":
                        return port
                except redis.RedisError:
                    pass
                finally:
                    node.close()
            time.sleep(0.2)
        raise RuntimeError(f"no failover within {timeout} s; see {self.workdir}")

    def wait_replica_in_sync(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.primary.client()
        try:
            while time.monotonic() < deadline:
                if client.info("replication").get("connected_slaves", 0) >= 1 and \
                        int(client.wait(1, 1000)) >= 1:
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"the replica did not sync within {timeout} s; see {self.workdir}")

    def processes(self) -> list[Node]:
        return [self.primary, self.replica, *self.sentinels]


def _wait_port(node: Node, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if node.client().ping():
                return
        except redis.RedisError:
            if node.process.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"{node.name} did not start on port {node.port}; see {log}")


def _start(binary: str, workdir: Path, name: str, args: list[str]) -> Node:
    port = free_port()
    log = workdir / f"{name}.log"
    directory = workdir / name
    directory.mkdir()
    config = directory / "redis.conf"
    sentinel = args and args[0] == "--sentinel"
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}", f"logfile {log}"]
    if not sentinel:
        lines += ["save \"\"", "appendonly no", "maxmemory-policy noeviction"]
    lines += [a for a in args if a != "--sentinel"]
    config.write_text("\n".join(lines) + "\n")
    # A sentinel rewrites its configuration file: it must be a file of its own.
    command = [binary, str(config), *(["--sentinel"] if sentinel else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node(name, port, process, command)
    _wait_port(node, log)
    return node


@contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    """Start the group and wait until the replica is in sync and every sentinel sees both;
    skip (fail under CI=true) when no redis-server is installed."""
    binary = _binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed; CI requires it for the Sentinel tests")
        pytest.skip("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="sendcloud-jobs-sentinel-"))
    started: list[Node] = []
    try:
        primary = _start(binary, workdir, "primary", [])
        started.append(primary)
        replica = _start(binary, workdir, "replica", [f"replicaof 127.0.0.1 {primary.port}"])
        started.append(replica)
        group = SentinelGroup(workdir, primary, replica, started=started)
        group.wait_replica_in_sync()
        for i in range(3):
            sentinel = _start(binary, workdir, f"sentinel{i}", [
                "--sentinel",
                f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER} 1",
            ])  # fmt: skip
            started.append(sentinel)
            group.sentinels.append(sentinel)
        _wait_sentinels_ready(group)
        yield group
    finally:
        for node in started:
            node.kill()  # SIGKILL ends a SIGSTOPped process too
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_sentinels_ready(group: SentinelGroup, timeout: float = 30.0) -> None:
    """Every sentinel knows the replica and the other two sentinels, so a failover can run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for sentinel in group.sentinels:
            client = sentinel.client()
            try:
                state = client.sentinel_master(MASTER)
                if int(state.get("num-slaves", 0)) >= 1 and \
                        int(state.get("num-other-sentinels", 0)) >= 2:
                    ready += 1
            except redis.RedisError:
                pass
            finally:
                client.close()
        if ready == len(group.sentinels):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the sentinels did not find each other within {timeout} s; "
                       f"see {group.workdir}")
