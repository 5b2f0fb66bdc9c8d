"""Fixtures for the gateway tests: the fast synthetic upstream, an S3-compatible server, app settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.gateway.support import (
    ADMIN_TOKEN,
    MODEL,
    Upstream,
    fake_upstream_server,
    gateway_client,
)
from tools.stack.s3 import S3Server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def gateway_s3(s3_server: S3Server) -> S3Server:
    """The session S3 server, its credentials exported for the in-process gateways' boto3 clients."""
    for name, value in s3_server.env().items():
        os.environ.setdefault(name, value)
    return s3_server


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[Upstream]:
    with fake_upstream_server(tokens=8, interval=0.001) as upstream:
        yield upstream


@pytest.fixture
def make_settings(gateway_s3: S3Server, fake_upstream: Upstream) -> Callable[..., Settings]:
    """Settings against the fake upstream and the local S3, each test under its own key prefix."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "upstream_url": fake_upstream.url,
            "model": MODEL,
            "s3_endpoint_url": gateway_s3.endpoint_url,
            "s3_bucket": gateway_s3.bucket,
            "s3_prefix": prefix,
            "admin_token": ADMIN_TOKEN,
            "upstream_metrics_poll_seconds": 0,
            "rate_limit_per_second": 0,
            "lookup_rate_per_second": 0,
            "state_cache_seconds": 0,
            "stats_cache_seconds": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(make_settings()) as c:
        yield c
