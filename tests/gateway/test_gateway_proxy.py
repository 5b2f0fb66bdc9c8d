"""The OpenAI routes in-process (httpx ASGI transport) against the fast synthetic upstream."""

from __future__ import annotations

import json
from functools import partial

import anyio
import pytest

from tests.gateway.support import MODEL, chat, fake_upstream_server, gateway_client, metric_value

pytestmark = pytest.mark.anyio


def sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


async def test_chat_completion_non_streaming_is_proxied(client):
    response = await client.post("/v1/chat/completions", json=chat(max_tokens=3))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "t0 t1 t2 "}
    assert body["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    assert len(response.headers["x-request-id"]) == 32


async def test_chat_completion_stream_passes_sse_through_with_usage(client):
    response = await client.post("/v1/chat/completions", json=chat(
        max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "t0 t1 t2 t3 "
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12}


async def test_completions_stream_and_not(client):
    plain = await client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2})
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["text"] == "t0 t1 "
    streamed = await client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2,
                                                          "stream": True})
    events = sse_data(streamed.text)
    assert [json.loads(e)["choices"][0]["text"] for e in events[:-1]] == ["t0 ", "t1 "]
    assert events[-1] == "[DONE]"


async def test_models_lists_only_allowed_models(client):
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [MODEL]


async def test_request_id_is_echoed_when_valid(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"


@pytest.mark.parametrize(("payload", "status", "error"), [
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}, 404, {
        "message": "The model `gpt-4` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, {
        "message": "you must provide a model parameter", "type": "invalid_request_error", "param": "model",
        "code": "missing_required_parameter"}),
    ({"model": MODEL, "messages": []}, 400, {
        "message": "'messages' must be a non-empty array.", "type": "invalid_request_error",
        "param": "messages", "code": "invalid_type"}),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}] * 5}, 400, {
        "message": "Too many messages: 5 > 4.", "type": "invalid_request_error", "param": "messages",
        "code": "too_many_messages"}),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x" * 101}]}, 400, {
        "message": "Message 0 is longer than 100 characters.", "type": "invalid_request_error",
        "param": "messages[0].content", "code": "message_too_long"}),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 101}]}]},
     400, {
        "message": "Message 0 is longer than 100 characters.", "type": "invalid_request_error",
        "param": "messages[0].content", "code": "message_too_long"}),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, {
        "message": "'stream' must be a boolean.", "type": "invalid_request_error", "param": "stream",
        "code": "invalid_type"}),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, {
        "message": "'max_tokens' must be a positive integer.", "type": "invalid_request_error",
        "param": "max_tokens", "code": "invalid_value"}),
])
async def test_invalid_chat_requests_get_openai_errors(make_settings, payload, status, error):
    async with gateway_client(make_settings(max_messages=4, max_message_chars=100)) as c:
        response = await c.post("/v1/chat/completions", json=payload)
    assert response.status_code == status
    assert response.json() == {"error": error}


