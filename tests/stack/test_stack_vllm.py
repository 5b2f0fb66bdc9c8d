"""The real vLLM (CPU build) serving the tiny model: the OpenAI API, streaming, metrics and a real queue."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import psutil
import pytest
from httpx_sse import aconnect_sse, connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tools.stack.vllm import ENGINE_CORE_NAME, WORKER_NAME, VllmServer

pytestmark = pytest.mark.vllm

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def gauge(metrics_text: str, name: str, model: str) -> float:
    """The value of a vLLM gauge for `model` in a /metrics exposition."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model_name") == model:
                return float(sample.value)
    raise AssertionError(f"{name} for model {model!r} not found in /metrics")


def test_models_lists_the_served_name(vllm_server: VllmServer) -> None:
    response = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=10)

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [vllm_server.model]


def test_chat_completion_returns_tokens_and_usage(vllm_server: VllmServer) -> None:
    response = httpx.post(
        f"{vllm_server.base_url}/v1/chat/completions",
        json={"model": vllm_server.model, "messages": CHAT, "max_tokens": 8},
        timeout=60,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == vllm_server.model
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 8
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 8


def test_streaming_sends_data_chunks_then_done(vllm_server: VllmServer) -> None:
    request = {"model": vllm_server.model, "messages": CHAT, "max_tokens": 6, "stream": True}
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{vllm_server.base_url}/v1/chat/completions", json=request) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        data = [event.data for event in source.iter_sse()]

    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_prompt_plus_max_tokens_over_the_context_is_a_400(vllm_server: VllmServer) -> None:
    response = httpx.post(
        f"{vllm_server.base_url}/v1/chat/completions",
        json={"model": vllm_server.model, "messages": CHAT, "max_tokens": 4096},
        timeout=60,
    )

    assert response.status_code == 400


def test_metrics_export_the_queue_gauges(vllm_server: VllmServer) -> None:
    text = httpx.get(vllm_server.metrics_url, timeout=10).text

    assert gauge(text, "vllm:num_requests_running", vllm_server.model) == 0.0
    assert gauge(text, "vllm:num_requests_waiting", vllm_server.model) == 0.0
    assert "vllm:kv_cache_usage_perc" in text


def test_requests_beyond_max_num_seqs_wait_in_a_real_queue(vllm_server: VllmServer) -> None:
    """With --max-num-seqs 4, six concurrent streams: two of them wait (vllm:num_requests_waiting > 0)."""
    assert vllm_server.max_num_seqs == 4
    concurrent = vllm_server.max_num_seqs + 2
    request = {
        "model": vllm_server.model,
        "messages": CHAT,
        "max_tokens": 200,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def stream(client: httpx.AsyncClient) -> int:
        url = f"{vllm_server.base_url}/v1/chat/completions"
        async with aconnect_sse(client, "POST", url, json=request) as source:
            events = [event.data async for event in source.aiter_sse()]
        assert events[-1] == "[DONE]"
        return int(json.loads(events[-2])["usage"]["completion_tokens"])

    async def sample_queue(client: httpx.AsyncClient, done: asyncio.Event) -> list[tuple[float, float]]:
        samples = []
        while not done.is_set():
            text = (await client.get(vllm_server.metrics_url)).text
            samples.append(
                (
                    gauge(text, "vllm:num_requests_running", vllm_server.model),
                    gauge(text, "vllm:num_requests_waiting", vllm_server.model),
                )
            )
            await asyncio.sleep(0.05)
        return samples

    async def scenario() -> tuple[list[int], list[tuple[float, float]]]:
        limits = httpx.Limits(max_connections=concurrent + 2)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            done = asyncio.Event()
            sampler = asyncio.create_task(sample_queue(client, done))
            try:
                counts = await asyncio.gather(*(stream(client) for _ in range(concurrent)))
            finally:
                done.set()
            return list(counts), await sampler

    counts, samples = asyncio.run(scenario())

    assert counts == [200] * concurrent
    assert max(running for running, _ in samples) == vllm_server.max_num_seqs
    assert max(waiting for _, waiting in samples) == concurrent - vllm_server.max_num_seqs
    after = httpx.get(vllm_server.metrics_url, timeout=10).text
    assert gauge(after, "vllm:num_requests_running", vllm_server.model) == 0.0
    assert gauge(after, "vllm:num_requests_waiting", vllm_server.model) == 0.0


def test_the_engine_core_runs_on_its_workers_cores(vllm_server: VllmServer) -> None:
    """Its wait for each step is a spin: on the worker's cores it yields to the worker instead of taking
    the API server's core (keep_engine_core_with_worker says what that cost)."""
    if not vllm_server.owned:
        pytest.skip("a reused server (STACK_VLLM_URL) was started elsewhere: its affinity is not ours")
    descendants = psutil.Process(vllm_server.pid).children(recursive=True)
    by_name = {process.name(): process for process in descendants}
    worker_cpus = set(by_name[WORKER_NAME].cpu_affinity())
    engine_threads = by_name[ENGINE_CORE_NAME].threads()

    assert worker_cpus < set(os.sched_getaffinity(0)) or len(os.sched_getaffinity(0)) == 1
    assert vllm_server.engine_core_cpus == worker_cpus
    assert {thread.id: os.sched_getaffinity(thread.id) for thread in engine_threads} == {
        thread.id: worker_cpus for thread in engine_threads
    }
