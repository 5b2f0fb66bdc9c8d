"""Run an ASGI app under uvicorn on a loopback port, in a thread or in a child process (tests, bench)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default 32768-60999)."""
    try:
        low, high = EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on now, chosen below the ephemeral range.

    A server is often started a moment after its port is chosen. A port from the ephemeral range (what
    binding port 0 returns) can be taken in between as the local end of any outgoing connection on a
    busy machine; a port below the range never is, so only another server choosing the same port could
    take it.
    """
    low, _ = ephemeral_range()
    candidates = list(range(LOWEST_PORT, max(low, LOWEST_PORT + 1)))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server


@contextmanager
def serve_in_thread(app: ASGIApp, *, timeout_graceful_shutdown: int | None = None,
                    start_timeout: float = 20.0, port: int = 0) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1 (``port``, or any free one) from a background thread with its own loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=timeout_graceful_shutdown,
                            loop="asyncio", http="httptools")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not healthy after {timeout} s")


@contextmanager
def serve_process(module_args: Sequence[str], *, health_path: str, env: Mapping[str, str] | None = None,
                  port: int | None = None, start_timeout: float = 30.0,
                  log_path: Path | None = None) -> Iterator[ServerProcess]:
    """Run ``python -m <module_args> --port P`` as a child process, its output in ``log_path``
    (a temporary file by default); killed on exit if still running."""
    port = port or free_port()
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *module_args, "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url + health_path, start_timeout, process)
        yield ServerProcess(url=url, process=process, log_path=log_path)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
