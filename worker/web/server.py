"""Serving an ASGI app with uvicorn the way ``sendcloud-jobs web`` does (the benchmark's
baseline is served by the same code).

The socket is bound here, before uvicorn starts, so a port already taken is a plain
``PortTaken`` the command prints as one line, not uvicorn's log and exit. uvicorn's own lines
go through the root logger (configured by worker.logs, so structlog formats them); its access
log is off: the hook paths log one line per request themselves, without what an access log
could leak (query strings).
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.types import ASGIApp


class PortTaken(OSError):
    """The address cannot be bound (in use, not local, or not allowed)."""


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortTaken(f"cannot resolve host {host!r} ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortTaken(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT or SIGTERM (requests in flight finish)."""
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                            lifespan="on")  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
