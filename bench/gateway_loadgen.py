"""The gateway benchmark's load generator: one asyncio process, one httpx client per cell.

``N`` workers each send streaming chat completions back to back (a closed loop: N streams are always
open) until the cell's request count is reached or its time limit has passed (each stream still sends
its first request); a request already sent is always finished. Per request it records the time to the
first SSE ``data:`` event (TTFT) and the time to the end of the stream. A request counts as an error
unless it answered 200 and ended with ``data: [DONE]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio
import httpx
from httpx_sse import aconnect_sse


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


async def one_stream(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> Sample:
    """Send one streaming request; raises RuntimeError when it does not end as a good stream does."""
    started = time.perf_counter()
    first: float | None = None
    done = False
    async with aconnect_sse(client, "POST", url, json=body) as source:
        response = source.response
        if response.status_code != 200:
            text = (await response.aread())[:200].decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code}: {text}")
        async for event in source.aiter_sse():
            if first is None:
                first = time.perf_counter()
            if event.data == "[DONE]":
                done = True
    ended = time.perf_counter()
    if first is None or not done:
        raise RuntimeError("the stream ended without data: [DONE]")
    return Sample(ttft=first - started, total=ended - started)


def build_client(concurrency: int, request_timeout: float) -> httpx.AsyncClient:
    # One connection per stream, so the client's pool never queues a request (httpx's default is 100).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=60.0)
    timeout = httpx.Timeout(connect=10.0, read=request_timeout, write=10.0, pool=request_timeout)
    return httpx.AsyncClient(limits=limits, timeout=timeout, headers={"accept-encoding": "identity"})


async def run_cell(base_url: str, model: str, *, concurrency: int, requests: int, time_limit: float,
                   warmup: int, max_tokens: int = 32, request_timeout: float = 120.0) -> CellResult:
    """Warm up with ``warmup`` requests (not recorded), then run ``requests`` at ``concurrency``."""
    url = f"{base_url}/v1/chat/completions"
    body = chat_body(model, max_tokens)
    result = CellResult(concurrency=concurrency)
    async with build_client(concurrency, request_timeout) as client:

        async def worker(quota: list[int], deadline: float, record: bool) -> None:
            # Every stream sends its first request; after the deadline no stream starts another.
            first = True
            while quota[0] > 0 and (first or time.perf_counter() < deadline):
                first = False
                quota[0] -= 1
                try:
                    sample = await one_stream(client, url, body)
                except (httpx.HTTPError, RuntimeError) as error:
                    if record:
                        result.errors += 1
                        result.first_error = result.first_error or f"{type(error).__name__}: {error}"
                    continue
                if record:
                    result.samples.append(sample)

        async def phase(count: int, record: bool) -> None:
            quota = [count]
            deadline = time.perf_counter() + time_limit
            async with anyio.create_task_group() as group:
                for _ in range(min(concurrency, count)):
                    group.start_soon(worker, quota, deadline, record)

        if warmup:
            await phase(warmup, record=False)
        started = time.perf_counter()
        await phase(requests, record=True)
        result.wall_seconds = time.perf_counter() - started
    return result
