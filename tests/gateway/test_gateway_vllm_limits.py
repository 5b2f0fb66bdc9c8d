"""The gateway process, configured as the local stack configures it, in front of the real vLLM (CPU build,
tiny model, --max-model-len 512): requests without max_tokens fit the context, bounded work, no paths."""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import error_body
from gateway.testing.servers import serve_process
from tools.stack.gateway_process import gateway_environment

pytestmark = [pytest.mark.vllm, pytest.mark.s3]


def stack_gateway(vllm_server, s3, **overrides: str):
    env = gateway_environment(port=0, upstream_url=vllm_server.base_url, model=vllm_server.model, s3=s3,
                              admin_token="x" * 40)
    env.update(overrides)
    # a loaded machine (vLLM on the same two cores) can take a while to import the gateway
    return serve_process(["gateway", "serve", "--host", "127.0.0.1"], health_path="/healthz", env=env,
                         start_timeout=120)


def test_a_request_without_max_tokens_succeeds_with_the_local_stacks_settings(vllm_server, gateway_s3):
    chat = {"model": vllm_server.model, "messages": [{"role": "user", "content": "Tell me a story."}]}
    with stack_gateway(vllm_server, gateway_s3) as gateway:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat, timeout=120)
        legacy = httpx.post(f"{gateway.url}/v1/completions", timeout=120,
                            json={"model": vllm_server.model, "prompt": "Once upon a time"})
        models = httpx.get(f"{gateway.url}/v1/models", timeout=10)
    assert response.status_code == 200, response.text
    assert 1 <= response.json()["usage"]["completion_tokens"] <= 256
    assert legacy.status_code == 200, legacy.text
    assert 1 <= legacy.json()["usage"]["completion_tokens"] <= 256
    # the served name only: vLLM's "root" is the model's directory
    assert models.json() == {"object": "list", "data": [{
        "id": vllm_server.model, "object": "model", "created": models.json()["data"][0]["created"],
        "owned_by": "vllm", "max_model_len": 512}]}


def test_the_context_is_read_from_vllm_over_a_wrong_fallback(vllm_server, gateway_s3):
    chat = {"model": vllm_server.model, "messages": [{"role": "user", "content": "Hi"}]}
    with stack_gateway(vllm_server, gateway_s3, GATEWAY_MAX_TOKENS="1024",
                       GATEWAY_MODEL_MAX_LEN="4096") as gateway:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat, timeout=120)
        hostile = [
            httpx.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={**chat, "n": 1000}),
            httpx.post(f"{gateway.url}/v1/chat/completions", timeout=10, content=b"[" * 100_000,
                       headers={"content-type": "application/json"}),
        ]
    assert response.status_code == 200, response.text
    # 512 - ("Hi": 2 bytes + 8 for the message + 16 for the template) = 486 at most
    assert 1 <= response.json()["usage"]["completion_tokens"] <= 486
    assert [(r.status_code, r.json()) for r in hostile] == [
        (400, error_body(400, "'n' is 1000; this gateway allows 1 to 4.", param="n", code="invalid_value")),
        (400, error_body(400, "The JSON body is nested deeper than 64 levels.", code="invalid_json")),
    ]
