"""The admin page's scaling view against the local stack: the real vLLM and gateway scraped by Debian's
Prometheus, read by the gateway (GATEWAY_PROMETHEUS_URL) and shown in Debian's Chromium.

No Kubernetes can run here, so the series kube-state-metrics and Karpenter export in a cluster come from a
stand-in exporter (`ClusterStandIn`) with exactly their names and labels (tools/validate/data/exporters);
vLLM's queue comes from the real vLLM under load through the real gateway.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.webui.conftest import GatewayFactory, PageProblems
from tests.webui.support import (
    ADMIN_TOKEN,
    ONE_CLIENT_FILLS_THE_QUEUE,
    Gateway,
    gateway_settings,
    running_gateway_process,
    screenshot,
)
from tools.stack.env import prometheus_binary
from tools.stack.processes import free_port
from tools.stack.prometheus import PrometheusServer, start_prometheus

pytestmark = [pytest.mark.vllm, pytest.mark.s3, pytest.mark.browser]

# Where the picture of the presenter view is written when asked for (docs/scaling-view.png, in the READMEs).
SCREENSHOT_ENV = "SCALING_VIEW_SCREENSHOT"
PRESENTER_SCREEN = {"width": 1280, "height": 720}
LOADED_WAIT_MS = 60_000
# A change in the stand-in cluster reaches the page after a scrape (every 10 s) and the page's refresh
SCRAPED_WAIT_MS = 30_000


class ClusterStandIn:
    """kube-state-metrics' and Karpenter's series for one vLLM Deployment, its HPA and its GPU nodes."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.ready = Gauge("kube_deployment_status_replicas_ready", "", ["namespace", "deployment"],
                           registry=registry)
        self.desired = Gauge("kube_horizontalpodautoscaler_status_desired_replicas", "",
                             ["namespace", "horizontalpodautoscaler"], registry=registry)
        self.allocatable = Gauge("karpenter_nodes_allocatable", "",
                                 ["node_name", "nodepool", "resource_type", "capacity_type", "instance_type"],
                                 registry=registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=registry)

    def set_cluster(self, *, vllm_ready: int, vllm_desired: int, gateway_ready: int,
                    gpu_nodes: dict[str, str]) -> None:
        """gpu_nodes: node name -> capacity type (each node one nvidia.com/gpu)."""
        self.ready.labels("inference", "vllm").set(vllm_ready)
        self.ready.labels("inference", "gateway").set(gateway_ready)
        self.desired.labels("inference", "vllm").set(vllm_desired)
        self.allocatable.clear()
        for node, capacity in gpu_nodes.items():
            self.allocatable.labels(node, "gpu-inference", "nvidia.com/gpu", capacity, "g6.xlarge").set(1)
            self.allocatable.labels(node, "gpu-inference", "cpu", capacity, "g6.xlarge").set(3.92)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterStandIn]:
    stand_in = ClusterStandIn()
    stand_in.set_cluster(vllm_ready=1, vllm_desired=1, gateway_ready=2,
                         gpu_nodes={"ip-10-0-1-1": "spot"})
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="module")
def scaling_prometheus(
    vllm_server: Any, cluster: ClusterStandIn, stack_logs: Path
) -> Iterator[PrometheusServer]:
    vllm = vllm_server.base_url.removeprefix("http://")
    server = start_prometheus(
        prometheus_binary(),
        port=free_port(),
        targets={"vllm": vllm, "cluster": f"127.0.0.1:{cluster.port}"},
        state_dir=stack_logs / "prometheus-scaling-view",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scaling_gateway(s3_credentials: Any, vllm_server: Any, scaling_prometheus: PrometheusServer,
                    tmp_path: Path) -> Iterator[Gateway]:
    settings = gateway_settings(s3_endpoint_url=s3_credentials.endpoint_url, bucket=s3_credentials.bucket,
                                region=s3_credentials.region, upstream_url=vllm_server.base_url,
                                model=vllm_server.model, prometheus_url=scaling_prometheus.url,
                                **ONE_CLIENT_FILLS_THE_QUEUE)
    with running_gateway_process(settings, tmp_path / "gateway.log") as gateway:
        yield gateway


def shown_number(page: Any, selector: str) -> int:
    """The figure an element shows; -1 while it shows "no data"."""
    text = page.inner_text(selector)
    return -1 if text == "no data" else int(text)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.25)
    return value


def scaling(gateway: Gateway) -> dict[str, Any]:
    return gateway.admin("GET", "/api/admin/scaling").json()


