"""Generated bodies against the OpenAI routes and the audience API: whatever arrives, never a 5xx from the
gateway itself, and every error in the OpenAI error shape. The gateway runs under uvicorn in a thread in
front of the synthetic upstream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.openai_fields import CHAT_FIELDS, COMPLETION_FIELDS
from gateway.settings import Settings
from gateway.testing.servers import serve_in_thread
from tests.gateway.support import MODEL, Upstream

FIELDS = sorted(CHAT_FIELDS | COMPLETION_FIELDS | {"best_of", "chat_template", "priority", "guided_json"})

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS), inner, max_size=4),
                      max_leaves=20)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"])},
                                optional={"content": values | st.text(max_size=30), "name": values,
                                          "tool_calls": values})
chat_body = st.fixed_dictionaries(
    {"model": st.just(MODEL) | values, "messages": st.lists(message, max_size=3) | values},
    optional={field: values for field in sorted(CHAT_FIELDS - {"model", "messages"})})
completion_body = st.fixed_dictionaries(
    {"model": st.just(MODEL), "prompt": st.text(max_size=20) | st.lists(st.integers(0, 100)) | values},
    optional={field: values for field in sorted(COMPLETION_FIELDS - {"model", "prompt"})})
raw_bodies = st.binary(max_size=64) | values.map(lambda value: json.dumps(value).encode())

STREAMED = "text/event-stream; charset=utf-8"


@pytest.fixture(scope="module")
def gateway(gateway_s3, fake_upstream: Upstream) -> Iterator[httpx.Client]:
    gateway_settings = Settings(
        upstream_url=fake_upstream.url, model=MODEL, s3_endpoint_url=gateway_s3.endpoint_url,
        s3_bucket=gateway_s3.bucket, s3_prefix=f"fuzz-{uuid.uuid4().hex[:8]}", admin_token="f" * 40,
        upstream_metrics_poll_seconds=0, rate_limit_per_second=0, lookup_rate_per_second=0,
        max_tokens=3, question_max_tokens=3)
    with serve_in_thread(create_app(gateway_settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def assert_not_a_gateway_failure(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}
    elif response.headers["content-type"] != STREAMED:
        response.json()


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=chat_body)
def test_chat_bodies_never_fail_the_gateway(gateway: httpx.Client, body: dict) -> None:
    assert_not_a_gateway_failure(gateway.post("/v1/chat/completions", json=body))


@FUZZ
@given(body=completion_body)
def test_completion_bodies_never_fail_the_gateway(gateway: httpx.Client, body: dict) -> None:
    assert_not_a_gateway_failure(gateway.post("/v1/completions", json=body))


@FUZZ
@given(body=raw_bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/api/survey",
                                               "/api/questions"]))
def test_raw_bodies_never_fail_the_gateway(gateway: httpx.Client, body: bytes, path: str) -> None:
    response = gateway.post(path, content=body, headers={"content-type": "application/json"})
    assert_not_a_gateway_failure(response)
