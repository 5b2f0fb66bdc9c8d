"""A lean HTTP/1.1 client for the completion routes: one keep-alive pool to the vLLM Service.

Every request of the two completion routes posts here, and the cost of sending it and of reading the
answer's head is on the request's path to its first token. On the benchmark machine aiohttp's client
took 0.36 ms of CPU per one-token answer; this one, an asyncio protocol over httptools' C parser (the
parser uvicorn serves the gateway with), takes 0.16 ms (bench/upstream_client_bench.py, bench/README.md).

It does what the relay needs and nothing more: POST a body of known length to one origin, hand back
the status and the headers, then the body as it arrives (chunked decoding by the parser, reading paused
while the relay's client is slower than vLLM), and a keep-alive pool. No redirects, cookies, proxies,
compression or request streaming: the relay uses none of them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

# Reading from vLLM pauses while this much of an answer waits for the relay's client.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The connection failed after the request went out (closed, reset, or not HTTP)."""


class ClosedBeforeAnswer(UpstreamError):
    """The server closed the connection before a byte of its answer: the request never ran."""


class UpstreamConnectError(Exception):
    """No connection could be opened (refused, unreachable, name unknown)."""


class UpstreamConnectTimeout(UpstreamConnectError):
    """Opening a connection took longer than the connect timeout."""


class UpstreamResponse:
    """One answer: ``status`` and ``headers`` (names in lower case) once the head is in, then its body."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_error",
        "_head",
        "_header_list",
        "_released",
        "_waiter",
        "answered",
        "complete",
        "headers",
        "on_release",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._head: asyncio.Future[None] = connection.loop.create_future()
        self._header_list: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.complete = False  # the parser saw the whole message
        self.answered = False  # a byte of the answer arrived
        self._released = False
        # Called once when the answer is released (the router's outstanding count per replica).
        self.on_release: Callable[[], None] | None = None

    # Fed by the connection ------------------------------------------------------------------------

    def _on_head(self, status: int) -> None:
        self.status = status
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                        for name, value in self._header_list}
        if not self._head.done():
            self._head.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            # Retrieved by post() unless it was cancelled first; either way not worth a warning.
            self._head.exception()
        self._wake()

    def delimited_by_close(self) -> bool:
        """An answer with neither a length nor chunked encoding: its body runs to the connection's end."""
        return ("content-length" not in self.headers and "transfer-encoding" not in self.headers
                and self.status >= 200 and self.status not in (204, 304))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Read by the relay ------------------------------------------------------------------------------

    async def chunk(self) -> bytes:
        """The next part of the body as it arrived; ``b""`` at its end. Raises UpstreamError."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._connection.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered < LOW_WATER:
            self._connection.resume_reading()
        return data

    async def read(self, limit: int | None = None) -> bytes:
        """The body, or its first ``limit`` bytes (the rest is not waited for)."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            data = await self.chunk()
            if not data:
                break
            parts.append(data)
            size += len(data)
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        """Give the connection back to the pool when the whole answer was read, otherwise close it.

        Closing is what tells vLLM the client has gone (it aborts the request on the disconnect), so an
        answer left early must never go back to the pool. Synchronous: it runs even while the relay is
        being cancelled.
        """
        if self._released:
            return
        self._released = True
        if self.on_release is not None:
            self.on_release()
        connection = self._connection
        if self.complete and not self._chunks and self._error is None and connection.reusable():
            connection.pool.put(connection)
        else:
            connection.close()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self._paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: a server speaking out of turn is not to be trusted
            self.close()
            return
        response.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(UpstreamError(f"the model server's answer is not valid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None:
            self.pool.forget(self)
            return
        if response.complete:
            return
        if response.status and response.delimited_by_close():
            response._finish()  # the end of the connection is the end of such an answer (RFC 9112, 6.3)
            return
        if not response.answered:
            response._fail(ClosedBeforeAnswer("the model server closed the connection before answering"))
        else:
            reason = f": {exc}" if exc else ""
            response._fail(UpstreamError(f"the model server closed the connection mid-answer{reason}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response._header_list.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.response is not None
        # Asked now: once the message is complete the parser has reset and no longer knows.
        self.keep_alive = self.parser.should_keep_alive()
        self.response._on_head(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response._finish()

    # Used by the pool and the response

    def send(self, head: bytes, body: bytes) -> UpstreamResponse:
        assert self.transport is not None
        self.response = UpstreamResponse(self)
        self.transport.write(head + body)
        return self.response

    def reusable(self) -> bool:
        return not self.closed and self.keep_alive

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class UpstreamPool:
    """Keep-alive connections to one origin (``http://host:port[/prefix]``, or https)."""

    base_url: str

    def __init__(self, base_url: str, *, connect_timeout: float, keepalive: float, max_idle: int,
                 headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.max_idle = max_idle
        default_port = 443 if parts.scheme == "https" else 80
        host_header = parts.hostname if self.port == default_port else f"{parts.hostname}:{self.port}"
        if ":" in parts.hostname:  # an IPv6 literal keeps its brackets in the Host header
            host_header = parts.netloc.rsplit("@", 1)[-1]
        fixed = {"host": host_header, **headers}
        self._fixed_head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self.closing = False

    def _head(self, method: str, path: str, length: int) -> bytes:
        return b"".join((f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1"), self._fixed_head,
                         b"content-length: %d\r\n\r\n" % length))

    async def post(self, path: str, body: bytes) -> UpstreamResponse:
        """POST ``body`` to ``path``: see ``request``."""
        return await self.request("POST", path, body)

    async def get(self, path: str) -> UpstreamResponse:
        return await self.request("GET", path, b"")

    async def request(self, method: str, path: str, body: bytes) -> UpstreamResponse:
        """Send the request and wait for the answer's head.

        Raises UpstreamConnectTimeout, UpstreamConnectError (no connection), ClosedBeforeAnswer (safe to
        retry) or UpstreamError. Cancelled while waiting, it closes the connection, which is how vLLM
        learns that the request is no longer wanted.
        """
        reused = self._take()
        if reused is not None:
            try:
                return await self._send(reused, method, path, body)
            except ClosedBeforeAnswer:
                # The keep-alive race: the server closed this idle connection as the request went out
                # (uvicorn closes after 5 s idle, later than that when its event loop is busy). Nothing
                # was answered; the request goes once more, on a new connection, as HTTP clients do.
                pass
        return await self._send(await self._connect(), method, path, body)

    async def _send(self, connection: _Connection, method: str, path: str, body: bytes) -> UpstreamResponse:
        response = connection.send(self._head(method, path, len(body)), body)
        try:
            await response._head
        except BaseException:
            connection.close()
            raise
        return response

    def _take(self) -> _Connection | None:
        now = self.loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > self.keepalive:
                connection.close()
                continue
            return connection
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, connection = await self.loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl)
        except TimeoutError as exc:
            raise UpstreamConnectTimeout(f"connecting to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return connection

    def put(self, connection: _Connection) -> None:
        connection.response = None
        if self.closing or len(self._idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Close the idle connections; answers still being read close theirs on release."""
        self.closing = True
        while self._idle:
            self._idle.pop().close()
