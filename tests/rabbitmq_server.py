"""A RabbitMQ virtual host of the tests' own on the machine's RabbitMQ (127.0.0.1:5672).

Tests never touch another vhost: each module creates ``sendcloud-test-<hex>`` with
``rabbitmqctl``, gives the guest user rights on it alone, and deletes it (with its queues)
when done. ``rabbitmqctl`` is also how a test cuts the vhost's connections, as a RabbitMQ
restart or a network fault would, and how it reads the queues' ready and unacknowledged
counts (what a consumer holds is invisible to an AMQP client).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass

HOST, PORT = "127.0.0.1", 5672
USER = PASSWORD = "guest"


def _ctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def unavailable() -> str | None:
    """Why no test vhost can be made here, or None when RabbitMQ and rabbitmqctl are usable."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            pass
    except OSError as exc:
        return f"RabbitMQ is not listening on {HOST}:{PORT} ({exc.strerror or exc})"
    try:
        _ctl("status")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl cannot reach the node: {exc}"
    return None


def require_rabbitmq() -> None:
    """Skip, or under CI=true fail, when RabbitMQ cannot be used."""
    import pytest

    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI requires a real RabbitMQ")
    pytest.skip(reason)


@dataclass
class RabbitVhost:
    name: str

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}/{self.name}"

    def counts(self) -> dict[str, tuple[int, int]]:
        """Each queue of the vhost: (ready, unacknowledged) messages."""
        out = _ctl("list_queues", "-p", self.name, "--no-table-headers",
                   "name", "messages_ready", "messages_unacknowledged")
        counts: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                counts[parts[0]] = (int(parts[1]), int(parts[2]))
        return counts

    def consumers(self, queue: str) -> int:
        """Consumers attached to ``queue`` now."""
        out = _ctl("list_queues", "-p", self.name, "--no-table-headers", "name", "consumers")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return 0

    def backlog(self) -> dict[str, tuple[int, int]]:
        """Queues holding messages, ready or unacknowledged; dead letters (.XQ) left out."""
        return {q: c for q, c in self.counts().items() if not q.endswith(".XQ") and any(c)}

    def close_connections(self) -> int:
        """Close every client connection to this vhost, as a broker restart would."""
        out = _ctl("close_all_connections", "--vhost", self.name, "--limit", "1000",
                   "closed by the test")
        return int(out.split()[1]) if out.startswith("Closed") else 0

    def reset(self) -> None:
        """Delete the vhost's queues, so the next test starts with none."""
        import pika

        names = list(self.counts())
        if not names:
            return
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            for name in names:
                channel.queue_delete(name)
        finally:
            connection.close()

    def delete(self) -> None:
        _ctl("delete_vhost", self.name)


def create_vhost() -> RabbitVhost:
    vhost = RabbitVhost(f"sendcloud-test-{uuid.uuid4().hex[:12]}")
    _ctl("add_vhost", vhost.name)
    try:
        _ctl("set_permissions", "-p", vhost.name, USER, ".*", ".*", ".*")
    except BaseException:
        vhost.delete()
        raise
    return vhost
