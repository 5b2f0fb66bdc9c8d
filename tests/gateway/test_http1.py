"""gateway/http1.py against scripted HTTP servers on loopback: reuse, streaming, and every way to fail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.http1 import (
    HIGH_WATER,
    ClosedBeforeAnswer,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamPool,
)
from tests.gateway.support import unanswered_port

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"model": "m", "prompt": "hi"}'


class Scripted:
    """A loopback server running ``handler`` per connection; counts connections and keeps requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()
        self.port = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        finally:
            writer.close()


@asynccontextmanager
async def scripted(handler: Callable[[Scripted, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                   ) -> AsyncIterator[Scripted]:
    server_state = Scripted(lambda r, w: handler(server_state, r, w))
    server = await asyncio.start_server(server_state._serve, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    try:
        yield server_state
    finally:
        server.close()


def pool_for(port: int, **overrides: float) -> UpstreamPool:
    options = {"connect_timeout": 2.0, "keepalive": 4.0, "max_idle": 8, **overrides}
    return UpstreamPool(f"http://127.0.0.1:{port}", headers={"content-type": "application/json"},
                        **options)  # type: ignore[arg-type]


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def answer_each(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      extra_header: bytes = b"") -> None:
    while await server.read_request(reader) is not None:
        body = b'{"ok": true}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra_header
                     + b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def test_the_request_goes_out_as_sent_and_a_kept_alive_connection_is_reused() -> None:
    async with scripted(answer_each) as server:
        pool = pool_for(server.port)
        for _ in range(3):
            response = await pool.post("/v1/completions", BODY)
            assert (response.status, response.headers["content-type"]) == (200, "application/json")
            assert await response.read() == b'{"ok": true}'
            response.release()
        pool.close()
    assert server.connections == 1
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/completions HTTP/1.1"
    assert sorted(lines[1:]) == sorted([f"host: 127.0.0.1:{server.port}".encode(),
                                        b"content-type: application/json",
                                        b"content-length: %d" % len(BODY)])
    assert body == BODY


async def test_an_answer_that_closes_the_connection_is_not_reused() -> None:
    async def close_after(server: Scripted, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await answer_each(server, reader, writer, extra_header=b"connection: close\r\n")

    async with scripted(close_after) as server:
        pool = pool_for(server.port)
        for _ in range(2):
            response = await pool.post("/v1/completions", BODY)
            assert await response.read() == b'{"ok": true}'
            response.release()
    assert server.connections == 2


async def test_an_idle_connection_past_its_keep_alive_is_not_reused() -> None:
    async with scripted(answer_each) as server:
        pool = pool_for(server.port, keepalive=0.05)
        for _ in range(2):
            response = await pool.post("/v1/completions", BODY)
            await response.read()
            response.release()
            await asyncio.sleep(0.1)
    assert server.connections == 2


async def test_a_stream_arrives_chunk_by_chunk_not_buffered() -> None:
    go_on = asyncio.Event()

    async def stream(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(SSE_HEAD + chunked(b"data: 1\n\n"))
        await writer.drain()
        await go_on.wait()  # the second event only once the client has the first
        writer.write(chunked(b"data: 2\n\n") + b"0\r\n\r\n")
        await writer.drain()
        await server.read_request(reader)

    async with scripted(stream) as server:
        pool = pool_for(server.port)
        response = await pool.post("/v1/chat/completions", BODY)
        assert response.headers["content-type"] == "text/event-stream"
        assert await asyncio.wait_for(response.chunk(), 2) == b"data: 1\n\n"
        go_on.set()
        assert await asyncio.wait_for(response.chunk(), 2) == b"data: 2\n\n"
        assert await response.chunk() == b""
        assert response.complete
        response.release()
        assert pool._idle == [response._connection]


async def test_releasing_an_unfinished_answer_closes_the_connection() -> None:
    """How vLLM learns that the client has gone: the connection closes under the running request."""

    async def endless(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(SSE_HEAD)
        while True:
            writer.write(chunked(b"data: token\n\n"))
            await writer.drain()
            if await reader.read(1) == b"":  # EOF: the client closed
                server.closed_by_client.set()
                return

    async with scripted(endless) as server:
        pool = pool_for(server.port)
        response = await pool.post("/v1/completions", BODY)
        assert await response.chunk() == b"data: token\n\n"
        response.release()
        await asyncio.wait_for(server.closed_by_client.wait(), 2)
        assert pool._idle == []


async def test_cancelled_while_waiting_for_the_answer_closes_the_connection() -> None:
    async def silent(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if await reader.read(1) == b"":
            server.closed_by_client.set()

    async with scripted(silent) as server:
        pool = pool_for(server.port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.post("/v1/completions", BODY), 0.2)
        await asyncio.wait_for(server.closed_by_client.wait(), 2)


async def test_a_connection_closed_before_any_answer_is_closed_before_answer() -> None:
    async def hang_up(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)

    async with scripted(hang_up) as server:
        with pytest.raises(ClosedBeforeAnswer):
            await pool_for(server.port).post("/v1/completions", BODY)


async def test_a_kept_alive_connection_closed_as_it_is_reused_goes_again_on_a_new_one() -> None:
    """The keep-alive race (the server times an idle connection out as a request goes out on it) costs
    the caller nothing: the pool sends again on a fresh connection. A fresh connection that hangs up is
    the caller's ClosedBeforeAnswer (the test above)."""

    async def first_answers_then_hangs_up(server: Scripted, reader: asyncio.StreamReader,
                                          writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await server.read_request(reader)  # the reuse: read, and hang up unanswered
            return
        await answer_each(server, reader, writer)

    async with scripted(first_answers_then_hangs_up) as server:
        pool = pool_for(server.port)
        for expected in (b"ok", b'{"ok": true}'):
            response = await pool.post("/v1/completions", BODY)
            assert await response.read() == expected
            response.release()
        pool.close()
    assert server.connections == 2
    assert len(server.requests) == 3


async def test_a_connection_lost_mid_answer_ends_the_body_with_an_error() -> None:
    async def die(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(SSE_HEAD + chunked(b"data: 1\n\n"))
        await writer.drain()

    async with scripted(die) as server:
        pool = pool_for(server.port)
        response = await pool.post("/v1/completions", BODY)
        assert await response.chunk() == b"data: 1\n\n"
        with pytest.raises(UpstreamError, match="mid-answer") as caught:
            await response.chunk()
        assert not isinstance(caught.value, ClosedBeforeAnswer)
        response.release()
        assert pool._idle == []


async def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    async def until_close(server: Scripted, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"ok\": ")
        await writer.drain()
        writer.write(b"true}")
        await writer.drain()

    async with scripted(until_close) as server:
        pool = pool_for(server.port)
        response = await pool.post("/v1/completions", BODY)
        assert await response.read() == b'{"ok": true}'
        assert response.complete
        response.release()
        assert pool._idle == []


async def test_an_answer_that_is_not_http_is_an_upstream_error() -> None:
    async def garbage(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read(1)

    async with scripted(garbage) as server:
        with pytest.raises(UpstreamError, match="not valid HTTP"):
            await pool_for(server.port).post("/v1/completions", BODY)


async def test_reading_pauses_while_the_answer_waits_unread() -> None:
    size = 4 * HIGH_WATER
    part = b"x" * 16384

    async def flood(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // len(part)):
            writer.write(part)
            await writer.drain()
        await server.read_request(reader)

    async with scripted(flood) as server:
        pool = pool_for(server.port)
        response = await pool.post("/v1/completions", BODY)
        transport = response._connection.transport
        assert transport is not None
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not transport.is_reading():
                break
        assert not transport.is_reading()
        assert HIGH_WATER < response._buffered < size
        assert len(await response.read()) == size
        assert transport.is_reading()


async def test_refused_and_timed_out_connections() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with pytest.raises(UpstreamConnectError, match="cannot connect"):
        await pool_for(closed_port).post("/v1/completions", BODY)

    with unanswered_port() as port, pytest.raises(UpstreamConnectTimeout):
        await pool_for(port, connect_timeout=0.3).post("/v1/completions", BODY)


def test_only_http_urls_are_accepted() -> None:
    async def build() -> None:
        UpstreamPool("ftp://model-server", connect_timeout=1, keepalive=1, max_idle=1, headers={})

    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(build())
