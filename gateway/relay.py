"""Relaying one request to the vLLM Service and its response back, stream or not.

The response object owns the ASGI exchange: it takes the in-flight slot, watches for the client's
``http.disconnect`` (cancelling the upstream request when it comes), enforces the first-token, idle and
total timeouts with one cancel scope whose deadline moves on each chunk, and releases everything in
``finally``. Until the first upstream body byte nothing is sent to the client, so every failure before
it is a proper HTTP error status; after it, failures become one SSE error event followed by ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import ApiError, send_error, sse_error_event
from gateway.http1 import UpstreamError, UpstreamResponse
from gateway.limits import Admission
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.upstream import Upstream, upstream_http_error

log = logging.getLogger("gateway.relay")

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
MAX_ERROR_BODY = 64 * 1024
KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(slots=True)
class RelayServices:
    settings: Settings
    upstream: Upstream
    admission: Admission
    metrics: GatewayMetrics


def events_end(data: bytes) -> int:
    """Index just past the last complete SSE event in ``data`` (0 when none is complete).

    Only complete events are relayed, so a stream cut by an upstream failure never leaves the client
    half an event before the error event. vLLM writes one whole event per chunk: the fast path.
    """
    if data.endswith(b"\n\n"):
        return len(data)
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def answer_too_large(limit: int) -> ApiError:
    return ApiError(502, f"The model server's answer is larger than this gateway's limit of {limit} bytes; "
                         "ask for fewer or shorter completions, or stream.", code="response_too_large")


async def relay_answer(response: UpstreamResponse, send: Send, limit: int,
                       on_start: Callable[[], None]) -> None:
    """A non-streamed answer, never held whole beyond ``limit`` bytes (``on_start`` when its head is sent).

    With a Content-Length (vLLM always gives one) the answer is refused up front when too large and
    otherwise passed through chunk by chunk as it arrives. Without one it is read up to ``limit`` and
    refused past it.
    """
    content_type = response.headers.get("content-type", "application/json").encode()
    declared = response.headers.get("content-length", "")
    if not declared.isdigit():
        body = await response.read(limit + 1)
        if len(body) > limit:
            raise answer_too_large(limit)
        declared = str(len(body))
        chunks = [body]
    elif int(declared) > limit:
        raise answer_too_large(limit)
    else:
        chunks = []
    on_start()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type), (b"content-length", declared.encode())]})
    for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if not chunks:
        while chunk := await response.chunk():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, on_disconnect: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


async def run_watching_disconnect(receive: Receive, body: Callable[[], Awaitable[None]],
                                  metrics: GatewayMetrics) -> bool:
    """Run ``body`` until it ends or the client disconnects (then cancel it). True when it ended.

    The watcher is a plain asyncio task cancelled on the way out, not an anyio task group: setting up a
    group and starting a task in it took about 0.13 ms of every request's path to its first token at 50
    streams (bench/README.md), and the watcher needs none of what a group adds (it only waits on
    ``receive``, and nothing waits for it).
    """
    finished = False
    scope = anyio.CancelScope()

    def disconnected() -> None:
        if not finished:
            metrics.client_disconnects.inc()
            scope.cancel()

    watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, disconnected))
    try:
        with scope:
            await body()
            finished = True
    finally:
        watcher.cancel()
    return finished


class RelayResponse(Response):
    """A proxied OpenAI request: ``stream`` picks SSE passthrough or a plain JSON answer."""

    def __init__(self, services: RelayServices, path: str, body: bytes, stream: bool, route: str) -> None:
        self.services = services
        self.path = path
        self.payload = body
        self.stream = stream
        self.route = route
        self.background = None
        self.status_code = 200
        self.started = False  # the response head went to the client
        self.answered = False  # the first upstream byte came

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        arrived = scope.get("state", {}).get("arrived", time.perf_counter())
        try:
            services.admission.acquire()
        except ApiError as error:
            await send_error(send, error)
            return
        try:
            await run_watching_disconnect(receive, lambda: self._relay(send, arrived), services.metrics)
        finally:
            services.admission.release()
            services.metrics.request_duration.labels(self.route).observe(time.perf_counter() - arrived)

    async def _relay(self, send: Send, arrived: float) -> None:
        settings = self.services.settings
        metrics = self.services.metrics
        # The event loop's clock is anyio's on asyncio (the gateway runs on asyncio, see gateway/cli.py);
        # read directly, it costs a fraction of anyio.current_time(), and it is read on every chunk.
        clock = asyncio.get_running_loop().time
        idle = settings.upstream_idle_timeout
        response: UpstreamResponse | None = None
        # The timeouts run from when the request goes upstream: a hold (no model server ready yet) has
        # its own bound, and sets the deadline aside while it lasts.
        with anyio.CancelScope() as timer:
            hooks = _RelayHooks(self, send, timer, settings)
            try:
                response = await self.services.upstream.request("POST", self.path, self.payload, hooks=hooks)
                total_deadline = hooks.total_deadline
                if response.status != 200:
                    body = await response.read(MAX_ERROR_BODY)
                    await self._fail(send, upstream_http_error(response.status, body))
                    return
                if not self.stream:
                    await relay_answer(response, send, settings.max_response_bytes, self._mark_started)
                    return
                pending = b""
                # Moving the deadline reschedules a timer: do it at most every tenth of the idle timeout
                # (so the idle limit is enforced between 0.9x and 1x), not on every chunk.
                slack = idle / 10
                moved_at = -slack
                while chunk := await response.chunk():
                    now = clock()
                    if now - moved_at >= slack:
                        timer.deadline = min(total_deadline, now + idle)
                        moved_at = now
                    if not self.answered:
                        metrics.time_to_first_token.labels(self.route).observe(time.perf_counter() - arrived)
                        self.answered = True
                        if not self.started:
                            self.started = True
                            await send({"type": "http.response.start", "status": 200,
                                        "headers": SSE_HEADERS})
                    data = pending + chunk if pending else chunk
                    end = events_end(data)
                    if end == len(data):
                        pending = b""
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                    elif end:
                        pending = data[end:]
                        await send({"type": "http.response.body", "body": data[:end], "more_body": True})
                    else:
                        pending = data
                if not self.started:
                    self.started = True
                    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                await send({"type": "http.response.body", "body": pending, "more_body": False})
            except ApiError as error:
                await self._fail(send, error)
            except UpstreamError as exc:
                metrics.upstream_errors.labels("midstream" if self.answered else "protocol").inc()
                log.warning("upstream failed", extra={"error": repr(exc), "started": self.answered})
                await self._fail(send, ApiError(502, "The model server connection was lost.",
                                                code="upstream_disconnected"))
            finally:
                if response is not None:
                    response.release()
        if timer.cancelled_caught:
            if clock() >= hooks.total_deadline:
                kind, message = "total_timeout", "The request exceeded the gateway's total time limit."
            elif not self.answered:
                kind, message = "first_token_timeout", "The model server sent no token in time."
            else:
                kind, message = "idle_timeout", "The model server stopped sending tokens."
            metrics.upstream_errors.labels(kind).inc()
            await self._fail(send, ApiError(504, message, code="upstream_timeout"))

    def _mark_started(self) -> None:
        self.started = True

    async def _fail(self, send: Send, error: ApiError) -> None:
        if self.started and not self.stream:
            # A JSON answer cut after its head: ending it short closes the connection, which the
            # client sees as the failure (its Content-Length was not met).
            return
        if self.started:
            await send({"type": "http.response.body", "body": sse_error_event(error), "more_body": False})
        else:
            self.started = True
            await send_error(send, error)


class _RelayHooks:
    """The relay's timers around the hold, and keep-alives to a held stream."""

    __slots__ = ("keepalive", "next_keepalive", "relay", "send", "settings", "timer", "total_deadline")

    def __init__(self, relay: RelayResponse, send: Send, timer: anyio.CancelScope,
                 settings: Settings) -> None:
        self.relay = relay
        self.send = send
        self.timer = timer
        self.settings = settings
        self.keepalive = settings.hold_keepalive_seconds
        self.next_keepalive = self.keepalive
        self.total_deadline = math.inf

    def holding(self) -> None:
        self.timer.deadline = math.inf
        self.total_deadline = math.inf

    def sending(self) -> None:
        now = asyncio.get_running_loop().time()
        settings = self.settings
        self.total_deadline = now + settings.upstream_total_timeout
        first = now + settings.upstream_first_token_timeout if self.relay.stream else self.total_deadline
        self.timer.deadline = min(self.total_deadline, first)

    async def tick(self, seconds_held: float) -> None:
        # Only streams get keep-alives: an SSE comment is part of the stream's grammar, whereas anything
        # sent to a non-streaming client would commit the status (200) before the outcome is known.
        relay = self.relay
        if not relay.stream or seconds_held < self.next_keepalive:
            return
        self.next_keepalive = seconds_held + self.keepalive
        if not relay.started:
            relay.started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self.send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
