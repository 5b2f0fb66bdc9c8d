"""Settings from the environment, the static web UI mount, health and metrics endpoints."""

from __future__ import annotations

import anyio
import pytest

from gateway.settings import Settings
from tests.gateway.support import chat, gateway_client, metric_value
from tools.stack.processes import free_port

pytestmark = pytest.mark.anyio


def test_settings_read_gateway_variables(monkeypatch):
    monkeypatch.setenv("GATEWAY_ALLOWED_MODELS", "mistral-7b-instruct, other ")
    monkeypatch.setenv("GATEWAY_UPSTREAM_URL", "http://vllm.inference.svc:8000/v1/")
    monkeypatch.setenv("GATEWAY_MAX_TOKENS", "512")
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("GATEWAY_UPSTREAM_REPLICAS", "http://10.0.0.1:8000/v1, http://10.0.0.2:8000")
    settings = Settings()
    assert settings.allowed_models == ["mistral-7b-instruct", "other"]
    assert settings.model_allow_list == frozenset({"mistral-7b-instruct", "other"})
    assert settings.upstream_url == "http://vllm.inference.svc:8000"
    assert settings.upstream_replicas == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert (settings.hold_max_requests, settings.hold_timeout_seconds) == (128, 180.0)
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


async def test_readyz_needs_neither_the_model_server_nor_s3(make_settings, s3_fault):
    """Readiness is this gateway's own: vLLM at zero replicas and S3 down leave it ready (ALB keeps it)."""
    settings = make_settings(upstream_url=f"http://127.0.0.1:{free_port()}", s3_attempts=1,
                             s3_connect_timeout=0.5, s3_read_timeout=0.5)
    async with gateway_client(settings) as c:
        s3_fault.stop()
        ready = await c.get("/readyz")
        status = await c.get("/status")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "degraded"
    assert body["s3"] == {"ok": False, "error": "unreachable: StorageUnavailable"}
    assert body["upstream"]["replicas"] == [{"url": settings.upstream_url, "ready": True, "outstanding": 0,
                                             "waiting": None}]
    assert body["hold"] == {"held": 0, "max_requests": 128, "timeout_seconds": 180.0}
    assert body["draining"] is False


async def test_readyz_is_503_while_draining(make_settings):
    async with gateway_client(make_settings()) as c:
        c.app.state.draining = True
        draining = await c.get("/readyz")
    assert draining.status_code == 503
    assert draining.json() == {"error": {"message": "not ready: draining", "type": "server_error",
                                         "param": None, "code": "not_ready"}}


async def test_status_reports_a_ready_upstream_and_s3(make_settings, fake_upstream):
    async with gateway_client(make_settings(upstream_metrics_poll_seconds=0.05)) as c:
        await anyio.sleep(0.3)
        body = (await c.get("/status")).json()
    assert body["status"] == "ok"
    assert body["s3"] == {"ok": True, "error": None}
    assert body["upstream"]["ready_replicas"] == 1
    assert body["upstream"]["replicas"] == [{"url": fake_upstream.url, "ready": True, "outstanding": 0,
                                             "waiting": 0.0}]


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
    settings = make_settings(upstream_url="http://127.0.0.1:9", hold_max_requests=0)
    async with gateway_client(settings) as c:
        refused = [await c.post("/v1/chat/completions", json=chat()) for _ in range(3)]
        metrics = (await c.get("/metrics")).text
    assert [r.status_code for r in refused] == [503, 503, 503]
    assert {r.json()["error"]["code"] for r in refused} == {"upstream_unavailable"}
    assert metric_value(metrics, "gateway_upstream_unavailable_total") == 3.0
    # The first refusal marks the one replica down; the next two find none ready and are not sent.
    assert metric_value(metrics, "gateway_upstream_errors_total", {"kind": "connect"}) == 1.0
