"""Settings from the environment, the static web UI mount, health and metrics endpoints."""

from __future__ import annotations

import pytest

from gateway.settings import Settings
from tests.gateway.support import chat, gateway_client, metric_value

pytestmark = pytest.mark.anyio


def test_settings_read_gateway_variables(monkeypatch):
    monkeypatch.setenv("GATEWAY_ALLOWED_MODELS", "mistral-7b-instruct, other ")
    monkeypatch.setenv("GATEWAY_UPSTREAM_URL", "http://vllm.inference.svc:8000/v1/")
    monkeypatch.setenv("GATEWAY_MAX_TOKENS", "512")
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert settings.allowed_models == ["mistral-7b-instruct", "other"]
    assert settings.model_allow_list == frozenset({"mistral-7b-instruct", "other"})
    assert settings.upstream_url == "http://vllm.inference.svc:8000"
    assert settings.metrics_url == "http://vllm.inference.svc:8000/metrics"
    assert settings.max_tokens == 512
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_allow_list_defaults_to_the_served_model():
    assert Settings(model="m").model_allow_list == frozenset({"m"})


async def test_static_ui_is_served_at_root_when_present(make_settings, tmp_path):
    (tmp_path / "index.html").write_text("<h1>audience</h1>")
    async with gateway_client(make_settings(static_dir=tmp_path)) as c:
        page = await c.get("/")
        missing = await c.get("/nope.js")
        api = await c.get("/healthz")
    assert (page.status_code, page.text) == (200, "<h1>audience</h1>")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert api.json() == {"status": "ok"}


async def test_no_static_mount_without_an_index(make_settings, tmp_path):
    async with gateway_client(make_settings(static_dir=tmp_path)) as c:
        response = await c.get("/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_readyz_reports_each_dependency(make_settings):
    async with gateway_client(make_settings()) as c:
        ready = await c.get("/readyz")
    async with gateway_client(make_settings(upstream_url="http://127.0.0.1:9")) as c:
        not_ready = await c.get("/readyz")
    assert ready.json() == {"status": "ready", "checks": {"upstream": "ok", "s3": "ok"}}
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert body["error"] == {"message": "not ready: upstream", "type": "server_error", "param": None,
                             "code": "not_ready"}
    assert body["checks"] == {"upstream": "unreachable: ConnectError", "s3": "ok"}


async def test_metrics_are_per_app_and_count_routes_by_template(make_settings):
    async with gateway_client(make_settings()) as first, gateway_client(make_settings()) as second:
        await first.get("/healthz")
        await first.get("/api/winner", params={"ticket": "x"})
        first_metrics = (await first.get("/metrics")).text
        second_metrics = (await second.get("/metrics")).text
    assert 'gateway_requests_total{method="GET",route="/healthz",status="200"} 1.0' in first_metrics
    assert 'gateway_requests_total{method="GET",route="/api/winner",status="422"} 1.0' in first_metrics
    assert 'route="/healthz"' not in second_metrics


async def test_requests_no_model_server_could_take_are_counted_once_each(make_settings):
    settings = make_settings(upstream_url="http://127.0.0.1:9", upstream_connect_attempts=2,
                             upstream_retry_backoff=0)
    async with gateway_client(settings) as c:
        refused = [await c.post("/v1/chat/completions", json=chat()) for _ in range(3)]
        metrics = (await c.get("/metrics")).text
    assert [r.status_code for r in refused] == [503, 503, 503]
    assert {r.json()["error"]["code"] for r in refused} == {"upstream_unavailable"}
    assert metric_value(metrics, "gateway_upstream_unavailable_total") == 3.0
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "connect"}) == 6.0
