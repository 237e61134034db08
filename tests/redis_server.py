"""A throwaway redis-server on a free port, so tests never touch data they did not create."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL, as a crashed host would: what the AOF had not flushed is gone."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis_server(
    *, appendonly: bool = False, port: int | None = None, workdir: str | None = None
) -> RedisServer | None:
    """Start one, or return None when no redis-server binary is installed.

    ``appendonly``: persist to an AOF with ``appendfsync everysec``, as the README recommends;
    with the same ``port`` and ``workdir`` a restarted server loads it again.
    """
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        return None
    workdir = workdir or tempfile.mkdtemp(prefix="sendcloud-jobs-redis-")
    port = port or free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if appendonly else \
        ["--appendonly", "no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
         "--maxmemory-policy", "noeviction",
         "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return RedisServer(port, process, workdir)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}; see {workdir}/redis.log")
