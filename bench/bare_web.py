"""The baseline for ``bench.hooks``: a no-op Starlette endpoint served as ``sendcloud-jobs web``
serves the receiver (``worker.web.server``: the same socket binding, uvicorn configuration and
logging), answering every POST to ``/hooks/sms`` with 200 without reading it.

``python -m bench.bare_web --port N``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from worker.logs import configure_logging
from worker.settings import Settings
from worker.web.server import bind, serve


async def accept(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app() -> Starlette:
    return Starlette(routes=[Route("/hooks/sms", accept, methods=["POST"])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging(Settings.from_env())
    serve(app(), bind(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
