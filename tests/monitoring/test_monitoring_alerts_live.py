"""The repository's recording and alerting rules on Debian's Prometheus, scraping the real vLLM and the
gateway: load through the gateway builds vLLM's queue, VllmQueueBacklog fires, and resolves once the load
stops.

The rules file is the rendered PrometheusRule's with every duration divided by 60 (rules_files.scaled):
`for: 3m` becomes 3 s, the recording group's 15 s interval 1 s. Thresholds are the manifest's own: more
than 20 requests waiting, so the load keeps about 30 requests in flight against --max-num-seqs 4.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.monitoring.rules_files import rules_document, scaled, write_rules
from tests.webui.support import Gateway
from tools.stack.env import prometheus_binary
from tools.stack.processes import free_port
from tools.stack.prometheus import PrometheusServer, start_prometheus

pytestmark = [pytest.mark.vllm, pytest.mark.s3]

TIME_FACTOR = 60
CONCURRENT_REQUESTS = 32
ALERT = "VllmQueueBacklog"


@pytest.fixture
def prometheus_with_rules(
    vllm_server: Any, vllm_gateway: Gateway, stack_logs: Path
) -> Iterator[PrometheusServer]:
    state_dir = stack_logs / f"prometheus-rules-{time.monotonic_ns()}"
    state_dir.mkdir(parents=True)
    rules = write_rules(state_dir / "llm-inference.rules.yaml", scaled(rules_document(), TIME_FACTOR))
    server = start_prometheus(
        prometheus_binary(),
        port=free_port(),
        targets={
            "vllm": vllm_server.base_url.removeprefix("http://"),
            "gateway": vllm_gateway.url.removeprefix("http://"),
        },
        state_dir=state_dir,
        rule_files=[rules],
    )
    try:
        yield server
    finally:
        server.stop()


class Load:
    """CONCURRENT_REQUESTS threads posting chat completions through the gateway until stopped."""

    def __init__(self, url: str, model: str) -> None:
        self.url = url
        self.model = model
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CONCURRENT_REQUESTS)]

    def _run(self) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 300, "ignore_eos": True}
        with httpx.Client(timeout=300) as client:
            while not self.stop.is_set():
                self.statuses.append(client.post(f"{self.url}/v1/chat/completions", json=body).status_code)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=300)


def upstream_trouble(gateway: Gateway, load: Load) -> str:
    """What the load got and what the gateway counted against the model server, for a failure message."""
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    lines = [line for line in metrics.splitlines()
             if line.startswith(("gateway_upstream_errors_total", "gateway_upstream_replicas"))]
    return f"statuses {dict(Counter(load.statuses))}; gateway: {lines}"


def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Seconds until `condition()` held; fails the test after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.5)
    return time.monotonic() - start


def test_queue_alert_fires_under_load_and_resolves(
    vllm_server: Any, vllm_gateway: Gateway, prometheus_with_rules: PrometheusServer
) -> None:
    prometheus = prometheus_with_rules
    wait_for(lambda: prometheus.targets_up() == {"vllm": True, "gateway": True}, 30, "both targets up")
    assert ALERT not in prometheus.alerts()

    with Load(vllm_gateway.url, vllm_server.model) as load:
        wait_for(lambda: prometheus.alerts().get(ALERT) == "firing", 180, f"{ALERT} firing")
        waiting = prometheus.query("max_over_time(llm:vllm_requests_waiting:sum[1m])")
        # At an instant one sequence may just have finished: the window's peak is the engine's batch.
        running = prometheus.query("max_over_time(llm:vllm_requests_running:sum[1m])")

    assert set(load.statuses) == {200}, upstream_trouble(vllm_gateway, load)
    assert waiting > 20, upstream_trouble(vllm_gateway, load)
    assert running == vllm_server.max_num_seqs
    # Every request has ended (Load waits for them): the queue drains, the alert resolves.
    wait_for(lambda: ALERT not in prometheus.alerts(), 300, f"{ALERT} resolved")
    wait_for(lambda: prometheus.query("llm:vllm_requests_waiting:sum") == 0, 60, "the recorded queue at 0")
    assert ALERT not in prometheus.alerts()
