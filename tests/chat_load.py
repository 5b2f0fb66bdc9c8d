"""A closed-loop chat load: `concurrency` clients, each sending its next request when its answer came.

One asyncio loop in one thread, not a thread per client: with vLLM's CPU engine spinning on both cores,
dozens of client threads contending for the GIL kept requests on the client's side, and vLLM's queue,
which the tests read, stayed short of what the load meant to build.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import httpx


class ChatLoad:
    """Use as a context manager: the load runs inside the block; leaving it waits for every answer."""

    def __init__(self, url: str, model: str, concurrency: int, *, max_tokens: int = 300) -> None:
        self.url = url
        self.concurrency = concurrency
        self.body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "ignore_eos": True,
                                     "messages": [{"role": "user", "content": "Tell a long story."}]}
        self.statuses: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                response = await client.post(f"{self.url}/v1/chat/completions", json=self.body)
            except httpx.HTTPError as error:  # counted and shown by the test, which expects none
                self.statuses[type(error).__name__] += 1
            else:
                self.statuses[response.status_code] += 1

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.concurrency)))

    def __enter__(self) -> ChatLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=300)
