"""Helpers for the web UI tests: the browser's launch flags, gateway settings for the local services, a
model stand-in that answers with a chosen text, and phone-size screenshots."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from gateway.app import create_app
from gateway.settings import Settings
from gateway.testing.servers import serve_in_thread, serve_process

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 780}
ADMIN_TOKEN = "webui-test-admin-token-at-least-32-characters"
PUBLIC_URL = "https://talk.example.test/join"
# A load test is one client keeping vLLM's queue full with answers of a known length: the per-client
# in-flight cap would hold it at 8 and ignore_eos is refused by default.
ONE_CLIENT_FILLS_THE_QUEUE: dict[str, Any] = {
    "shed_queue_waiting": 10_000,
    "max_in_flight_per_client": 256,
    "allow_ignore_eos": True,
}


def gateway_settings(*, s3_endpoint_url: str, bucket: str, region: str, upstream_url: str, model: str,
                     **overrides: Any) -> Settings:
    """Settings for one test gateway; its own S3 prefix keeps its mode and session apart from others'."""
    values: dict[str, Any] = {
        "upstream_url": upstream_url,
        "model": model,
        "s3_endpoint_url": s3_endpoint_url,
        "s3_bucket": bucket,
        "s3_region": region,
        "s3_prefix": f"webui-{uuid.uuid4().hex[:12]}",
        "admin_token": ADMIN_TOKEN,
        "public_url": PUBLIC_URL,
        "rate_limit_per_second": 0,
        "lookup_rate_per_second": 0,
        # one gateway for the module: its tests' wrong tokens must not lock the test client out
        "admin_failures_burst": 100,
        "state_cache_seconds": 0,
        "stats_cache_seconds": 0,
        **overrides,
    }
    return Settings(**values)


@dataclass
class Gateway:
    url: str
    settings: Settings

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """An admin API call with the token; raises unless 2xx."""
        response = httpx.request(method, self.url + path, json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        response.raise_for_status()
        return response

    def key(self, *parts: str) -> str:
        """The S3 key of a record under this gateway's prefix."""
        return "/".join([self.settings.s3_prefix, *parts])


@contextmanager
def running_gateway(settings: Settings) -> Iterator[Gateway]:
    """The gateway app under uvicorn on a free loopback port, in a thread of this process."""
    with serve_in_thread(create_app(settings), timeout_graceful_shutdown=5) as server:
        yield Gateway(url=server.url, settings=settings)


def settings_environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the GATEWAY_* variables the gateway process reads them from."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if name in {"host", "port"} or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"GATEWAY_{name.upper()}"] = str(value)
    return env


@contextmanager
def running_gateway_process(settings: Settings, log_path: Path) -> Iterator[Gateway]:
    """The gateway as a process of its own (``python -m gateway serve``) on a free loopback port.

    For load tests: in a thread of the test process the gateway shares the interpreter lock with the
    load's threads, and on a small machine that vLLM's CPU engine keeps busy its event loop then stalls
    for seconds (measured: connects "taking" 8 s), which its upstream timeouts rightly read as a dead
    replica.
    """
    with serve_process(["gateway", "serve", "--host", "127.0.0.1"], health_path="/healthz",
                       env=settings_environment(settings), start_timeout=120, log_path=log_path) as server:
        yield Gateway(url=server.url, settings=settings)


class ScriptedModel:
    """Stands in for vLLM where a test must choose the answer: streams ``parts`` as chat completion chunks
    framed as vLLM frames them, then (with ``error``) a failure event, then ``[DONE]``; ``/metrics`` shows an
    idle queue."""

    def __init__(self, parts: Sequence[str], model: str = "scripted-model", error: str | None = None) -> None:
        self.parts = list(parts)
        self.model = model
        self.error = error  # sent as vLLM sends a failure after the 200: a data event with "error"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/metrics":
            text = (f'vllm:num_requests_running{{model_name="{self.model}"}} 0.0\n'
                    f'vllm:num_requests_waiting{{model_name="{self.model}"}} 0.0\n')
            await _respond(send, 200, text.encode(), b"text/plain; version=0.0.4")
            return
        if scope["path"] != "/v1/chat/completions":
            await _respond(send, 404, b'{"error": {"message": "Not Found"}}', b"application/json")
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        for index, part in enumerate(self.parts):
            finish = "stop" if index == len(self.parts) - 1 and self.error is None else None
            chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                     "model": self.model,
                     "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": finish}]}
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
        if self.error is not None:
            failure = {"error": {"message": self.error, "type": "InternalServerError", "param": None,
                                 "code": 500}}
            await send({"type": "http.response.body", "body": f"data: {json.dumps(failure)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG under artifacts/screenshots/ (CI uploads artifacts/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
