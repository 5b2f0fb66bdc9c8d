"""The gateway benchmark's load generator: one asyncio process, one aiohttp session per cell.

``N`` workers each send streaming chat completions back to back (a closed loop: N streams are always
open) until the cell's request count is reached or its time limit has passed (each stream still sends
its first request); a request already sent is always finished. Per request it records the time to the
first SSE ``data:`` line (TTFT) and the time to the end of the stream. A request counts as an error
unless it answered 200 and ended with ``data: [DONE]``.

aiohttp (C parser, one read per arriving chunk) rather than httpx: the load generator shares a core
with the synthetic upstream, and at 50 streams httpx with httpx-sse used most of that core, so the
*direct* latencies measured the load generator. Only two lines are looked at: the first ``data:`` line
and ``data: [DONE]``; vLLM (and the synthetic upstream) write one ``data:`` line per event.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import aiohttp
import anyio


@dataclass(frozen=True)
class Sample:
    ttft: float  # seconds from sending the request to the first data: event
    total: float  # seconds from sending the request to the end of the stream


@dataclass
class CellResult:
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    wall_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.samples) + self.errors

    @property
    def requests_per_second(self) -> float:
        return len(self.samples) / self.wall_seconds if self.wall_seconds > 0 else 0.0


def chat_body(model: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        "stream": True,
    }


DONE_LINE = b"data: [DONE]"


async def one_stream(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> Sample:
    """Send one streaming request; raises RuntimeError when it does not end as a good stream does."""
    started = time.perf_counter()
    first: float | None = None
    done = False
    async with session.post(url, json=body) as response:
        if response.status != 200:
            text = (await response.content.read(200)).decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status}: {text}")
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            if first is None:
                first = time.perf_counter()
            if line.rstrip() == DONE_LINE:
                done = True
    ended = time.perf_counter()
    if first is None or not done:
        raise RuntimeError("the stream ended without data: [DONE]")
    return Sample(ttft=first - started, total=ended - started)


def build_session(concurrency: int, request_timeout: float) -> aiohttp.ClientSession:
    # One connection per stream, so the pool never queues a request.
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=10.0)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 headers={"accept-encoding": "identity"})


async def run_cell(base_url: str, model: str, *, concurrency: int, requests: int, time_limit: float,
                   warmup: int, max_tokens: int = 32, request_timeout: float = 120.0,
                   spread: float = 0.0) -> CellResult:
    """Warm up with ``warmup`` requests (not recorded), then run ``requests`` at ``concurrency``.

    ``spread``: stream i of N sends its first request i/N x ``spread`` seconds into each phase. Users'
    requests arrive at independent times; N streams started in the same instant would stay in step
    (same length, the synthetic upstream's fixed token clock): every stream would end, and send its
    next request, within the same few milliseconds, and every token of every stream would reach the
    proxy in one burst. The bench spreads them over one stream's length, so that requests arrive at an
    even rate, as N independent users' would.
    """
    url = f"{base_url}/v1/chat/completions"
    body = chat_body(model, max_tokens)
    result = CellResult(concurrency=concurrency)
    async with build_session(concurrency, request_timeout) as session:

        async def worker(quota: list[int], deadline: float, record: bool, delay: float) -> None:
            # Every stream sends its first request; after the deadline no stream starts another.
            await anyio.sleep(delay)
            first = True
            while quota[0] > 0 and (first or time.perf_counter() < deadline):
                first = False
                quota[0] -= 1
                try:
                    sample = await one_stream(session, url, body)
                except (aiohttp.ClientError, TimeoutError, RuntimeError) as error:
                    if record:
                        result.errors += 1
                        result.first_error = result.first_error or f"{type(error).__name__}: {error}"
                    continue
                if record:
                    result.samples.append(sample)

        async def phase(count: int, record: bool) -> None:
            quota = [count]
            deadline = time.perf_counter() + time_limit
            streams = min(concurrency, count)
            async with anyio.create_task_group() as group:
                for index in range(streams):
                    group.start_soon(worker, quota, deadline, record, spread * index / streams)

        if warmup:
            await phase(warmup, record=False)
        # No collection during the recorded phase: a full collection of this process pauses every
        # stream at once (tens of ms), which would be counted against whichever target was running.
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            await phase(requests, record=True)
            result.wall_seconds = time.perf_counter() - started
        finally:
            gc.enable()
    return result
