"""Streams over real sockets: the official openai client, client disconnects, timeouts, upstream faults."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise

import anyio
import httpx
import openai
import pytest
from anyio.abc import SocketAttribute, SocketStream

from gateway.app import create_app
from gateway.testing.servers import free_port, serve_in_thread, serve_process
from tests.gateway.support import (
    MODEL,
    chat,
    fake_upstream_process,
    fake_upstream_server,
    gateway_client,
    gateway_process,
    metric_value,
    unanswered_port,
)


@pytest.fixture
def gateway_url(make_settings) -> Iterator[str]:
    with serve_in_thread(create_app(make_settings())) as server:
        yield server.url


def wait_for(condition, timeout: float = 2.0) -> float:
    """Poll until ``condition()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_openai_client_non_streaming_and_streaming_with_usage(gateway_url):
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=3)
    assert completion.choices[0].message.content == "t0 t1 t2 "
    assert completion.usage.completion_tokens == 3
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "t0 t1 t2 t3 "
    assert chunks[-1].usage.completion_tokens == 4
    legacy = client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert legacy.choices[0].text == "t0 t1 "
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.code == "model_not_found"


def test_sse_arrives_chunk_by_chunk_not_buffered(make_settings):
    with fake_upstream_server(interval=0.1) as slow, serve_in_thread(
            create_app(make_settings(upstream_url=slow.url))) as gateway:
        arrivals = []
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=5, stream=True),
                          timeout=10) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic())
    gaps = [b - a for a, b in pairwise(arrivals[1:])]
    assert len(arrivals) == 7  # role chunk, 5 tokens, [DONE]
    assert all(gap > 0.05 for gap in gaps[:4]), gaps


def test_client_disconnect_cancels_the_upstream_request(make_settings):
    with fake_upstream_server(interval=0.05) as upstream, serve_in_thread(
            create_app(make_settings(upstream_url=upstream.url))) as gateway:
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                          json=chat(max_tokens=500, stream=True),
                          timeout=10) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert upstream.app.running == 1
        took = wait_for(lambda: upstream.app.running == 0, timeout=2.0)
        assert upstream.app.cancelled_total == 1
        metrics = httpx.get(f"{gateway.url}/metrics").text
    assert took < 2.0
    assert metric_value(metrics, "gateway_in_flight_requests") == 0
    assert metric_value(metrics, "gateway_client_disconnects_total") == 1


