"""What the model server says about the model it serves: its context length, and the public view of its
``/v1/models`` answer.

vLLM answers 400 to a request whose prompt plus ``max_tokens`` exceeds ``--max-model-len``; the
gateway's default ``max_tokens`` must therefore fit the context of the server actually behind it (512 in
the local stack, 4096 in the cluster). The length is read from ``/v1/models`` (``max_model_len``), kept
for ``REFRESH_SECONDS``, and ``GATEWAY_MODEL_MAX_LEN`` stands in while the server cannot be asked
(scaled to zero, starting).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from gateway.errors import ApiError
from gateway.settings import Settings

log = logging.getLogger("gateway.model")

REFRESH_SECONDS = 60.0
RETRY_SECONDS = 5.0
FETCH_TIMEOUT = 1.0
# Fields of a model entry that say nothing about the server's insides (vLLM's "root" is the weights'
# path or S3 URI, "parent" and "permission" are internals).
PUBLIC_MODEL_FIELDS = ("id", "object", "created", "owned_by", "max_model_len")


def public_models(answer: Any, allowed: frozenset[str]) -> dict[str, Any]:
    """The allowed models of a ``/v1/models`` answer, each with its public fields only."""
    entries = answer.get("data") if isinstance(answer, dict) else None
    models = [{field: entry[field] for field in PUBLIC_MODEL_FIELDS if field in entry}
              for entry in entries or [] if isinstance(entry, dict) and entry.get("id") in allowed]
    return {"object": "list", "data": models}


def context_length(answer: Any, model: str) -> int | None:
    for entry in (answer.get("data") if isinstance(answer, dict) else None) or []:
        if isinstance(entry, dict) and entry.get("id") == model:
            length = entry.get("max_model_len")
            if isinstance(length, int) and not isinstance(length, bool) and length > 0:
                return length
    return None


class ModelServer(Protocol):
    """What the context needs of the upstream (gateway.upstream.Upstream): a small non-streamed read."""

    async def read(self, method: str, path: str, limit: int, *, unserved: bool = True) -> tuple[int, bytes]:
        ...


MODELS_MAX_BYTES = 1024 * 1024


class ModelContext:
    """The served model's context length, read from the model server and cached."""

    def __init__(self, upstream: ModelServer, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        self.settings = settings
        self._clock = clock
        self._length: int | None = None
        self._fresh_until = 0.0
        self._next_attempt = 0.0
        self._lock = anyio.Lock()

    def remember(self, answer: Any) -> None:
        """Take the length from a ``/v1/models`` answer read for another reason."""
        length = context_length(answer, self.settings.model)
        if length is not None:
            if length != self._length:
                log.info("model context", extra={"model": self.settings.model, "max_model_len": length})
            self._length = length
            self._fresh_until = self._clock() + REFRESH_SECONDS

    @property
    def cached(self) -> int:
        return self._length or self.settings.model_max_len

    async def length(self) -> int:
        """The context length: cached, read now (at most ``FETCH_TIMEOUT``), or the setting."""
        now = self._clock()
        if now < self._fresh_until or now < self._next_attempt:
            return self.cached
        async with self._lock:
            if self._clock() < self._fresh_until:
                return self.cached
            await self._fetch()
        return self.cached

    async def _fetch(self) -> None:
        try:
            with anyio.fail_after(FETCH_TIMEOUT):
                status, body = await self.upstream.read("GET", "/v1/models", MODELS_MAX_BYTES, unserved=False)
            if status == 200:
                self.remember(json.loads(body))
                if self._clock() < self._fresh_until:
                    return
        except (ApiError, TimeoutError, ValueError) as exc:
            log.debug("model context unavailable", extra={"error": repr(exc)})
        self._next_attempt = self._clock() + RETRY_SECONDS