async def test_invalid_json_and_non_object_bodies_are_400(client):
    broken = await client.post("/v1/chat/completions", content=b"{not json",
                               headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    array = await client.post("/v1/completions", json=[1, 2])
    assert array.json() == {"error": {"message": "The request body must be a JSON object.",
                                      "type": "invalid_request_error", "param": None, "code": "invalid_json"}}


async def test_body_over_the_limit_is_413_with_or_without_content_length(make_settings):
    async with gateway_client(make_settings(max_body_bytes=2048)) as c:
        declared = await c.post("/v1/chat/completions", json=chat("x" * 3000))

        async def chunks():
            for _ in range(3):
                yield b"x" * 1000

        streamed = await c.post("/v1/chat/completions", content=chunks())
    expected = {"error": {"message": "The request body is larger than 2048 bytes.",
                          "type": "invalid_request_error", "param": None, "code": "request_too_large"}}
    assert (declared.status_code, declared.json()) == (413, expected)
    assert (streamed.status_code, streamed.json()) == (413, expected)


async def test_max_tokens_is_clamped_by_default(make_settings):
    async with gateway_client(make_settings(max_tokens=5)) as c:
        over = await c.post("/v1/chat/completions", json=chat(max_tokens=500))
        absent = await c.post("/v1/chat/completions", json=chat())
        newer = await c.post("/v1/chat/completions", json=chat(max_completion_tokens=50))
    assert over.json()["usage"]["completion_tokens"] == 5
    assert absent.json()["usage"]["completion_tokens"] == 5
    assert newer.json()["usage"]["completion_tokens"] == 5


async def test_max_tokens_over_the_limit_is_refused_with_reject_policy(make_settings):
    async with gateway_client(make_settings(max_tokens=5, max_tokens_policy="reject")) as c:
        response = await c.post("/v1/chat/completions", json=chat(max_tokens=6))
        within = await c.post("/v1/chat/completions", json=chat(max_tokens=5))
    assert response.status_code == 400
    assert response.json() == {"error": {
        "message": "'max_tokens' is 6; this gateway allows at most 5.", "type": "invalid_request_error",
        "param": "max_tokens", "code": "max_tokens_too_large"}}
    assert within.status_code == 200


async def test_rate_limit_per_client_answers_429_with_retry_after(make_settings):
    # Charged in tokens: "Hello" is 2 (5 bytes / 4, rounded up) + 1 x max_tokens 8 = 10 of the burst of 20.
    settings = make_settings(rate_limit_per_second=0.5, rate_limit_burst=20, trusted_hops=1)
    async with gateway_client(settings) as c:
        first = [await c.post("/v1/chat/completions", json=chat(max_tokens=8),
                              headers={"X-Forwarded-For": "198.51.100.1"}) for _ in range(3)]
        other = await c.post("/v1/chat/completions", json=chat(max_tokens=8),
                             headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.2"})
        metrics = (await c.get("/metrics")).text
    assert [r.status_code for r in first] == [200, 200, 429]
    assert first[2].headers["retry-after"] == "20"
    assert first[2].json() == {"error": {
        "message": "Rate limit reached for this client; retry after the delay in Retry-After.",
        "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
    assert other.status_code == 200
    assert metric_value(metrics, "gateway_shed_requests_total", {"reason": "rate_limit"}) == 1


async def test_in_flight_cap_answers_429_and_releases_slots(make_settings):
    with fake_upstream_server(tokens=20, interval=0.02) as slow:
        async with gateway_client(make_settings(upstream_url=slow.url, max_in_flight=2, hold_max_requests=1,
                                                retry_after_seconds=2)) as c:
            results = {}

            async def call(name):
                results[name] = await c.post("/v1/chat/completions", json=chat(stream=True, max_tokens=20))

            async with anyio.create_task_group() as group:
                group.start_soon(call, "a")
                group.start_soon(call, "b")
                while c.app.state.admission.in_flight < 2:
                    await anyio.sleep(0.01)
                refused = await c.post("/v1/chat/completions", json=chat())
            after = await c.post("/v1/chat/completions", json=chat(max_tokens=1))
            assert c.app.state.admission.in_flight == 0
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["code"] == "overloaded"
    assert [results[k].status_code for k in "ab"] == [200, 200]
    assert after.status_code == 200


async def test_sheds_while_the_upstream_queue_is_above_the_threshold(make_settings):
    with fake_upstream_server(tokens=40, interval=0.02, max_num_seqs=1) as busy:
        settings = make_settings(upstream_url=busy.url, shed_queue_waiting=1,
                                 upstream_metrics_poll_seconds=0.05)
        async with gateway_client(settings) as c:
            async with anyio.create_task_group() as group:
                for _ in range(3):  # one runs, two wait
                    group.start_soon(partial(c.post, "/v1/chat/completions",
                                             json=chat(stream=True, max_tokens=40)))
                with anyio.fail_after(5):
                    while c.app.state.admission.upstream_waiting != 2:
                        await anyio.sleep(0.02)
                shed = await c.post("/v1/chat/completions", json=chat())
            assert shed.status_code == 429
            assert shed.headers["retry-after"] == "1"
            assert shed.json() == {"error": {"message": "The model server's queue is full; retry shortly.",
                                             "type": "rate_limit_error", "param": None,
                                             "code": "upstream_queue_full"}}
            with anyio.fail_after(5):
                while c.app.state.admission.upstream_waiting != 0:
                    await anyio.sleep(0.02)
            assert (await c.post("/v1/chat/completions", json=chat(max_tokens=1))).status_code == 200


@pytest.mark.parametrize(("metrics_timeout", "sheds"), [(10.0, True), (1.0, False)])
async def test_a_slow_metrics_answer_is_still_the_queue_until_the_read_times_out(
        make_settings, metrics_timeout, sheds):
    """vLLM answers /metrics slowly exactly when its engine is saturated (measured: up to 9 s on two
    cores): a 2.5 s answer is still the queue, and sheds."""
    with fake_upstream_server(tokens=2000, interval=0.02, max_num_seqs=1, metrics_delay=2.5) as busy:
        settings = make_settings(upstream_url=busy.url, shed_queue_waiting=1,
                                 upstream_metrics_poll_seconds=0.05,
                                 upstream_metrics_timeout_seconds=metrics_timeout)
        async with gateway_client(settings) as c, anyio.create_task_group() as group:
            for _ in range(3):  # one runs, two wait
                group.start_soon(partial(c.post, "/v1/chat/completions",
                                         json=chat(stream=True, max_tokens=2000)))
            with anyio.fail_after(30):
                while busy.app.waiting != 2:
                    await anyio.sleep(0.02)
                # The poller reads one replica at a time: once the second read after the queue
                # formed has begun, the first has ended (answered, or timed out).
                reads = busy.app.metrics_reads
                while busy.app.metrics_reads < reads + 2:
                    await anyio.sleep(0.02)
            queue = c.app.state.admission.upstream_waiting
            if sheds:
                answer = await c.post("/v1/chat/completions", json=chat(max_tokens=1))
            else:  # forwarded to the model server, where it waits its turn
                forwarded = busy.app.requests_total
                group.start_soon(partial(c.post, "/v1/chat/completions", json=chat(max_tokens=1)))
                with anyio.fail_after(30):
                    while busy.app.requests_total == forwarded:
                        await anyio.sleep(0.02)
            group.cancel_scope.cancel()
    if sheds:
        assert (queue, answer.status_code) == (2, 429)
        assert answer.json()["error"]["code"] == "upstream_queue_full"
    else:  # every read timed out: the queue is unknown, and an unknown queue never sheds
        assert queue is None


async def test_unknown_routes_are_openai_404(client):
    response = await client.post("/v1/embeddings", json={})
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Not Found", "type": "invalid_request_error",
                                         "param": None, "code": "not_found"}}
