"""Router benchmark: a second model server replica started during a load run, per-request balancing (the
gateway's router) against per-connection balancing (what kube-proxy does behind a ClusterIP Service).

Two synthetic vLLMs with a bounded number of running sequences (``--max-num-seqs``: the rest wait, as in
vLLM's scheduler), one gateway process, and a constant load of streaming requests. The first replica
serves from the start; the second starts ``--second-at`` seconds into the run. Two modes run one after
the other in the same invocation, each with fresh replicas and a fresh gateway:

- ``request``: the gateway knows both replicas (GATEWAY_UPSTREAM_REPLICAS) and sends each request to
  the ready one with the fewest outstanding requests; the second is probed until it answers.
- ``connection``: the gateway's one upstream is a TCP balancer that picks a backend per new connection,
  round robin over the ready backends, and adds the second once its /health answers (kube-proxy adds an
  endpoint when the pod is Ready). The gateway's pooled keep-alive connections stay where they are.

Reported per mode: when the second replica was ready, the share of the requests finished after that which
it served (each replica's own ``fake:requests_total``), and the time to first token before and after.

    python -m bench.router_bench                 # ~1.5 minutes
    python -m bench.router_bench --seconds 8 --second-at 3   # the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio
import httpx

from bench import gateway_procs as procs
from bench.gateway_loadgen import build_session, chat_body, one_stream
from gateway.testing.servers import free_port

MODEL = "fake-model"
MODES = ("request", "connection")


@dataclass
class Timed:
    started: float  # seconds since the run's start
    ttft: float


@dataclass
class ModeResult:
    mode: str
    second_ready_at: float = 0.0
    samples: list[Timed] = field(default_factory=list)
    errors: int = 0
    first_served: float = 0.0
    second_served: float = 0.0

    @property
    def share(self) -> float:
        total = self.first_served + self.second_served
        return self.second_served / total if total else 0.0

    def ttft(self, after: bool, pct: float) -> float:
        values = sorted(s.ttft for s in self.samples if (s.started >= self.second_ready_at) == after)
        if not values:
            return float("nan")
        if pct == 50:
            return statistics.median(values)
        return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


class ConnectionBalancer:
    """A TCP balancer choosing a backend per connection, round robin, as kube-proxy does per connection."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self._turn = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, backend: tuple[str, int]) -> None:
        self._loop.call_soon_threadsafe(self.backends.append, backend)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.backends[self._turn % len(self.backends)]
        self._turn += 1
        try:
            backend_reader, backend_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, backend_writer), pipe(backend_reader, writer))

    @contextmanager
    def running(self) -> Iterator[ConnectionBalancer]:
        self._thread.start()
        self._started.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@contextmanager
def replica(log_dir: Path, name: str, port: int, args: argparse.Namespace) -> Iterator[procs.Server]:
    command = [sys.executable, "-m", "gateway.testing.fake_upstream", "--host", "127.0.0.1", "--port",
               str(port), "--model", MODEL, "--tokens", str(args.tokens), "--interval-ms",
               str(args.interval_ms), "--max-num-seqs", str(args.max_num_seqs)]
    with procs.run_server(name, command, port=port, health_path="/health", log_dir=log_dir,
                          cores=None) as server:
        yield server


@contextmanager
def gateway(log_dir: Path, name: str, env: dict[str, str]) -> Iterator[procs.Server]:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    full_env = {**procs.gateway_env(env.pop("GATEWAY_UPSTREAM_URL"), MODEL), **env}
    with procs.run_server(name, command, port=port, health_path="/healthz", log_dir=log_dir, cores=None,
                          env=full_env) as server:
        yield server


def requests_total(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("fake:requests_total "):
            return float(line.split()[1])
    raise ValueError(f"no fake:requests_total at {url}")


async def load(url: str, args: argparse.Namespace, result: ModeResult, origin: float) -> None:
    body = chat_body(MODEL, args.tokens)
    deadline = origin + args.seconds
    async with build_session(args.streams, 120.0) as session:

        async def worker(delay: float) -> None:
            await anyio.sleep(delay)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    sample = await one_stream(session, f"{url}/v1/chat/completions", body)
                except (aiohttp.ClientError, TimeoutError, RuntimeError):
                    result.errors += 1
                    continue
                result.samples.append(Timed(started=started - origin, ttft=sample.ttft))

        stream_seconds = args.tokens * args.interval_ms / 1000
        async with anyio.create_task_group() as group:
            for index in range(args.streams):
                group.start_soon(worker, stream_seconds * index / args.streams)


def run_mode(mode: str, args: argparse.Namespace, log_dir: Path) -> ModeResult:
    result = ModeResult(mode=mode)
    first_port, second_port = free_port(), free_port()
    second_url = f"http://127.0.0.1:{second_port}"
    with ExitStack() as stack:
        first = stack.enter_context(replica(log_dir, f"{mode}-replica-1", first_port, args))
        balancer = None
        if mode == "request":
            env = {"GATEWAY_UPSTREAM_URL": first.url,
                   "GATEWAY_UPSTREAM_REPLICAS": f"{first.url},{second_url}"}
        else:
            balancer = stack.enter_context(ConnectionBalancer([("127.0.0.1", first_port)]).running())
            env = {"GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{balancer.port}"}
        proxy = stack.enter_context(gateway(log_dir, f"{mode}-gateway", env))
        origin = time.perf_counter()
        loader = threading.Thread(target=lambda: anyio.run(load, proxy.url, args, result, origin),
                                  daemon=True)
        loader.start()
        time.sleep(max(0.0, origin + args.second_at - time.perf_counter()))
        second = stack.enter_context(replica(log_dir, f"{mode}-replica-2", second_port, args))
        if balancer is not None:
            balancer.add(("127.0.0.1", second_port))
        result.second_ready_at = time.perf_counter() - origin
        first_before, second_before = requests_total(first.url), requests_total(second.url)
        loader.join(args.seconds + 120)
        result.first_served = requests_total(first.url) - first_before
        result.second_served = requests_total(second.url) - second_before
    return result


def markdown(results: Sequence[ModeResult], args: argparse.Namespace) -> str:
    lines = [
        f"{args.streams} streams of {args.tokens} tokens {args.interval_ms:g} ms apart for "
        f"{args.seconds:g} s; replicas with --max-num-seqs {args.max_num_seqs}; the second started "
        f"{args.second_at:g} s in.",
        "",
        "| balancing | second ready at (s) | requests after | second replica's share | "
        "TTFT p50 / p99 before (ms) | TTFT p50 / p99 after (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        after = int(r.first_served + r.second_served)
        lines.append(
            f"| {r.mode} | {r.second_ready_at:.1f} | {after} | {r.share:.0%} | "
            f"{r.ttft(False, 50) * 1000:.1f} / {r.ttft(False, 99) * 1000:.1f} | "
            f"{r.ttft(True, 50) * 1000:.1f} / {r.ttft(True, 99) * 1000:.1f} | {r.errors} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="load per mode")
    parser.add_argument("--second-at", type=float, default=10.0, help="when the second replica starts")
    parser.add_argument("--streams", type=int, default=24)
    parser.add_argument("--max-num-seqs", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.second_at < args.seconds:
        print("router_bench: --second-at must fall inside the run (0 < second-at < seconds)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="router-bench-") as logs:
        results = [run_mode(mode, args, Path(logs)) for mode in args.modes]
    print(markdown(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
