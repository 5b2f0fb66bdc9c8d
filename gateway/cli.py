"""``python -m gateway serve --host H --port P``: run the gateway under uvicorn.

Settings come from GATEWAY_* environment variables; --host/--port override GATEWAY_HOST/GATEWAY_PORT.
SIGTERM: uvicorn stops accepting, lets in-flight streams finish for up to GATEWAY_SHUTDOWN_TIMEOUT
seconds, cancels what is left, then the lifespan closes the clients.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.server import protocol_factory
from gateway.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="address to bind (default: GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default: GATEWAY_PORT)")
    return parser


class GatewayServer(uvicorn.Server):
    """uvicorn's server, marking the app as draining (``/readyz`` 503) the moment a stop signal comes."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.gateway_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway_app.state.draining = True
        super().handle_exit(sig, frame)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"gateway: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if args.host is not None:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    log_writer = configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # The client address comes from X-Forwarded-For with GATEWAY_TRUSTED_HOPS (gateway/limits.py);
        # uvicorn's own rewriting would apply a second, different rule to the same header.
        proxy_headers=False,
        timeout_keep_alive=int(settings.keep_alive_seconds),
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        lifespan="on",
        # asyncio, not uvloop: under load uvloop left disconnected clients undetected while their writes
        # were paused, so their upstream requests ran on (see gateway/README.md).
        loop="asyncio",
        # httptools' protocol with header size and count limits and header and body timeouts.
        http=protocol_factory(settings),
    )
    server = GatewayServer(config, app)

    flushed = False

    def flush_logs() -> None:
        nonlocal flushed
        if not flushed:
            flushed = True
            log_writer.stop()

    def flush_logs_then_exit(signum: int, _frame: FrameType | None) -> None:
        # uvicorn restores the handlers it found and re-raises the stop signal once it has drained:
        # this one writes the queued log lines (the shutdown's among them), then lets the signal end
        # the process as before.
        flush_logs()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, flush_logs_then_exit)
    try:
        server.run()
    finally:
        flush_logs()
    # uvicorn returns without raising when the lifespan failed to start or the port was taken.
    return 0 if server.started else 3
