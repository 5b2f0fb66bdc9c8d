"""Helpers shared by the gateway tests (imported as tests.gateway.support)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings
from gateway.testing.fake_upstream import FakeConfig, FakeUpstream
from gateway.testing.servers import RunningServer, serve_in_thread

BUCKET = "eks-llm-inference-responses-000000000000"
ADMIN_TOKEN = "admin-secret-token"
MODEL = "fake-model"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class LocalS3:
    endpoint_url: str
    bucket: str
    server: ThreadedMotoServer

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")


@contextmanager
def local_s3() -> Iterator[LocalS3]:
    """moto's S3 server mode on a loopback port (a real HTTP S3 API, driven through boto3)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = LocalS3(endpoint_url=f"http://{host}:{port}", bucket=BUCKET, server=server)
    s3.client().create_bucket(Bucket=BUCKET)
    try:
        yield s3
    finally:
        server.stop()


@dataclass
class Upstream:
    url: str
    app: FakeUpstream
    server: RunningServer


@contextmanager
def fake_upstream_server(**config: Any) -> Iterator[Upstream]:
    app = FakeUpstream(FakeConfig(model=MODEL, **config))
    with serve_in_thread(app) as server:
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
