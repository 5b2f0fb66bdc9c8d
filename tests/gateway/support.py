"""Helpers shared by the gateway tests (imported as tests.gateway.support)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings
from gateway.testing.fake_upstream import FakeConfig, FakeUpstream
from gateway.testing.servers import RunningServer, serve_in_thread

BUCKET = "eks-llm-inference-responses-000000000000"
ADMIN_TOKEN = "admin-secret-token-for-the-gateway-tests"
MODEL = "fake-model"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Upstream:
    url: str
    app: FakeUpstream
    server: RunningServer


@contextmanager
def fake_upstream_server(port: int = 0, **config: Any) -> Iterator[Upstream]:
    app = FakeUpstream(FakeConfig(model=MODEL, **config))
    with serve_in_thread(app, port=port) as server:
        yield Upstream(url=server.url, app=app, server=server)


@asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (lifespan run) behind httpx's ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def chat(content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from a Prometheus exposition (parsed with prometheus_client)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    raise KeyError(f"{name}{labels or ''} not in metrics")


def fake_upstream_process(*args: str) -> Any:
    """The synthetic upstream in its own process (no GIL shared with the gateway or the test)."""
    from gateway.testing.servers import serve_process

    return serve_process(["gateway.testing.fake_upstream", "--model", MODEL, *args], health_path="/health")


def gateway_process(upstream_url: str, s3: Any, **settings: Any) -> Any:
    """``python -m gateway serve`` in its own process, configured through GATEWAY_* variables."""
    from gateway.testing.servers import serve_process

    env = {
        "GATEWAY_UPSTREAM_URL": upstream_url,
        "GATEWAY_MODEL": MODEL,
        "GATEWAY_S3_ENDPOINT_URL": s3.endpoint_url,
        "GATEWAY_S3_BUCKET": s3.bucket,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_RATE_LIMIT_PER_SECOND": "0",
        "GATEWAY_LOOKUP_RATE_PER_SECOND": "0",
        **s3.env(),
    }
    env.update({f"GATEWAY_{name.upper()}": str(value) for name, value in settings.items()})
    return serve_process(["gateway", "serve", "--host", "127.0.0.1"], health_path="/healthz", env=env)


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose backlog is full: a handshake gets no answer."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()
