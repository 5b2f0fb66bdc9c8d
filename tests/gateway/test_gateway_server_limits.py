"""The gateway process against clients that never finish a request: header size and count limits, header
and body read timeouts, bounded memory. Real sockets against ``python -m gateway serve``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from gateway.errors import error_body
from tests.gateway.support import Upstream, chat, fake_upstream_process, gateway_process

LIMITS = {"max_header_bytes": 65536, "max_header_count": 100, "header_timeout": 1.5, "body_timeout": 1.5}


@pytest.fixture(scope="module")
def gateway(gateway_s3, fake_upstream: Upstream) -> Iterator[object]:
    with gateway_process(fake_upstream.url, gateway_s3, **LIMITS) as process:
        yield process


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    parts = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        parts.append(data)
    return b"".join(parts)


def status_and_body(answer: bytes) -> tuple[bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def test_headers_over_the_size_limit_get_431_and_the_connection_closed(gateway):
    with connect(gateway.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 70_000)
        answer = read_answer(sock)
    assert status_and_body(answer) == (b"HTTP/1.1 431 Request Header Fields Too Large",
                                       b"The request's headers exceed 65536 bytes.")


def test_too_many_headers_get_431(gateway):
    headers = b"".join(b"X-H%d: v\r\n" % index for index in range(101))
    with connect(gateway.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n" + headers + b"\r\n")
        answer = read_answer(sock)
    assert status_and_body(answer) == (b"HTTP/1.1 431 Request Header Fields Too Large",
                                       b"The request has more than 100 headers.")


def test_headers_that_never_end_get_408_after_the_header_timeout(gateway):
    with connect(gateway.url) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
        answer = read_answer(sock)
        waited = time.monotonic() - started
    assert status_and_body(answer) == (b"HTTP/1.1 408 Request Timeout",
                                       b"The request's headers did not arrive within 1.5 s.")
    assert 1.4 < waited < 5


def test_a_silent_connection_is_closed_after_the_header_timeout(gateway):
    with connect(gateway.url) as sock:
        started = time.monotonic()
        answer = read_answer(sock)
        waited = time.monotonic() - started
    assert status_and_body(answer)[0] == b"HTTP/1.1 408 Request Timeout"
    assert 1.4 < waited < 5


def test_a_body_that_never_ends_gets_408_after_the_body_timeout(gateway):
    with connect(gateway.url) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\": ")
        answer = read_answer(sock)
        waited = time.monotonic() - started
    assert status_and_body(answer) == (b"HTTP/1.1 408 Request Timeout",
                                       b"The request's body did not arrive within 1.5 s.")
    assert 1.4 < waited < 5


def test_a_keep_alive_connection_still_serves_requests_within_the_limits(gateway):
    with connect(gateway.url) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            time.sleep(2)  # longer than the header timeout: an idle keep-alive connection is not timed


def test_ten_unfinished_20_mb_headers_do_not_grow_the_process(gateway):
    process = psutil.Process(gateway.process.pid)
    baseline = process.memory_info().rss
    sockets = [connect(gateway.url) for _ in range(10)]
    chunk = b"a" * 1_048_576
    sent = [0] * len(sockets)
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: ")
        for _ in range(20):
            for index, sock in enumerate(sockets):
                try:
                    sock.sendall(chunk)
                    sent[index] += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    continue
        peak = process.memory_info().rss
        answers = [read_answer(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    # The server stopped reading each of them long before 20 MB: the kernel's buffers hold the rest.
    assert all(count < 20 * 1_048_576 for count in sent), sent
    for answer in answers:
        assert answer == b"" or status_and_body(answer)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert peak - baseline < 16 * 1_048_576, (baseline, peak)


def test_an_answer_over_the_cap_is_refused_without_holding_it(gateway_s3):
    with fake_upstream_process("--interval-ms", "0") as upstream, gateway_process(
            upstream.url, gateway_s3, max_tokens=400_000, max_response_bytes=1_048_576) as gateway:
        process = psutil.Process(gateway.process.pid)
        baseline = process.memory_info().rss
        started = time.monotonic()
        # a 167-byte request whose answer is some 3 MB
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=400_000), timeout=60)
        elapsed = time.monotonic() - started
        grown = process.memory_info().rss - baseline
    assert response.status_code == 502
    assert response.json() == error_body(
        502, "The model server's answer is larger than this gateway's limit of 1048576 bytes; ask for fewer "
             "or shorter completions, or stream.", code="response_too_large")
    assert elapsed < 30
    assert grown < 2 * 1_048_576, grown
