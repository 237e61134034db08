"""The simulator over real HTTP: a threaded stdlib server, one thread per connection.

HTTP/1.1 with keep-alive, so pooled clients reuse connections as they would against
SendCloud. A request whose reply must be lost (a reset, or a drop after it took effect) gets
its socket closed with SO_LINGER 0: the client sees a connection reset and no reply bytes.

Access logs name the method and path only: query strings carry apiKey on GET calls.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote

import structlog

from simulator.core import Simulator
from simulator.protocol import RawRequest, http_error

log = structlog.get_logger("simulator.server")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gives up (a timeout under injected latency) is routine, not a crash.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client went away", error=type(exc).__name__)
        else:
            log.exception("connection handler failed")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without TCP_NODELAY each keep-alive reply
    # can wait out the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _serve(self) -> None:
        body = self._read_body()
        path, _, query = self.path.partition("?")
        request = RawRequest(self.command, unquote(path), query, body,
                             self.headers.get("Content-Type", ""))
        try:
            reply = self.server.sim.serve(request)
        except Exception:
            # A simulator bug must not look like a network fault to the client under test.
            log.exception("simulator failed", method=self.command, path=request.path)
            reply = http_error(500, "simulator internal error")
        log.debug("request", method=self.command, path=request.path, status=reply.status,
                  network_failure=reply.network_failure)
        if reply.network_failure:
            self._abort()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        # The default writes the request line, query string included, to stderr.
        pass


class SimulatorServer:
    """A simulator served on a background thread; ``stop()`` ends it."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._server = _Server((host, port), sim)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"sendcloud-simulator-{self.port}", daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_in_thread(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    return SimulatorServer(sim, host, port)
