"""The gateway as a real server process (`python -m gateway serve`), wired to the local vLLM and S3."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.stack.env import REPO_ROOT
from tools.stack.processes import ProcessRecord, log_tail, start_process, stop_group
from tools.stack.s3 import S3Server
from tools.stack.vllm import LOCAL_MAX_MODEL_LEN


class GatewayStartError(RuntimeError):
    """The gateway could not be started; the message carries its log's tail."""


@dataclass
class GatewayServer:
    port: int
    log_path: Path
    admin_token: str
    record: ProcessRecord | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def status_url(self) -> str:
        return f"{self.url}/status"

    @property
    def pid(self) -> int | None:
        return self.record.pid if self.record else None

    def stop(self) -> None:
        if self.record is not None:
            stop_group(self.record, grace=40.0, popen=self.popen)


def gateway_environment(
    *, port: int, upstream_url: str, model: str, s3: S3Server, admin_token: str, prometheus_url: str = ""
) -> dict[str, str]:
    """The gateway's settings (GATEWAY_*) pointing at the local services (Prometheus: the scaling view)."""
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_UPSTREAM_URL": upstream_url,
        "GATEWAY_MODEL": model,
        "GATEWAY_S3_ENDPOINT_URL": s3.endpoint_url,
        "GATEWAY_S3_BUCKET": s3.bucket,
        "GATEWAY_S3_REGION": s3.region,
        "GATEWAY_ADMIN_TOKEN": admin_token,
        # The local vLLM's context (--max-model-len): what the gateway assumes until it has read
        # max_model_len from vLLM's /v1/models, so a request without max_tokens fits it either way.
        "GATEWAY_MODEL_MAX_LEN": LOCAL_MAX_MODEL_LEN,
        # At most half the context by default, so that a prompt of some length still fits beside it.
        "GATEWAY_MAX_TOKENS": str(int(LOCAL_MAX_MODEL_LEN) // 2),
        # Locally every request comes from one address (the tests' and the demo's load): the per-client
        # in-flight cap would keep that one client from ever filling vLLM's queue.
        "GATEWAY_MAX_IN_FLIGHT_PER_CLIENT": "256",
        "GATEWAY_PROMETHEUS_URL": prometheus_url,
        **s3.env(),
    }


def start_gateway(
    *,
    port: int,
    log_path: Path,
    settings_env: Mapping[str, str],
    admin_token: str,
    timeout: float = 60.0,
) -> GatewayServer:
    """Start `python -m gateway serve` and wait until /status says a vLLM replica and S3 are reachable.

    Not /readyz: the gateway is ready (takes traffic) without either, by design (gateway/README.md).
    """
    if importlib.util.find_spec("gateway") is None:
        raise GatewayStartError(f"the gateway package is not importable from {REPO_ROOT}")
    env = dict(os.environ)
    env.update(settings_env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = GatewayServer(port=port, log_path=log_path, admin_token=admin_token)
    server.popen, server.record = start_process("gateway", command, log_path=log_path, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + timeout
    while not _serving(server.status_url):
        if server.popen.poll() is not None:
            raise GatewayStartError(
                f"the gateway exited with code {server.popen.returncode}; {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise GatewayStartError(f"the gateway was not ready within {timeout:g} s; {log_path}")
        time.sleep(0.2)
    return server


def _serving(url: str) -> bool:
    try:
        response = httpx.get(url, timeout=10.0)
        return response.status_code == 200 and response.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        return False
