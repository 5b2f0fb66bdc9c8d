"""Fixtures of the monitoring tests: a gateway (a process of its own) in front of the session's real
vLLM and S3-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.webui.support import ONE_CLIENT_FILLS_THE_QUEUE, Gateway, gateway_settings, running_gateway_process


@pytest.fixture(scope="session")
def s3_environment(s3_server: Any) -> Iterator[Any]:
    """The AWS variables of the session S3 server in this process's environment (for the gateway's boto3)."""
    saved = {name: os.environ.get(name) for name in s3_server.env()}
    os.environ.update(s3_server.env())
    try:
        yield s3_server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def vllm_gateway(vllm_server: Any, s3_environment: Any, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway in front of the real vLLM that never sheds: the tests want vLLM's own queue to grow."""
    settings = gateway_settings(
        s3_endpoint_url=s3_environment.endpoint_url,
        bucket=s3_environment.bucket,
        region=s3_environment.region,
        upstream_url=vllm_server.base_url,
        model=vllm_server.model,
        **ONE_CLIENT_FILLS_THE_QUEUE,
        upstream_metrics_poll_seconds=0,
        # The CPU build's engine and worker processes spin on both cores under load and its API server
        # gets a quarter of one: accepting a connection can take seconds (connect timeouts seen at 3 s).
        upstream_connect_timeout=30.0,
    )
    with running_gateway_process(settings, tmp_path / "gateway.log") as gateway:
        yield gateway
