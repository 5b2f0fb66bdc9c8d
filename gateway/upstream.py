"""The vLLM Service: the shared clients, connect retries, and the queue poller.

Two clients, each where it is measured to fit. The OpenAI completion routes (the hot path: every token of
every stream) go through one UpstreamPool (gateway/http1.py): its cost per request is under half of
aiohttp's, and its pool costs the same at 500 open streams as at 5, whereas httpcore's pool re-examines
every pooled connection (one ``poll`` syscall each) whenever a request is queued or released, which took
9 of 20 s of the gateway's CPU at 50 streams (bench/README.md). The low-volume calls (health,
``/v1/models``, the queue poller once a second, the audience API's question, which reads SSE with
httpx-sse) use one httpx client.
"""

from __future__ import annotations

import logging

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import ApiError
from gateway.http1 import (
    ClosedBeforeAnswer,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamPool,
    UpstreamResponse,
)
from gateway.limits import Admission
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

log = logging.getLogger("gateway.upstream")

WAITING_METRIC = "vllm:num_requests_waiting"
# vLLM renders /metrics on its API server's event loop: allow for a busy one.
METRICS_TIMEOUT = 2.0


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    # The pool is sized above the in-flight cap: httpx's default of 100 connections would queue streams
    # in the pool instead of in vLLM. Keep-alive expires before uvicorn's (vLLM's) 5 s so a reused
    # connection is never one the server is closing.
    limits = httpx.Limits(
        max_connections=settings.max_in_flight + 64,
        max_keepalive_connections=settings.max_in_flight,
        keepalive_expiry=4.0,
    )
    # Read timeouts are enforced by the relay (first token, idle gap, total), not per socket read.
    timeout = httpx.Timeout(connect=settings.upstream_connect_timeout, read=None, write=30.0,
                            pool=settings.upstream_connect_timeout)
    return httpx.AsyncClient(base_url=settings.upstream_url, limits=limits, timeout=timeout,
                             headers=upstream_headers(settings))


def upstream_headers(settings: Settings) -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if settings.upstream_api_key is not None:
        headers["authorization"] = f"Bearer {settings.upstream_api_key.get_secret_value()}"
    return headers


def build_stream_pool(settings: Settings) -> UpstreamPool:
    """The pool for the completion routes; create it on the running event loop (the lifespan)."""
    # Same keep-alive reasoning as build_http_client; every admitted stream may keep its connection
    # idle between requests. No read timeout: the relay enforces first token, idle gap and total itself.
    return UpstreamPool(settings.upstream_url, connect_timeout=settings.upstream_connect_timeout,
                        keepalive=4.0, max_idle=settings.max_in_flight,
                        headers={**upstream_headers(settings), "content-type": "application/json"})


class Upstream:
    def __init__(self, client: httpx.AsyncClient, pool: UpstreamPool, settings: Settings,
                 metrics: GatewayMetrics) -> None:
        self.client = client
        self.pool = pool
        self.settings = settings
        self.metrics = metrics

    def _connect_timed_out(self) -> ApiError:
        self.metrics.upstream_errors.labels("connect_timeout").inc()
        self.metrics.upstream_unavailable.inc()
        return ApiError(504, "Timed out connecting to the model server.", code="upstream_timeout")

    def _refused(self, last_attempt: bool) -> ApiError | None:
        """Count a refused connection; the 503 to answer once no attempt is left (None: retry)."""
        self.metrics.upstream_errors.labels("connect").inc()
        if not last_attempt:
            return None
        self.metrics.upstream_unavailable.inc()
        return ApiError(503, "The model server is unavailable.", code="upstream_unavailable",
                        retry_after=self.settings.retry_after_seconds)

    async def _back_off(self, attempt: int) -> None:
        await anyio.sleep(self.settings.upstream_retry_backoff * (2**attempt))

    async def post(self, path: str, body: bytes) -> UpstreamResponse:
        """POST ``body`` to ``path`` on the streaming pool; the caller reads and releases the response.

        Retried, with exponential backoff, when nothing can have reached vLLM: connection refused, and a
        connection that the server closed before answering (a pooled keep-alive connection it closed as
        the request went out: vLLM answers nothing on it, so the request never ran). After the last
        attempt: 503 (refused) or 502. A connect timeout is a 504 at once.
        """
        attempts = self.settings.upstream_connect_attempts
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            try:
                return await self.pool.post(path, body)
            except UpstreamConnectTimeout as exc:
                raise self._connect_timed_out() from exc
            except UpstreamConnectError as exc:
                if error := self._refused(last):
                    raise error from exc
            except ClosedBeforeAnswer as exc:
                self.metrics.upstream_errors.labels("protocol").inc()
                if last:
                    raise ApiError(502, "The model server closed the connection before answering.",
                                   code="upstream_error") from exc
            await self._back_off(attempt)
        raise AssertionError("unreachable")

    async def open(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """Send a request and return the response with its body unread (the caller closes it).

        Connection refused is retried with exponential backoff (nothing reached the server, so it is
        safe); after the last attempt it is a 503. A connect timeout is a 504.
        """
        headers = {"content-type": "application/json"} if body is not None else None
        request = self.client.build_request(method, path, content=body, headers=headers)
        attempts = self.settings.upstream_connect_attempts
        for attempt in range(attempts):
            try:
                return await self.client.send(request, stream=True)
            except httpx.ConnectTimeout as exc:
                raise self._connect_timed_out() from exc
            except httpx.PoolTimeout as exc:
                self.metrics.upstream_errors.labels("pool_timeout").inc()
                raise ApiError(503, "No upstream connection is free; retry shortly.", code="overloaded",
                               retry_after=self.settings.retry_after_seconds) from exc
            except httpx.ConnectError as exc:
                if error := self._refused(attempt + 1 >= attempts):
                    raise error from exc
                await self._back_off(attempt)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                self.metrics.upstream_errors.labels("protocol").inc()
                raise ApiError(502, "The model server closed the connection before answering.",
                               code="upstream_error") from exc
        raise AssertionError("unreachable")


def parse_waiting(metrics_text: str) -> float:
    """Sum ``vllm:num_requests_waiting`` over its label sets (one per model)."""
    # Only the waiting family's lines go to the parser: vLLM's exposition is large and the poll runs on
    # the event loop every second.
    lines = [line for line in metrics_text.splitlines() if WAITING_METRIC in line]
    total = 0.0
    found = False
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        if family.name == WAITING_METRIC:
            for sample in family.samples:
                if sample.name == WAITING_METRIC:
                    total += sample.value
                    found = True
    if not found:
        raise ValueError(f"{WAITING_METRIC} not found in the upstream metrics")
    return total


async def poll_queue(client: httpx.AsyncClient, settings: Settings, admission: Admission,
                     metrics: GatewayMetrics) -> None:
    """Keep ``admission.upstream_waiting`` current; unknown (None) whenever a poll fails."""
    interval = settings.upstream_metrics_poll_seconds
    url = settings.metrics_url
    failures = 0
    while True:
        try:
            response = await client.get(url, timeout=METRICS_TIMEOUT)
            response.raise_for_status()
            admission.upstream_waiting = parse_waiting(response.text)
            metrics.upstream_waiting.set(admission.upstream_waiting)
            failures = 0
        except (httpx.HTTPError, ValueError) as exc:
            admission.upstream_waiting = None
            metrics.upstream_waiting.set(-1)
            failures += 1
            if failures == 1:
                log.warning("upstream metrics poll failed", extra={"error": repr(exc), "url": url})
        await anyio.sleep(interval)
