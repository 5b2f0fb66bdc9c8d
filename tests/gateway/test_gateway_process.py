"""``python -m gateway serve`` as a process: settings from the environment, JSON logs, SIGTERM drain."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from gateway.cli import main
from tests.gateway.support import chat, fake_upstream_process, gateway_process

PROMPT = "my-private-prompt-text"


def test_invalid_settings_exit_2_with_a_message(monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_MAX_TOKENS_POLICY", "truncate")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "max_tokens_policy" in err


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2


def test_sigterm_drains_in_flight_streams_then_exits(gateway_s3):
    with fake_upstream_process("--interval-ms", "50") as upstream, gateway_process(
            upstream.url, gateway_s3, shutdown_timeout=20) as gateway:
        events = []
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                          json=chat(PROMPT, max_tokens=30, stream=True),
                          headers={"X-Request-ID": "drain-test-1"}, timeout=20) as response:
            for line in response.iter_lines():
                if not line:
                    continue
                events.append(line.removeprefix("data: "))
                if len(events) == 2:
                    gateway.process.send_signal(signal.SIGTERM)
                    time.sleep(0.3)
                    with pytest.raises(httpx.ConnectError):
                        httpx.get(f"{gateway.url}/healthz", timeout=2)
        assert events[-1] == "[DONE]"
        assert len(events) == 1 + 30 + 1  # role chunk, 30 tokens, [DONE]
        # uvicorn re-raises the SIGTERM it caught once it has drained: the default exit for that signal
        assert gateway.process.wait(timeout=20) == -signal.SIGTERM
        log_lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.strip()]
    requests = [line for line in log_lines if line.get("request_id") == "drain-test-1"]
    assert len(requests) == 1
    assert requests[0]["msg"] == "request"
    assert (requests[0]["route"], requests[0]["status"]) == ("/v1/chat/completions", 200)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in log_lines)
    # Lines are written by a thread: the ones logged while shutting down are flushed before the exit.
    messages = [line["msg"] for line in log_lines]
    assert "gateway stopped" in messages
    assert messages[-1].startswith("Finished server process")
    assert PROMPT not in gateway.log_path.read_text()


def test_sigterm_cuts_streams_still_running_after_the_drain_timeout(gateway_s3):
    with fake_upstream_process("--interval-ms", "100") as upstream, gateway_process(
            upstream.url, gateway_s3, shutdown_timeout=1) as gateway:
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                          json=chat(max_tokens=300, stream=True), timeout=20) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            started = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in lines:
                    pass
        # uvicorn re-raises the SIGTERM it caught once it has drained: the default exit for that signal
        assert gateway.process.wait(timeout=20) == -signal.SIGTERM
        assert time.monotonic() - started < 5
        upstream_metrics = httpx.get(f"{upstream.url}/metrics").text
    assert "vllm:num_requests_running{" in upstream_metrics
    assert 'vllm:num_requests_running{engine="0",model_name="fake-model"} 0.0' in upstream_metrics
