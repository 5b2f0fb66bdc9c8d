"""Calibration against a real vLLM: the simulator's single-replica queue, and the latency its users
see, follow the real ones.

The `vllm_server` session fixture (tests/conftest.py) serves the project's tiny model on the CPU build
with --max-num-seqs 4. The test
1. measures the per-request service time at batch sizes 1..max_num_seqs on this machine (fixed
   max_tokens, end of sequence ignored, streamed) and the time to first token of a request alone,
   before the run and again after it (the mean of the two): that is the calibration, fed to the
   simulator as the GPU's throughput table and its prefill time;
2. drives a known fixed-rate arrival pattern for about a minute (under capacity, then over it, then
   nothing), and counts every 0.5 s the requests running and waiting from their own start and end
   times (`drive` says why not from vLLM's gauges, which are scraped only to see that vLLM queued);
3. simulates one replica with the same arrivals and the measured service times, scaled to the pace this
   run's over-capacity phase measured (a full batch's throughput: the machine is shared, and the
   calibration before and after can differ from the run by tens of percent), and requires the mean
   absolute error over time of running, of waiting, and by arrival time of the time to first token
   and of the inter-token latency, to be at most 20 % of the observed peak of each (the bound below).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.validate.simulate.support import single_replica
from tools.validate.simulate.load import LoadProfile

pytestmark = pytest.mark.vllm

MAX_TOKENS = 96
SCRAPE_SECONDS = 0.5
MAE_BOUND = 0.20  # of the observed peak, for running, waiting, time to first token, inter-token latency
REPEATS = 3
# A new connection per request: reusing one that vLLM's server is closing for keep-alive expiry fails
# with "Server disconnected without sending a response" and has nothing to do with the queue.
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(scope="module")
def server(vllm_server: Any) -> Any:
    return vllm_server


@contextmanager
def off_the_engine_core() -> Iterator[None]:
    """This thread, and the threads it starts, on the last CPU only, for the duration.

    vLLM's CPU build binds its engine's OpenMP thread to the first CPU and leaves the last to the rest
    (its log: "core ids=[0]", "reserved_cpus=[1]"). A load generator free to run on the engine's CPU
    takes turns with the engine itself, and the engine's throughput then falls with the load: the
    queue it builds would measure the test's own threads, not the simulator.
    """
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        yield
        return
    os.sched_setaffinity(0, {max(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


@dataclass(frozen=True)
class Timing:
    first_token: float  # s after the request was sent
    total: float

    @property
    def inter_token(self) -> float:
        return (self.total - self.first_token) / (MAX_TOKENS - 1)


def _complete(client: httpx.Client, server: Any) -> Timing:
    """One streamed completion of exactly MAX_TOKENS tokens: when its first token and its end came."""
    started = time.perf_counter()
    first_token = None
    body = {
        "model": server.model,
        "prompt": "Tell me about autoscaling.",
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with connect_sse(client, "POST", f"{server.base_url}/v1/completions", json=body, timeout=120) as source:
        source.response.raise_for_status()
        usage = None
        for event in source.iter_sse():
            if event.data == "[DONE]":
                break
            chunk = event.json()
            if first_token is None and chunk["choices"]:
                first_token = time.perf_counter() - started
            usage = chunk.get("usage") or usage
    assert first_token is not None and usage is not None
    assert usage["completion_tokens"] == MAX_TOKENS
    return Timing(first_token, time.perf_counter() - started)


@dataclass(frozen=True)
class Calibration:
    service: dict[int, float]  # mean seconds per request at each batch size
    first_token: float  # s, a request alone: what the simulator takes as prefill

    def mean(self, other: Calibration) -> Calibration:
        return Calibration({b: (self.service[b] + other.service[b]) / 2 for b in self.service},
                           (self.first_token + other.first_token) / 2)

    def scaled(self, pace: float) -> Calibration:
        return Calibration({b: seconds * pace for b, seconds in self.service.items()},
                           self.first_token * pace)


def measure_service_seconds(server: Any) -> Calibration:
    """Mean latency of `b` simultaneous requests, for b = 1..max_num_seqs, and the time to first token
    of a request alone (median of REPEATS rounds: the machine is shared, single rounds wander)."""
    service: dict[int, float] = {}
    first_token = 0.0
    with httpx.Client(limits=FRESH_CONNECTIONS) as client, ThreadPoolExecutor(server.max_num_seqs) as pool:
        _complete(client, server)  # first request compiles and warms caches
        for batch in range(1, server.max_num_seqs + 1):
            rounds = [list(pool.map(lambda _: _complete(client, server), range(batch)))
                      for _ in range(REPEATS)]
            service[batch] = float(np.median([np.mean([t.total for t in r]) for r in rounds]))
            if batch == 1:
                first_token = float(np.median([r[0].first_token for r in rounds]))
    return Calibration(service, first_token)


def _gauges(text: str) -> tuple[float, float]:
    values = {"vllm:num_requests_running": 0.0, "vllm:num_requests_waiting": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name] += sample.value
    return values["vllm:num_requests_running"], values["vllm:num_requests_waiting"]


@dataclass(frozen=True)
class Observed:
    queue: np.ndarray  # rows (t, running, waiting) every SCRAPE_SECONDS
    sent: np.ndarray  # per request, s after the start
    first_token: np.ndarray
    done: np.ndarray
    gauge_peak_waiting: float  # the largest queue vLLM's own gauge reported
    failed_scrapes: int

    def by_arrival(self, values: np.ndarray, bins: int) -> np.ndarray:
        """Mean of a per-request figure over the requests sent in each SCRAPE_SECONDS bin (NaN: none)."""
        index = np.minimum((self.sent / SCRAPE_SECONDS).astype(int), bins - 1)
        count = np.bincount(index, minlength=bins).astype(float)
        total = np.bincount(index, weights=values, minlength=bins)
        out = np.full(bins, np.nan)
        np.divide(total, count, out=out, where=count > 0)
        return out


def drive(server: Any, schedule: list[float], duration: float) -> Observed:
    """Send one request at each time of `schedule` (s after start). Observes running and waiting every
    SCRAPE_SECONDS from the requests' own start and end times, each request's first token and end, and
    the largest queue vLLM's gauge reported meanwhile.

    The queue is counted on the client's side: in flight = sent and not yet answered, of which vLLM
    runs up to max-num-seqs (its FCFS scheduler; the tiny model's KV cache never limits it) and queues
    the rest. vLLM's own gauges cannot be the reference here: while the CPU engine generates, it
    starves vLLM's API server, one /metrics answer takes up to 2 s, and the gauges it returns are
    seconds old (a full batch shows as 0, an idle engine as 4). They are scraped only to check that
    vLLM itself saw a queue."""
    spans: list[tuple[float, float, float]] = []
    peak_waiting = [0.0]
    failed_scrapes = [0]
    stop = threading.Event()
    start = time.perf_counter()

    def timed() -> None:
        sent = time.perf_counter() - start
        timing = _complete(client, server)
        spans.append((sent, sent + timing.first_token, time.perf_counter() - start))

    def scrape() -> None:
        with httpx.Client(limits=FRESH_CONNECTIONS) as scraper_client:
            while not stop.is_set():
                # vLLM's API server answers /metrics late while its engine is saturated (up to 9 s); a
                # scrape that failed is counted, and the next one tried
                try:
                    text = scraper_client.get(server.metrics_url, timeout=30).text
                except httpx.HTTPError:
                    failed_scrapes[0] += 1
                else:
                    peak_waiting[0] = max(peak_waiting[0], _gauges(text)[1])
                stop.wait(SCRAPE_SECONDS)

    scraper = threading.Thread(target=scrape, daemon=True)
    with (
        httpx.Client(limits=httpx.Limits(max_connections=len(schedule), max_keepalive_connections=0))
        as client,
        ThreadPoolExecutor(len(schedule)) as pool,
    ):
        scraper.start()
        futures = []
        for at in schedule:
            time.sleep(max(0.0, start + at - time.perf_counter()))
            futures.append(pool.submit(timed))
        for future in futures:
            future.result()
    stop.set()
    scraper.join(timeout=10)
    assert len(spans) == len(schedule)
    sent, first_token, done = np.array(spans).T
    times = np.arange(0.0, duration + SCRAPE_SECONDS / 2, SCRAPE_SECONDS)
    in_flight = np.array([np.count_nonzero((sent <= t) & (t < done)) for t in times], dtype=float)
    running = np.minimum(in_flight, server.max_num_seqs)
    queue = np.column_stack([times, running, in_flight - running])
    return Observed(queue, sent, first_token, done, peak_waiting[0], failed_scrapes[0])


ATTEMPTS = 3
# A run whose full-batch throughput fell below this share of the calibrated one (before and after the
# run) says nothing about the simulator: its service times did not hold.
HELD_THROUGHPUT = 0.7


# Timing against the real CPU vLLM on a shared 2-core machine (start-up, scheduling, ephemeral
# ports): a rerun tells a slow moment from a broken behaviour, which fails every attempt.
@pytest.mark.flaky(reruns=1)
def test_simulated_queue_follows_the_real_vllm(server: Any) -> None:
    """Up to ATTEMPTS runs, until one in which vLLM kept its calibrated throughput.

    vLLM's CPU engine on this 2-core machine sometimes all but stops for most of the over-capacity
    phase: 160-175 of 176 arrivals wait at the end of it, in vLLM's own gauge as much as on the
    client's side, and the service times measured just before and after are normal. Such a run tests
    the machine, not the simulator; it is reported and run again.
    """
    reports = []
    with off_the_engine_core():
        for _ in range(ATTEMPTS):
            held, report = run_calibration(server)
            reports.append(report)
            if held:
                return
    pytest.fail("vLLM never kept its calibrated throughput through a run:\n" + "\n".join(reports))


def mean_absolute_error(simulated: np.ndarray, observed: np.ndarray) -> float:
    """Over the points where both have a value (latency by arrival: bins with requests)."""
    both = ~np.isnan(simulated) & ~np.isnan(observed)
    assert both.any(), "no point to compare"
    return float(np.mean(np.abs(simulated[both] - observed[both])))


def run_calibration(server: Any) -> tuple[bool, str]:
    """(whether vLLM kept its calibrated throughput, the run's report); asserts on a run that did."""
    before = measure_service_seconds(server)
    assert list(before.service) == list(range(1, server.max_num_seqs + 1))
    capacity = server.max_num_seqs / before.service[server.max_num_seqs]  # requests/s at a full batch
    # 20 s at 60 % of capacity, 20 s at 160 %, then 20 s with no arrivals for the queue to drain.
    phases = [(20.0, 0.6 * capacity), (20.0, 1.6 * capacity), (20.0, 0.0)]
    schedule, start = [], 0.0
    for length, rate in phases:
        if rate > 0:
            schedule += list(start + (np.arange(int(length * rate)) + 0.5) / rate)
        start += length
    duration = start
    observed = drive(server, schedule, duration)
    # The machine is shared: measure again after the run and use the mean of both calibrations.
    calibration = before.mean(measure_service_seconds(server))
    # Over capacity the batch is full from shortly after the phase starts to its end.
    full_batch_rate = server.max_num_seqs / calibration.service[server.max_num_seqs]
    done = observed.done
    served = np.count_nonzero((done >= 25.0) & (done < 40.0)) / 15.0
    held = served >= HELD_THROUGHPUT * full_batch_rate
    # The simulator gets this run's own pace: the service times scaled so that a full batch serves what
    # the over-capacity phase measured. On a shared machine the before/after calibration and the run
    # differ by tens of percent (a neighbour's job, the engine's core), and the queue the simulator
    # should follow is the one this run's pace built.
    pace = float(full_batch_rate / served) if served > 0 else 1.0
    calibration = calibration.scaled(pace)

    times = np.array([0.0, 20.0, 20.0, 40.0, 40.0, duration])
    rates = np.array([phases[0][1], phases[0][1], phases[1][1], phases[1][1], 0.0, 0.0])
    load = LoadProfile("calibration", times + np.array([0, 0, 1e-6, 0, 1e-6, 0]), rates)
    result = single_replica(calibration.service, server.max_num_seqs, load, tokens=MAX_TOKENS,
                            prefill=calibration.first_token, step_seconds=SCRAPE_SECONDS)
    series = result.series
    assert series.ttft is not None and series.itl is not None

    queue = observed.queue
    index = np.minimum((queue[:, 0] / SCRAPE_SECONDS).astype(int), len(series.time) - 1)
    sim_running, sim_waiting = series.running[index], series.waiting[index]
    obs_running, obs_waiting = queue[:, 1], queue[:, 2]
    mae_running = mean_absolute_error(sim_running, obs_running)
    mae_waiting = mean_absolute_error(sim_waiting, obs_waiting)
    # Latency by arrival time: what a request sent in each bin saw, against what the simulator says a
    # request arriving then sees.
    bins = len(series.time)
    obs_ttft = observed.by_arrival(observed.first_token - observed.sent, bins)
    obs_itl = observed.by_arrival((done - observed.first_token) / (MAX_TOKENS - 1), bins)
    mae_ttft = mean_absolute_error(series.ttft, obs_ttft)
    mae_itl = mean_absolute_error(series.itl, obs_itl)
    peak_ttft, peak_itl = float(np.nanmax(obs_ttft)), float(np.nanmax(obs_itl))
    report = (
        f"service s by batch {calibration.service}, first token alone {calibration.first_token:.3f} s; "
        f"MAE running {mae_running:.2f} (peak {obs_running.max():.0f}), "
        f"waiting {mae_waiting:.2f} (peak {obs_waiting.max():.0f}; vLLM's gauge "
        f"{observed.gauge_peak_waiting:.0f}, {observed.failed_scrapes} scrapes failed) "
        f"over {len(queue)} samples; "
        f"MAE time to first token {mae_ttft:.2f} s (peak {peak_ttft:.2f} s), "
        f"inter-token latency {mae_itl * 1000:.2f} ms (peak {peak_itl * 1000:.2f} ms) by arrival"
    )
    report += (f"; full-batch throughput {served:.2f} req/s against {full_batch_rate:.2f} calibrated "
               f"(service times scaled by {pace:.2f})")
    print(report)
    if not held:
        return False, report
    assert obs_waiting.max() >= 2, f"the over-capacity phase must build a real queue: {report}"
    assert observed.gauge_peak_waiting >= 2, f"vLLM's own gauge must report that queue: {report}"
    assert mae_running <= MAE_BOUND * obs_running.max(), report
    assert mae_waiting <= MAE_BOUND * obs_waiting.max(), report
    assert mae_ttft <= MAE_BOUND * peak_ttft, report
    assert mae_itl <= MAE_BOUND * peak_itl, report
    return True, report
