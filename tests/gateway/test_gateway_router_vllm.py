"""The router against real vLLM servers (CPU build, tiny model): a cold start held through, and a second
replica started during a load run. Each test starts a vLLM of its own (the session's serves the others).

Timing thresholds come from what the same run measured (vLLM's own start-up time, the load's request
latency), never from absolute times: the machine is shared and slow moments are not failures.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.testing.servers import serve_in_thread
from tests.gateway.support import metric_value
from tools.stack.env import REPO_ROOT
from tools.stack.processes import free_port
from tools.stack.vllm import VllmServer, dev_overlay_args, local_serving_args, start_vllm

pytestmark = [pytest.mark.vllm, pytest.mark.s3]


def vllm_requests(server_url: str) -> float:
    """vLLM's own count of finished requests (``vllm:request_success_total``, every reason and model)."""
    text = httpx.get(f"{server_url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "vllm:request_success_total")


def start_own_vllm(python: Path, model_dir: Path, port: int, logs: Path, name: str,
                   max_num_seqs: int, cpus: frozenset[int] | None = None) -> VllmServer:
    overlay_args, _source = dev_overlay_args(REPO_ROOT)
    args = local_serving_args(overlay_args, model_dir=model_dir, port=port, max_num_seqs=max_num_seqs)
    return start_vllm(python, args, log_path=logs / f"{name}.log", max_num_seqs=max_num_seqs,
                      cpus=cpus)


def replica_requests(gateway_url: str, replica: str) -> float:
    text = httpx.get(f"{gateway_url}/metrics", timeout=30).text
    try:
        return metric_value(text, "gateway_upstream_replica_requests_total", {"replica": replica})
    except KeyError:
        return 0.0


def outstanding(gateway_url: str, replica: str) -> int:
    replicas = httpx.get(f"{gateway_url}/status", timeout=30).json()["upstream"]["replicas"]
    return next(member["outstanding"] for member in replicas if member["url"] == replica)


class ReadinessWatch:
    """Polls /readyz every half second in a thread; keeps every status seen, and when."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(httpx.get(f"{self.url}/readyz", timeout=30).status_code)
            self.times.append(time.monotonic())
            self._stop.wait(0.5)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def late_port() -> Iterator[int]:
    yield free_port()


@pytest.mark.timeout(900)  # starts a vLLM of its own (up to START_TIMEOUT on a busy machine)
def test_a_gateway_started_before_vllm_holds_every_request_until_it_serves(
        vllm_server, vllm_python_path, tiny_model, stack_logs, make_settings, late_port):
    """(a) requests sent with no model server all complete once vLLM starts, readiness 200 throughout, the
    wake signal rising; (c) the hold's count bound gives 503 + Retry-After; (d) a client that left while
    held costs vLLM nothing (its own request counter)."""
    model = vllm_server.model
    settings = make_settings(upstream_url=f"http://127.0.0.1:{late_port}", model=model,
                             upstream_probe_seconds=0.2, hold_max_requests=5, hold_keepalive_seconds=5,
                             retry_after_seconds=3)
    results: dict[str, httpx.Response] = {}
    bodies: dict[str, str] = {}

    def ask(name: str, stream: bool) -> None:
        body = {"model": model, "max_tokens": 4, "stream": stream,
                "messages": [{"role": "user", "content": f"Say {name}."}]}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=600) as response:
            bodies[name] = response.read().decode()
        results[name] = response

    def held() -> float:
        return metric_value(httpx.get(f"{gateway.url}/metrics", timeout=30).text, "gateway_held_requests")

    with serve_in_thread(create_app(settings)) as gateway, ReadinessWatch(gateway.url) as readiness:
        threads = [threading.Thread(target=ask, args=(name, name.startswith("stream")), daemon=True)
                   for name in ("stream-1", "plain-1", "stream-2", "plain-2")]
        for thread in threads:
            thread.start()
        leaver_body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Bye."}]}
        deadline = time.monotonic() + 60
        while held() < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # The fifth held request: its client gives up while it waits.
        with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(30, read=3)) as leaving:
            leaving.post(f"{gateway.url}/v1/chat/completions", json=leaver_body)
        deadline = time.monotonic() + 60
        while held() != 4:
            assert time.monotonic() < deadline, "the client that left is still held"
            time.sleep(0.1)
        # Fill the hold to its bound of 5, then one more: 503 with Retry-After at once.
        filler = threading.Thread(target=ask, args=("plain-3", False), daemon=True)
        filler.start()
        while held() != 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = httpx.post(f"{gateway.url}/v1/chat/completions", json=leaver_body, timeout=30)
        threads.append(filler)

        vllm_starting = time.monotonic()
        late = start_own_vllm(vllm_python_path, tiny_model, late_port, stack_logs, "vllm-late",
                              vllm_server.max_num_seqs)
        vllm_ready = time.monotonic()
        try:
            for thread in threads:
                thread.join(600)
            metrics = httpx.get(f"{gateway.url}/metrics", timeout=30).text
            served = vllm_requests(late.base_url)
        finally:
            late.stop()
    startup = late.startup_seconds or 0.0
    print(f"vLLM started in {startup:.1f} s; readiness polled {len(readiness.statuses)} times; "
          f"wake counter {metric_value(metrics, 'gateway_upstream_unavailable_total'):.0f}")

    assert {name: response.status_code for name, response in results.items()} == {
        "stream-1": 200, "stream-2": 200, "plain-1": 200, "plain-2": 200, "plain-3": 200}
    for name in ("plain-1", "plain-2", "plain-3"):
        assert json.loads(bodies[name])["choices"][0]["message"]["content"]
    for name in ("stream-1", "stream-2"):
        # Held longer than the keep-alive interval: comments first, then vLLM's stream.
        assert bodies[name].startswith(": keep-alive\n\n")
        events = [event[6:] for event in bodies[name].split("\n\n") if event.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "".join(json.loads(event)["choices"][0]["delta"].get("content") or ""
                       for event in events[:-1] if json.loads(event)["choices"])
    assert readiness.statuses and set(readiness.statuses) == {200}
    # The ready-check ran all along vLLM's start-up, at least every other second on average (one poll
    # every half second plus its own time on a busy machine).
    assert readiness.times[0] <= vllm_starting and readiness.times[-1] >= vllm_ready
    assert len([t for t in readiness.times if vllm_starting <= t <= vllm_ready]) >= startup / 2
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "3"
    assert refused.json()["error"]["code"] == "upstream_unavailable"
    # vLLM ran exactly the five requests that stayed: neither the one that left nor the refused one.
    assert served == 5
    # The wake signal: one per request on entry, then one per second held; the first four were held
    # at least for vLLM's whole start-up.
    assert metric_value(metrics, "gateway_upstream_unavailable_total") >= 4 * int(startup)
    assert metric_value(metrics, "gateway_held_requests") == 0
    assert metric_value(metrics, "gateway_client_disconnects_total") == 1
    assert metric_value(metrics, "gateway_shed_requests_total", {"reason": "hold_full"}) == 1


@pytest.mark.timeout(900)  # starts a vLLM of its own (up to START_TIMEOUT on a busy machine)
def test_a_replica_started_during_a_load_run_takes_its_share_at_once(
        vllm_server, vllm_python_path, tiny_model, stack_logs, make_settings, late_port):
    """(b) Two real vLLMs behind one gateway, the second started while load runs: once it is ready it
    serves a fair share, counted from each vLLM's own request counter."""
    model = vllm_server.model
    second_url = f"http://127.0.0.1:{late_port}"
    settings = make_settings(upstream_url=vllm_server.base_url, model=model, upstream_probe_seconds=0.2,
                             upstream_replicas=f"{vllm_server.base_url},{second_url}")
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    latencies: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        async def worker(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                started = time.monotonic()
                response = await client.post("/v1/chat/completions", json=body)
                latencies.append(time.monotonic() - started)
                statuses.append(response.status_code)

        async def run() -> None:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=600) as client, \
                    anyio.create_task_group() as group:
                for _ in range(vllm_server.max_num_seqs):
                    group.start_soon(worker, client)

        anyio.run(run)

    with serve_in_thread(create_app(settings)) as gateway:
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        second = None
        try:
            # Each replica on its own core, as each has its own node in a cluster: left to vLLM's
            # automatic binding, both engines take core 0 and the second, starting while the first runs
            # flat out, takes many minutes to come up on two cores. The whole second server is kept off
            # the first one's core from its first instruction: once, started with only its engine bound,
            # its API server wrote nothing in 540 s and outlived SIGKILL by 180 s.
            last_core = max(os.sched_getaffinity(0))
            second = start_own_vllm(vllm_python_path, tiny_model, late_port, stack_logs, "vllm-second",
                                    vllm_server.max_num_seqs, cpus=frozenset({last_core}))
            ready_at = time.monotonic()
            sent_before = replica_requests(gateway.url, second_url)
            before_ready = list(latencies)
            # The second replica's first request, timed from its readiness by the gateway's own view
            # (vLLM's /metrics answers slowly while its CPU engine is busy): a request outstanding there,
            # or one answered (a fresh CPU vLLM's first answer is slow: the send is what is timed).
            while outstanding(gateway.url, second_url) == 0 and (
                    replica_requests(gateway.url, second_url) == sent_before):
                time.sleep(0.05)
            first_served_after = time.monotonic() - ready_at
            # What one health check of the new replica takes now: the gateway's probe is one.
            probed = time.monotonic()
            httpx.get(f"{second_url}/health", timeout=60)
            health_seconds = time.monotonic() - probed
            first_before, second_before = vllm_requests(vllm_server.base_url), vllm_requests(second_url)
            # A window of as many requests as the load finished before the second replica was ready
            # would take one replica: long enough for a share to mean something.
            typical = statistics.median(before_ready)
            window_ends = time.monotonic() + max(10 * typical, 5.0)
            in_flight_second: list[int] = []
            in_flight_all: list[int] = []
            while time.monotonic() < window_ends:
                replicas = httpx.get(f"{gateway.url}/status", timeout=30).json()["upstream"]["replicas"]
                in_flight_all.append(sum(member["outstanding"] for member in replicas))
                in_flight_second.append(sum(member["outstanding"] for member in replicas
                                            if member["url"] == second_url))
                time.sleep(0.2)
            first_delta = vllm_requests(vllm_server.base_url) - first_before
            second_delta = vllm_requests(second_url) - second_before
        finally:
            stop.set()
            loader.join(120)
            if second is not None:
                second.stop()
    in_flight_share = sum(in_flight_second) / sum(in_flight_all)
    print(f"second vLLM ready after {second.startup_seconds:.1f} s of load; first request "
          f"{first_served_after:.2f} s after (a health check: {health_seconds:.2f} s); "
          f"median request {typical * 1000:.0f} ms; "
          f"served {second_delta:.0f}/{first_delta + second_delta:.0f}; "
          f"in flight there {in_flight_share:.0%} of {len(in_flight_all)} samples")
    assert set(statuses) == {200}
    # Balancing per connection would send the new replica nothing until pooled connections expire
    # (upstream_keepalive_seconds) and churn: measured on the same machine, 0 % (bench/router_bench.py).
    # Per request, it takes work before the first expiry and holds half of what is in flight (the load
    # sends max_num_seqs at a time; the replica with fewer outstanding gets the next one), whatever its
    # speed: on two cores its engine shares a core with the load, the gateway and both API servers, so
    # what it finishes is its speed's share, counted by vLLM itself and required to be real work.
    assert first_served_after < settings.upstream_keepalive_seconds
    assert in_flight_share >= 0.4
    assert second_delta >= max(vllm_server.max_num_seqs, 0.05 * (first_delta + second_delta))