@pytest.mark.slow
def test_in_flight_accounting_is_exact_after_thousands_of_cancelled_streams(gateway_s3):
    """1,600 streams, three in four cancelled: before the first token, after one chunk, after three.

    The upstream and the gateway run in processes of their own; the counts come from their /metrics.
    """
    total, concurrency = 1600, 50
    # Cancelled streams are long (1,000 tokens, 20 ms apart), so the upstream is still generating when
    # the client leaves; generous timeouts, so a loaded machine slows the test down instead of failing it.
    with fake_upstream_process("--interval-ms", "20", "--first-token-ms", "20") as upstream, gateway_process(
            upstream.url, gateway_s3, max_in_flight=1000, log_level="warning", upstream_connect_timeout=60,
            upstream_first_token_timeout=150) as gateway:

        async def run() -> dict[str, int]:
            outcomes = {"early": 0, "after_1": 0, "after_3": 0, "completed": 0}
            tokens = {"early": 1000, "after_1": 1000, "after_3": 1000, "completed": 10}
            limits = httpx.Limits(max_connections=concurrency)
            async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=180) as client:
                semaphore = anyio.Semaphore(concurrency)

                async def one(index: int) -> None:
                    async with semaphore:
                        plan = ("early", "after_1", "after_3", "completed")[index % 4]
                        with anyio.move_on_after(0.01 if plan == "early" else 120) as timer:
                            payload = chat(max_tokens=tokens[plan], stream=True)
                            request = client.stream("POST", "/v1/chat/completions", json=payload)
                            async with request as response:
                                statuses[response.status_code] += 1
                                chunks = 0
                                async for _ in response.aiter_raw():
                                    chunks += 1
                                    if (plan, chunks) in (("after_1", 1), ("after_3", 3)):
                                        break
                                outcomes[plan] += plan != "early"
                        outcomes["early"] += timer.cancelled_caught

                async with anyio.create_task_group() as group:
                    for index in range(total):
                        group.start_soon(one, index)
            return outcomes

        statuses: Counter[int] = Counter()
        started = time.monotonic()
        outcomes = anyio.run(run)
        elapsed = time.monotonic() - started

        def settled() -> bool:
            up = httpx.get(f"{upstream.url}/metrics").text
            gw = httpx.get(f"{gateway.url}/metrics").text
            return (metric_value(up, "vllm:num_requests_running") == 0
                    and metric_value(gw, "gateway_in_flight_requests") == 0)

        wait_for(settled, timeout=5.0)
        gateway_metrics = httpx.get(f"{gateway.url}/metrics").text
        upstream_metrics = httpx.get(f"{upstream.url}/metrics").text
    disconnects = metric_value(gateway_metrics, "gateway_client_disconnects_total")
    upstream_cancelled = metric_value(upstream_metrics, "fake:cancelled_total")
    print(f"{total} streams in {elapsed:.1f} s: {outcomes}; gateway saw {disconnects:.0f} disconnects, "
          f"upstream {upstream_cancelled:.0f} cancellations")
    assert outcomes == {"early": total // 4, "after_1": total // 4, "after_3": total // 4,
                        "completed": total // 4}
    assert set(statuses) == {200}
    # Every stream left after one or three chunks was cancelled upstream (its 20 s were far from over);
    # early ones may not have reached the upstream at all.
    assert disconnects >= total // 2
    assert upstream_cancelled >= total // 2
    assert metric_value(gateway_metrics, "gateway_in_flight_requests") == 0
    assert metric_value(upstream_metrics, "vllm:num_requests_waiting") == 0


@pytest.mark.anyio
async def test_first_token_timeout_is_504_before_any_byte(make_settings):
    with fake_upstream_server(first_token_delay=2.0) as upstream:
        async with gateway_client(make_settings(upstream_url=upstream.url,
                                                upstream_first_token_timeout=0.2)) as c:
            response = await c.post("/v1/chat/completions", json=chat(max_tokens=2, stream=True))
            await anyio.sleep(0.1)
            assert upstream.app.running == 0
            metrics = (await c.get("/metrics")).text
    assert response.status_code == 504
    assert response.json() == {"error": {"message": "The model server sent no token in time.",
                                         "type": "server_error", "param": None, "code": "upstream_timeout"}}
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "first_token_timeout"}) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("overrides", "kind", "message"), [
    ({"upstream_idle_timeout": 0.2}, "idle_timeout", "The model server stopped sending tokens."),
    ({"upstream_total_timeout": 0.5}, "total_timeout",
     "The request exceeded the gateway's total time limit."),
])
async def test_timeouts_after_the_first_byte_end_the_stream_with_an_error_event(
        make_settings, overrides, kind, message):
    with fake_upstream_server(interval=0.4) as upstream:
        async with gateway_client(make_settings(upstream_url=upstream.url, **overrides)) as c:
            response = await c.post("/v1/chat/completions", json=chat(max_tokens=20, stream=True))
            metrics = (await c.get("/metrics")).text
    assert response.status_code == 200
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2]) == {"error": {"message": message, "type": "server_error", "param": None,
                                                "code": "upstream_timeout"}}
    assert all("choices" in json.loads(e) for e in events[:-2])
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": kind}) == 1


@pytest.mark.anyio
async def test_non_streaming_total_timeout_is_504(make_settings):
    with fake_upstream_server(interval=0.1) as upstream:
        async with gateway_client(make_settings(upstream_url=upstream.url, upstream_total_timeout=0.3)) as c:
            response = await c.post("/v1/chat/completions", json=chat(max_tokens=20))
    assert response.status_code == 504
    assert response.json()["error"]["message"] == "The request exceeded the gateway's total time limit."


@pytest.mark.anyio
async def test_connection_refused_with_the_hold_off_is_503_at_once(make_settings):
    settings = make_settings(upstream_url=f"http://127.0.0.1:{free_port()}", hold_max_requests=0)
    async with gateway_client(settings) as c:
        response = await c.post("/v1/chat/completions", json=chat(stream=True))
        metrics = (await c.get("/metrics")).text
        assert c.app.state.admission.in_flight == 0
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"error": {"message": "The model server is unavailable.",
                                         "type": "server_error", "param": None,
                                         "code": "upstream_unavailable"}}
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "connect"}) == 1
    assert metric_value(metrics, "gateway_upstream_unavailable_total") == 1
    assert metric_value(metrics, "gateway_upstream_replicas", {"state": "down"}) == 1