def test_scaling_needs_the_admin_token(scaling_gateway: Gateway) -> None:
    response = httpx.get(scaling_gateway.url + "/api/admin/scaling", timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_admin_token"


def test_scaling_reads_prometheus(scaling_gateway: Gateway, scaling_prometheus: PrometheusServer,
                                  cluster: ClusterStandIn) -> None:
    cluster.set_cluster(vllm_ready=1, vllm_desired=1, gateway_ready=2,
                        gpu_nodes={"ip-10-0-1-1": "spot", "ip-10-0-1-2": "on-demand"})
    two_nodes = {"spot": 1, "on-demand": 1}
    wait_for(lambda: scaling(scaling_gateway)["gpu_nodes"] == two_nodes, 30, "two GPU nodes")
    # Prometheus's first scrape of vLLM may come after the stand-in's: no sample yet reads as None
    wait_for(lambda: None not in scaling(scaling_gateway)["queue"].values(), 60, "vLLM's gauges scraped")

    body = scaling(scaling_gateway)

    assert body["prometheus_url"] == scaling_prometheus.url
    assert (body["reachable"], body["error"]) == (True, None)
    assert body["queue"] == {"waiting": 0, "running": 0}
    assert body["replicas"] == {"ready": 1, "desired": 1, "gateway_ready": 2}
    assert body["gpu_nodes"] == {"spot": 1, "on-demand": 1}
    assert body["history_seconds"] == 3600
    assert body["last_scale_event"] is None or body["last_scale_event"]["to"] == 1


def test_scaling_says_when_prometheus_cannot_be_read(start_gateway: GatewayFactory, vllm_server: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with start_gateway(upstream_url=vllm_server.base_url, model=vllm_server.model,
                       prometheus_url=closed) as gateway:
        body = scaling(gateway)
    with start_gateway(upstream_url=vllm_server.base_url, model=vllm_server.model) as gateway:
        off = scaling(gateway)

    assert (body["prometheus_url"], body["reachable"]) == (closed, False)
    assert body["error"].startswith("ConnectError")
    assert set(body) == {"prometheus_url", "reachable", "error"}
    assert off == {"prometheus_url": None, "reachable": False,
                   "error": "the scaling view is off: GATEWAY_PROMETHEUS_URL is not set"}


class Load:
    """Chat completions through the gateway from `concurrency` threads until stopped."""

    def __init__(self, url: str, model: str, concurrency: int) -> None:
        self.url, self.model, self.stop = url, model, threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def _run(self) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": "Tell a story."}],
                "max_tokens": 300, "ignore_eos": True}
        with httpx.Client(timeout=300) as client:
            while not self.stop.is_set():
                client.post(f"{self.url}/v1/chat/completions", json=body)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=300)


def test_presenter_view_shows_the_queue_replicas_nodes_and_last_scale_event(
        scaling_gateway: Gateway, vllm_server: Any, cluster: ClusterStandIn, chromium: Any) -> None:
    context = chromium.new_context(viewport=PRESENTER_SCREEN, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems = PageProblems()
    page.on("pageerror", lambda error: problems.page_errors.append(str(error)))
    page.on("console", lambda m: problems.console_errors.append(m.text) if m.type == "error" else None)
    try:
        cluster.set_cluster(vllm_ready=1, vllm_desired=1, gateway_ready=2, gpu_nodes={"ip-10-0-1-1": "spot"})
        page.goto(scaling_gateway.url + "/admin")
        page.fill("#token", ADMIN_TOKEN)
        page.press("#token", "Enter")
        page.wait_for_selector("#console:not([hidden])")
        expect(page.locator("#scale-replicas")).to_have_text("1 / 1", timeout=SCRAPED_WAIT_MS)
        expect(page.locator("#scale-nodes")).to_have_text("spot 1", timeout=SCRAPED_WAIT_MS)
        expect(page.locator("#fig-replicas-gateway")).to_have_text("2", timeout=SCRAPED_WAIT_MS)
        expect(page.locator("#fig-replicas-vllm")).to_have_text("1 / 1", timeout=SCRAPED_WAIT_MS)

        with Load(scaling_gateway.url, vllm_server.model, concurrency=12):
            # KEDA asks for a second replica, Karpenter launches an on-demand node for it.
            cluster.set_cluster(vllm_ready=1, vllm_desired=2, gateway_ready=2,
                                gpu_nodes={"ip-10-0-1-1": "spot", "ip-10-0-1-2": "on-demand"})
            # A scrape, a rule evaluation and the page's refresh, on a machine the load keeps busy
            expect(page.locator("#scale-replicas")).to_have_text("1 / 2", timeout=LOADED_WAIT_MS)
            expect(page.locator("#scale-nodes")).to_have_text("on-demand 1 · spot 1", timeout=LOADED_WAIT_MS)
            expect(page.locator("#scale-event")).to_have_text(re.compile(r"^1 → 2 replicas, \d+ s ago$"),
                                                              timeout=LOADED_WAIT_MS)
            wait_for(lambda: shown_number(page, "#scale-waiting") > 0, 60, "a queue in the scaling view")
            # The view shows vLLM's gauges as scraped: an instant between two requests reads one short, and
            # a scrape that vLLM's busy API server answered too late reads "no data"
            wait_for(lambda: shown_number(page, "#scale-running") == vllm_server.max_num_seqs, 60,
                     "a full batch in the scaling view")
            page.click("#presenter")
            expect(page.locator("#presenter")).to_have_attribute("aria-pressed", "true")
            assert page.is_hidden("#live-title")
            font_size = "e => parseFloat(getComputedStyle(e).fontSize)"
            waiting_size = page.eval_on_selector("#scale-waiting", font_size)
            assert waiting_size >= 64  # px: legible from the back of a room on a 1280-pixel screen
            path = screenshot(page, "admin-scaling-presenter")
            if os.environ.get(SCREENSHOT_ENV):
                page.screenshot(path=os.environ[SCREENSHOT_ENV])
        assert path.is_file()
        assert problems.page_errors == []
        assert problems.csp_violations == []
    finally:
        context.close()
