"""The repository's recording and alerting rules on Debian's Prometheus, scraping the real vLLM and the
gateway: load through the gateway builds vLLM's queue, VllmQueueBacklog fires, and resolves once the load
stops.

The rules file is the rendered PrometheusRule's with every duration divided by 180 (rules_files.scaled,
at least 1 s): `for: 3m` becomes 1 s, the recording group's 15 s interval 1 s. Thresholds are the
manifest's own: more than 20 requests waiting, so the load keeps 64 requests in flight against
--max-num-seqs 4.

Why `for` at one second: on two cores vLLM's engine, its worker, its API server, the gateway, the load
and Prometheus share two CPUs, and Prometheus then skips rule evaluations (one run recorded 138 of 360
one-second evaluations). One scrape that shows the queue holds its value for the 10 s scrape interval; a
`for` of a few seconds would need evaluations that may never run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat_load import ChatLoad
from tests.monitoring.rules_files import alerts, rules_document, scaled, write_rules
from tests.webui.support import Gateway
from tools.stack.env import prometheus_binary
from tools.stack.processes import free_port
from tools.stack.prometheus import PrometheusServer, start_prometheus

pytestmark = [pytest.mark.vllm, pytest.mark.s3]

TIME_FACTOR = 180
ALERT = "VllmQueueBacklog"
THRESHOLD = 20  # the manifest's: checked against the rule below
# Three times the threshold: some of the load is always on its way between the client, the gateway and
# vLLM's API server, which the CPU engine starves (it and its worker spin on both cores); at 32 clients
# vLLM's queue peaked at exactly 20 in one run.
CONCURRENT_REQUESTS = 3 * THRESHOLD + 4


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


def upstream_trouble(gateway: Gateway, load: ChatLoad) -> str:
    """What the load got and what the gateway counted against the model server, for a failure message."""
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    lines = [line for line in metrics.splitlines()
             if line.startswith(("gateway_upstream_errors_total", "gateway_upstream_replicas"))]
    return f"statuses {dict(load.statuses)}; gateway: {lines}"


def what_prometheus_saw(prometheus: PrometheusServer, window: str) -> str:
    """The recorded queue's peak and vLLM's scrapes over `window`, in Prometheus's own words."""
    figures = {
        "peak recorded queue": f"max_over_time(llm:vllm_requests_waiting:sum[{window}])",
        "vLLM scrapes": f'count_over_time(up{{job="vllm"}}[{window}])',
        "of which succeeded": f'sum_over_time(up{{job="vllm"}}[{window}])',
        "slowest scrape s": f'max_over_time(scrape_duration_seconds{{job="vllm"}}[{window}])',
    }
    seen = {name: [value for _, value in prometheus.query_vector(expr)] for name, expr in figures.items()}
    return f"Prometheus over the last {window}: {seen}; last scrapes {prometheus.scrapes()}"


def has_fired(prometheus: PrometheusServer) -> bool:
    fired = f'count_over_time(ALERTS{{alertname="{ALERT}", alertstate="firing"}}[10m])'
    return bool(prometheus.query_vector(fired))


def wait_for(condition: Any, timeout: float, what: str, explain: Any = lambda: "") -> float:
    """Seconds until `condition()` held; fails the test after `timeout` with `explain()`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout:g} s. {explain()}")
        time.sleep(0.5)
    return time.monotonic() - start


def test_queue_alert_fires_under_load_and_resolves(
    vllm_server: Any, vllm_gateway: Gateway, prometheus_with_rules: PrometheusServer
) -> None:
    prometheus = prometheus_with_rules
    assert alerts(rules_document())[ALERT]["expr"] == f"llm:vllm_requests_waiting:sum > {THRESHOLD}"
    wait_for(lambda: prometheus.targets_up() == {"vllm": True, "gateway": True}, 30, "both targets up")
    assert ALERT not in prometheus.alerts()

    with ChatLoad(vllm_gateway.url, vllm_server.model, CONCURRENT_REQUESTS) as load:
        # Prometheus's own record of the alert's states, not a poll of its current state: the alert
        # can fire and resolve between two polls.
        wait_for(lambda: has_fired(prometheus), 300, f"{ALERT} firing",
                 lambda: f"{what_prometheus_saw(prometheus, '5m')}; {upstream_trouble(vllm_gateway, load)}")
        # The scrape that showed the queue also showed the full batch beside it
        waiting = prometheus.query("max_over_time(llm:vllm_requests_waiting:sum[10m])")
        running = prometheus.query("max_over_time(llm:vllm_requests_running:sum[10m])")

    assert set(load.statuses) == {200}, upstream_trouble(vllm_gateway, load)
    assert waiting > THRESHOLD, upstream_trouble(vllm_gateway, load)
    assert running == vllm_server.max_num_seqs
    # Every request has ended (Load waits for them): the queue drains, the alert resolves.
    wait_for(lambda: ALERT not in prometheus.alerts(), 300, f"{ALERT} resolved")
    wait_for(lambda: prometheus.query("llm:vllm_requests_waiting:sum") == 0, 60, "the recorded queue at 0")
    assert ALERT not in prometheus.alerts()