@pytest.mark.anyio
async def test_connect_timeout_is_504_at_once(make_settings):
    with unanswered_port() as port:
        settings = make_settings(upstream_url=f"http://127.0.0.1:{port}", upstream_connect_timeout=0.3,
                                 hold_max_requests=0)
        async with gateway_client(settings) as c:
            # With max_tokens given, the request itself is the first thing to reach for the model server
            # (without it, the gateway first asks vLLM its context length, and that read meets the timeout).
            response = await c.post("/v1/chat/completions", json=chat(stream=True, max_tokens=8))
            metrics = (await c.get("/metrics")).text
    assert response.status_code == 504
    assert response.json() == {"error": {"message": "Timed out connecting to the model server.",
                                         "type": "server_error", "param": None, "code": "upstream_timeout"}}
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "connect_timeout"}) == 1


def test_upstream_dying_mid_stream_ends_the_stream_with_an_error_event(make_settings):
    fake = ["gateway.testing.fake_upstream", "--model", MODEL, "--interval-ms", "50"]
    settings = make_settings(hold_timeout_seconds=1)
    with serve_process(fake, health_path="/health") as upstream, serve_in_thread(
            create_app(settings.model_copy(update={"upstream_url": upstream.url}))) as gateway:
        events = []
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                          json=chat(max_tokens=500, stream=True), timeout=10) as response:
            for line in response.iter_lines():
                if not line:
                    continue
                events.append(line.removeprefix("data: "))
                if len(events) == 3:
                    upstream.process.send_signal(signal.SIGKILL)
        assert response.status_code == 200
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2]) == {"error": {
            "message": "The model server connection was lost.", "type": "server_error", "param": None,
            "code": "upstream_disconnected"}}
        assert all("choices" in json.loads(e) for e in events[:-2])
        assert httpx.get(f"{gateway.url}/healthz").status_code == 200
        # No model server left: the next request is held, then refused at the hold's time bound.
        after = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=1), timeout=10)
        assert after.status_code == 503
        assert after.headers["retry-after"] == "1"
        assert after.json()["error"] == {"message": "No model server became ready in time.",
                                         "type": "server_error", "param": None,
                                         "code": "upstream_unavailable"}
        metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "midstream"}) == 1
    assert metric_value(metrics, "gateway_hold_timeouts_total") == 1
    assert metric_value(metrics, "gateway_held_requests") == 0
    assert metric_value(metrics, "gateway_in_flight_requests") == 0


def test_openai_client_raises_on_the_mid_stream_error_event(make_settings):
    with fake_upstream_server(interval=0.3) as upstream, serve_in_thread(
            create_app(make_settings(upstream_url=upstream.url, upstream_idle_timeout=0.1))) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=5, stream=True)
        with pytest.raises(openai.APIError, match=r"The model server stopped sending tokens\."):
            list(stream)


class HangUpFirst:
    """A TCP server that reads each request and closes the connection without an answer, ``hang_ups``
    times, then answers vLLM's way: what a pooled keep-alive connection looks like when the server
    closes it just as a request goes out."""

    def __init__(self, hang_ups: int) -> None:
        self.hang_ups = hang_ups
        self.requests = 0

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            self.requests += 1
            if self.requests <= self.hang_ups:
                return
            body = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))


@pytest.mark.anyio
@pytest.mark.parametrize(("hang_ups", "status"), [(1, 200), (2, 502)])
async def test_connection_closed_before_an_answer_is_retried_then_502(make_settings, hang_ups, status):
    server = HangUpFirst(hang_ups)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.handle)
        settings = make_settings(upstream_url=f"http://127.0.0.1:{port}", upstream_connect_attempts=2,
                                 upstream_retry_backoff=0, upstream_metrics_poll_seconds=0)
        async with gateway_client(settings) as c:
            # max_tokens given: without it the gateway would first ask this server's /v1/models
            response = await c.post("/v1/chat/completions", json=chat(stream=True, max_tokens=5))
            metrics = (await c.get("/metrics")).text
        group.cancel_scope.cancel()
    assert response.status_code == status
    if status == 200:
        assert response.text.endswith("data: [DONE]\n\n")
    else:
        assert response.json() == {"error": {
            "message": "The model server closed the connection before answering.", "type": "server_error",
            "param": None, "code": "upstream_error"}}
    assert server.requests == 2
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "protocol"}) == hang_ups
    assert metric_value(metrics, "gateway_in_flight_requests") == 0
