"""Benchmark: the CPU one upstream request costs the gateway, by HTTP client, side by side in one run.

    python -m bench.upstream_client_bench [--requests N] [--rounds R] [--tokens T]

One synthetic upstream (gateway/testing/fake_upstream.py, on the load core) answers streamed chat
completions of ``--tokens`` tokens with no delay between them. In this process, pinned to the proxy
core, each client posts the same request ``--requests`` times in a row and reads each answer to its
end, in alternating rounds: aiohttp's ClientSession (what the completion routes used before) and the
gateway's UpstreamPool (gateway/http1.py). Reported: CPU time (this process) and wall time per request,
median over the rounds, and the ratio aiohttp / UpstreamPool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from bench import gateway_procs as procs
from bench.gateway_bench import choose_cores, pinned
from gateway.http1 import UpstreamPool

MODEL = "synthetic"
HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


def request_body(tokens: int) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "stream": True,
                       "max_tokens": tokens}).encode()


async def with_aiohttp(base_url: str, body: bytes, requests: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=16, keepalive_timeout=4.0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, headers=HEADERS,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     skip_auto_headers=("user-agent",)) as session:
        url = f"{base_url}/v1/chat/completions"

        async def one() -> None:
            response = await session.post(url, data=body, allow_redirects=False)
            async for _chunk in response.content.iter_any():
                pass
            response.release()

        return await timed(one, requests)


async def with_pool(base_url: str, body: bytes, requests: int) -> tuple[float, float]:
    pool = UpstreamPool(base_url, connect_timeout=3.0, keepalive=4.0, max_idle=16, headers=HEADERS)

    async def one() -> None:
        response = await pool.post("/v1/chat/completions", body)
        while await response.chunk():
            pass
        response.release()

    try:
        return await timed(one, requests)
    finally:
        pool.close()


async def timed(one: Callable[[], Awaitable[None]], requests: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per request, after a warm-up of a tenth of the requests."""
    for _ in range(max(requests // 10, 10)):
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await one()
    return (time.process_time() - cpu) / requests, (time.perf_counter() - wall) / requests


CLIENTS = {"aiohttp": with_aiohttp, "UpstreamPool": with_pool}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_client_bench",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per client")
    parser.add_argument("--tokens", type=int, default=8, help="tokens per streamed answer")
    parser.add_argument("--out-dir", default=".bench/upstream-client", help="the upstream's log")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1 or args.tokens < 1:
        parser.error("--requests, --rounds and --tokens must be positive")
    cores = choose_cores(True, 0, 1, realtime=False)
    log_dir = Path(args.out_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    body = request_body(args.tokens)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    with procs.fake_upstream(log_dir, cores.load, model=MODEL, tokens=args.tokens,
                             interval_ms=0.001) as upstream, pinned(cores.proxy):
        for _ in range(args.rounds):
            for name, client in CLIENTS.items():
                results[name].append(asyncio.run(client(upstream.url, body, args.requests)))
    print(f"{args.requests} requests x {args.rounds} rounds per client, {args.tokens}-token streams; "
          f"client on CPU {sorted(cores.proxy or [])}, upstream on CPU {sorted(cores.load or [])}\n")
    print("| client | CPU µs per request | wall µs per request |\n|---|---:|---:|")
    medians: dict[str, float] = {}
    for name, runs in results.items():
        medians[name] = statistics.median(cpu for cpu, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"| {name} | {medians[name] * 1e6:.0f} | {wall * 1e6:.0f} |")
    print(f"\nCPU ratio aiohttp / UpstreamPool: {medians['aiohttp'] / medians['UpstreamPool']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
