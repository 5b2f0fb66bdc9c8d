"""The one way to the model servers: replica choice, the hold, one retry policy and one error mapping.

Every upstream call of the gateway (the completion routes, ``/v1/models``, the audience API's question,
the replicas' health probes and queue polls) goes through an UpstreamPool (gateway/http1.py), one per
replica: its cost per request is under half of aiohttp's, and its pool costs the same at 500 open streams
as at 5, whereas httpcore's pool re-examined every pooled connection (one ``poll`` syscall each) whenever
a request was queued or released, which took 9 of 20 s of the gateway's CPU at 50 streams
(bench/README.md).

The retry policy, the same for every call:

- no replica is ready (none discovered, all refused, all loading): the request is held (gateway/hold.py)
  until one is, up to the hold's bounds; with the hold off (``GATEWAY_HOLD_MAX_REQUESTS=0``), 503
  ``upstream_unavailable`` at once (504 ``upstream_timeout`` when the connection timed out);
- a replica that refuses or times out the connection, or answers 503 while its ``/health`` fails, is
  marked down and the request goes to the next ready replica (nothing reached vLLM, so it is safe);
- a pooled keep-alive connection the server closed just as the request went out (no answer came, so
  vLLM never ran it) is retried up to ``GATEWAY_UPSTREAM_CONNECT_ATTEMPTS`` times with exponential
  backoff, then 502 ``upstream_error``.

The error mapping (``upstream_http_error``) turns vLLM's error answers into the gateway's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import anyio
import httpx

from gateway.errors import ApiError
from gateway.hold import Hold, Ticket
from gateway.http1 import (
    ClosedBeforeAnswer,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamResponse,
)
from gateway.metrics import GatewayMetrics
from gateway.replicas import Replica, Replicas
from gateway.settings import Settings

log = logging.getLogger("gateway.upstream")


def upstream_headers(settings: Settings) -> dict[str, str]:
    headers = {"accept-encoding": "identity", "content-type": "application/json"}
    if settings.upstream_api_key is not None:
        headers["authorization"] = f"Bearer {settings.upstream_api_key.get_secret_value()}"
    return headers


def upstream_http_error(status: int, body: bytes) -> ApiError:
    """Map an upstream error answer to ours, keeping vLLM's message, param and code."""
    message, param, code = "", None, None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        message = str(inner.get("message") or inner.get("detail") or "")
        param = inner.get("param") if isinstance(inner.get("param"), str) else None
        code = inner.get("code") if isinstance(inner.get("code"), str) else None
    if 400 <= status < 500 and status != 429:
        return ApiError(status, message or f"The model server refused the request ({status}).",
                        code=code, param=param)
    if status in (429, 503):
        return ApiError(503, message or "The model server is overloaded.", code="upstream_overloaded",
                        retry_after=1)
    return ApiError(502, f"The model server failed ({status}): {message}".rstrip(": "), code="upstream_error")


class HoldHooks(Protocol):
    """What a caller does around the hold: its timers run only while the request is really upstream."""

    def holding(self) -> None: ...

    async def tick(self, seconds_held: float) -> None: ...

    def sending(self) -> None: ...


class Upstream:
    def __init__(self, replicas: Replicas, hold: Hold, settings: Settings, metrics: GatewayMetrics) -> None:
        self.replicas = replicas
        self.hold = hold
        self.settings = settings
        self.metrics = metrics

    async def request(self, method: str, path: str, body: bytes = b"", *, hooks: HoldHooks | None = None,
                      hold: bool = True, unserved: bool = True) -> UpstreamResponse:
        """Send the request to a ready replica and return the answer with its body unread.

        The caller reads the body and must ``release()`` the response (which closes the connection when
        the body was not read to its end: that is how vLLM learns the request is no longer wanted).
        ``hold=False``: no ready replica is a 503 at once. ``unserved=False``: the gateway's own call
        (not a client's), which does not count towards the wake signal.
        """
        replicas = self.replicas
        ticket: Ticket | None = None
        closed_early = 0
        connect_error: ApiError | None = None
        while True:
            replica = replicas.pick()
            if replica is None:
                if not (hold and self.hold.enabled):
                    if unserved:
                        self.metrics.upstream_unavailable.inc()
                    raise connect_error or self.hold.unavailable("The model server is unavailable.")
                ticket = ticket or self.hold.ticket()
                if hooks is not None:
                    hooks.holding()
                await self.hold.wait(ticket, replicas.available, hooks.tick if hooks is not None else None)
                continue
            if hooks is not None:
                hooks.sending()
            replica.outstanding += 1
            try:
                response = await replica.pool.request(method, path, body)
            except UpstreamConnectTimeout:
                replica.outstanding -= 1
                self.metrics.upstream_errors.labels("connect_timeout").inc()
                replicas.mark_down(replica)
                connect_error = ApiError(504, "Timed out connecting to the model server.",
                                         code="upstream_timeout")
                continue
            except UpstreamConnectError:
                replica.outstanding -= 1
                self.metrics.upstream_errors.labels("connect").inc()
                replicas.mark_down(replica)
                connect_error = None
                continue
            except ClosedBeforeAnswer as exc:
                replica.outstanding -= 1
                self.metrics.upstream_errors.labels("protocol").inc()
                closed_early += 1
                if closed_early >= self.settings.upstream_connect_attempts:
                    raise ApiError(502, "The model server closed the connection before answering.",
                                   code="upstream_error") from exc
                await anyio.sleep(self.settings.upstream_retry_backoff * (2 ** (closed_early - 1)))
                continue
            except BaseException:
                replica.outstanding -= 1
                raise
            replica.sent.inc()
            response.on_release = _releaser(replica)
            if response.status == 503:
                try:
                    loading = not await replicas.healthy(replica)
                except BaseException:
                    response.release()
                    raise
                if loading:
                    # Loading (or dead): vLLM answers 503 on /health until its engine serves. Not the
                    # overload 503 of a full queue, which passes through as upstream_overloaded.
                    response.release()
                    self.metrics.upstream_errors.labels("loading").inc()
                    replicas.mark_down(replica)
                    continue
            return response

    async def read(self, method: str, path: str, limit: int, *, unserved: bool = True) -> tuple[int, bytes]:
        """A small non-streamed call (``/v1/models``): status and body, not held."""
        response = await self.request(method, path, hold=False, unserved=unserved)
        try:
            return response.status, await response.read(limit)
        except UpstreamError as exc:
            raise ApiError(502, "The model server connection was lost.",
                           code="upstream_disconnected") from exc
        finally:
            response.release()


def _releaser(replica: Replica) -> Callable[[], None]:
    def release() -> None:
        replica.outstanding -= 1

    return release


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: UpstreamResponse) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.response.chunk():
            yield chunk

    async def aclose(self) -> None:
        self.response.release()


def as_httpx_response(response: UpstreamResponse) -> httpx.Response:
    """The answer as an ``httpx.Response`` streaming its body, for readers built on httpx (httpx-sse)."""
    return httpx.Response(response.status, headers=list(response.headers.items()), stream=_Body(response))
