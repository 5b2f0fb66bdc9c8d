"""The gateway as the inference router, against the synthetic upstream: the hold during a cold start,
balancing across replicas, replica discovery, and the dependency status."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import anyio
import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.cli import GatewayServer
from gateway.settings import Settings
from gateway.testing.servers import serve_in_thread
from tests.gateway.support import MODEL, chat, fake_upstream_server, metric_value
from tools.stack.processes import free_port

UNAVAILABLE = {"type": "server_error", "param": None, "code": "upstream_unavailable"}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def held(gateway_url: str) -> float:
    return metric_value(httpx.get(f"{gateway_url}/metrics").text, "gateway_held_requests")


def test_requests_held_while_the_model_server_loads_go_through_in_arrival_order(make_settings):
    with fake_upstream_server(tokens=3, interval=0.001) as upstream:
        upstream.app.loading = True
        settings = make_settings(upstream_url=upstream.url, upstream_probe_seconds=0.05)
        with serve_in_thread(create_app(settings)) as gateway:
            results: dict[str, httpx.Response] = {}

            def send(name: str, stream: bool) -> None:
                results[name] = httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                                           json=chat(name, max_tokens=3, stream=stream))

            threads = []
            for index in range(6):
                thread = threading.Thread(target=send, args=(f"q{index}", index % 2 == 0))
                thread.start()
                threads.append(thread)
                wait_for(lambda index=index: held(gateway.url) == index + 1)
            time.sleep(1.2)  # a tick: the wake signal counts held seconds
            ready = httpx.get(f"{gateway.url}/readyz")
            metrics = httpx.get(f"{gateway.url}/metrics").text
            upstream.app.loading = False
            for thread in threads:
                thread.join(10)
            after = httpx.get(f"{gateway.url}/metrics").text
    assert ready.status_code == 200
    assert upstream.app.requests_total == 6
    assert list(upstream.app.received) == [f"q{index}" for index in range(6)]
    assert {name: response.status_code for name, response in results.items()} == {
        f"q{index}": 200 for index in range(6)}
    assert results["q1"].json()["choices"][0]["message"]["content"] == "t0 t1 t2 "
    assert results["q0"].text.endswith("data: [DONE]\n\n")
    # one on entry per request, then one per held second each
    assert metric_value(metrics, "gateway_upstream_unavailable_total") >= 6 + 6
    assert metric_value(after, "gateway_held_requests") == 0
    assert metric_value(after, "gateway_hold_seconds_count") == 6
    assert metric_value(after, "gateway_upstream_errors_total", {"kind": "loading"}) == 1


def test_a_held_stream_gets_keep_alive_comments_then_the_answer(make_settings):
    with fake_upstream_server(tokens=2, interval=0.001) as upstream:
        upstream.app.loading = True
        settings = make_settings(upstream_url=upstream.url, upstream_probe_seconds=0.05,
                                 hold_keepalive_seconds=1)
        with serve_in_thread(create_app(settings)) as gateway:
            chunks: list[bytes] = []
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2, "stream": True}
            with httpx.stream("POST", f"{gateway.url}/v1/completions", timeout=30, json=body) as response:
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    if b"".join(chunks).count(b": keep-alive\n\n") == 2:
                        upstream.app.loading = False
    body = b"".join(chunks)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert body.startswith(b": keep-alive\n\n: keep-alive\n\n")
    events = [event for event in body.decode().split("\n\n") if event.startswith("data: ")]
    assert [json.loads(event[6:])["choices"][0]["text"] for event in events[:-1]] == ["t0 ", "t1 "]
    assert events[-1] == "data: [DONE]"


@pytest.mark.anyio
async def test_the_hold_bounds_answer_503_with_retry_after(make_settings):
    """Past the count bound: 503 at once. Past the time bound: 503 (a stream not yet kept alive too)."""
    with fake_upstream_server() as upstream:
        upstream.app.loading = True
        settings = make_settings(upstream_url=upstream.url, hold_max_requests=1, hold_timeout_seconds=1.5,
                                 retry_after_seconds=7)
        with serve_in_thread(create_app(settings)) as gateway:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
                async with anyio.create_task_group() as group:
                    first: list[httpx.Response] = []

                    async def held_one() -> None:
                        first.append(await client.post("/v1/chat/completions",
                                                       json=chat(max_tokens=2, stream=True)))

                    group.start_soon(held_one)
                    with anyio.fail_after(10):
                        while held(gateway.url) != 1:
                            await anyio.sleep(0.02)
                    full = await client.post("/v1/chat/completions", json=chat(max_tokens=2))
                metrics = (await client.get("/metrics")).text
    assert full.status_code == 503
    assert full.headers["retry-after"] == "7"
    assert full.json() == {"error": {
        "message": "No model server is ready and the gateway's hold queue is full.", **UNAVAILABLE}}
    timed_out = first[0]
    assert timed_out.status_code == 503
    assert timed_out.headers["retry-after"] == "7"
    assert timed_out.json() == {"error": {"message": "No model server became ready in time.", **UNAVAILABLE}}
    assert upstream.app.requests_total == 0
    assert metric_value(metrics, "gateway_hold_timeouts_total") == 1
    assert metric_value(metrics, "gateway_shed_requests_total", {"reason": "hold_full"}) == 1


def test_a_client_that_leaves_while_held_is_removed_and_costs_the_model_server_nothing(make_settings):
    with fake_upstream_server() as upstream:
        upstream.app.loading = True
        settings = make_settings(upstream_url=upstream.url, upstream_probe_seconds=0.05)
        with serve_in_thread(create_app(settings)) as gateway:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{gateway.url}/v1/chat/completions", json=chat("leaving", max_tokens=2),
                           timeout=1.0)
            wait_for(lambda: held(gateway.url) == 0)
            upstream.app.loading = False
            answered = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat("staying", max_tokens=2),
                                  timeout=10)
            metrics = httpx.get(f"{gateway.url}/metrics").text
    assert answered.status_code == 200
    assert list(upstream.app.received) == ["staying"]
    assert metric_value(metrics, "gateway_client_disconnects_total") == 1
    assert metric_value(metrics, "gateway_in_flight_requests") == 0


def test_each_request_goes_to_the_replica_with_the_fewest_outstanding(make_settings):
    with fake_upstream_server(tokens=40, interval=0.05) as first, fake_upstream_server(
            tokens=40, interval=0.05) as second:
        settings = make_settings(upstream_url=first.url, upstream_replicas=f"{first.url},{second.url}")
        with serve_in_thread(create_app(settings)) as gateway:
            async def burst() -> None:
                async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client, \
                        anyio.create_task_group() as group:
                    for index in range(8):
                        body = chat(f"r{index}", max_tokens=40, stream=True)
                        group.start_soon(lambda b=body: client.post("/v1/chat/completions", json=b))
                        await anyio.sleep(0.01)

            anyio.run(burst)
            metrics = httpx.get(f"{gateway.url}/metrics").text
    assert (first.app.requests_total, second.app.requests_total) == (4, 4)
    for replica in (first, second):
        assert metric_value(metrics, "gateway_upstream_replica_requests_total", {"replica": replica.url}) == 4


def test_a_replica_that_refuses_is_marked_down_and_probed_back(make_settings):
    port = free_port()
    late = f"http://127.0.0.1:{port}"
    with fake_upstream_server(tokens=2) as first:
        settings = make_settings(upstream_url=first.url, upstream_replicas=f"{first.url},{late}",
                                 upstream_probe_seconds=0.05)
        with serve_in_thread(create_app(settings)) as gateway:
            answers = [httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=2), timeout=10)
                       for _ in range(3)]
            down = httpx.get(f"{gateway.url}/status").json()["upstream"]
            with fake_upstream_server(tokens=2, port=port) as second:
                wait_for(lambda: httpx.get(f"{gateway.url}/status").json()["upstream"]["ready_replicas"] == 2)
                for _ in range(4):
                    httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=2), timeout=10)
                taken = second.app.requests_total
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert down["ready_replicas"] == 1
    assert {replica["url"]: replica["ready"] for replica in down["replicas"]} == {
        first.url: True, late: False}
    assert taken == 2  # sequential requests: ties go round the ready replicas


def test_discovery_resolves_the_headless_name_and_falls_back_to_the_service(make_settings):
    with fake_upstream_server(tokens=2) as upstream:
        port = upstream.url.rsplit(":", 1)[1]
        found = make_settings(upstream_url=f"http://127.0.0.1:{port}", upstream_discovery_dns="127.0.0.1",
                              upstream_discovery_seconds=0.05)
        missing = make_settings(upstream_url=upstream.url, upstream_discovery_dns="no-such-name.invalid",
                                upstream_discovery_seconds=0.05)
        for settings, discovered in ((found, True), (missing, False)):
            with serve_in_thread(create_app(settings)) as gateway:
                wait_for(lambda gw=gateway, d=discovered:
                         httpx.get(f"{gw.url}/status").json()["upstream"]["discovered"] is d)
                status = httpx.get(f"{gateway.url}/status").json()["upstream"]
                answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=2), timeout=10)
            assert answer.status_code == 200
            assert [replica["url"] for replica in status["replicas"]] == [upstream.url]
            assert status["discovery"] == settings.upstream_discovery_dns


def test_an_overloaded_503_passes_through_while_health_is_ok(make_settings):
    """vLLM's own 503 with a healthy /health (a full --max-num-queued-reqs queue) is not a cold start."""

    async def overloaded(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        status, body = (200, b"{}") if scope["path"] == "/health" else (
            503, b'{"error": {"message": "queue full", "type": "ServiceUnavailableError", "code": 503}}')
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    with serve_in_thread(overloaded) as upstream, serve_in_thread(
            create_app(make_settings(upstream_url=upstream.url))) as gateway:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat(max_tokens=2), timeout=10)
    assert response.status_code == 503
    assert response.json()["error"] == {"message": "queue full", "type": "server_error", "param": None,
                                         "code": "upstream_overloaded"}


def test_settings_reject_a_replica_that_is_not_a_url(monkeypatch):
    monkeypatch.setenv("GATEWAY_UPSTREAM_REPLICAS", "http://10.0.0.1:8000,vllm-0:8000")
    with pytest.raises(ValueError, match="'vllm-0:8000' is not an http:// or https:// URL"):
        Settings()


def test_settings_keep_the_hold_below_the_in_flight_cap():
    """Held requests hold in-flight slots: a hold as large as the cap could never answer its own 503."""
    with pytest.raises(ValueError, match=r"hold_max_requests \(8\) must be below max_in_flight \(8\)"):
        Settings(max_in_flight=8, hold_max_requests=8)
    assert Settings(max_in_flight=8, hold_max_requests=0).hold_max_requests == 0


def test_a_stop_signal_turns_readiness_off_at_once(make_settings):
    """uvicorn drains after a stop signal; the load balancer must stop sending from that moment."""
    app = create_app(make_settings())
    server = GatewayServer(uvicorn.Config(app), app)
    assert app.state.draining is False
    server.handle_exit(signal.SIGTERM, None)
    assert app.state.draining is True
    assert server.should_exit is True
