"""Calibration against a real vLLM: the simulator's single-replica queue, time to first token and
inter-token latency follow the real ones.

The `vllm_server` session fixture (tests/conftest.py) serves the project's tiny model on the CPU build
with --max-num-seqs 4. The test
1. measures the per-request service time at batch sizes 1..max_num_seqs on this machine (fixed
   max_tokens, end of sequence ignored), before the run and again after it (the mean of the two):
   that is the calibration, fed to the simulator as the GPU's throughput table;
2. drives a known fixed-rate arrival pattern for about a minute (under capacity, then over it, then
   nothing), and counts every 0.5 s the requests running and waiting from their own start and end
   times (`drive` says why not from vLLM's gauges, which are scraped only to see that vLLM queued);
3. simulates one replica with the same arrivals and the measured service times, scaled to the pace this
   run's over-capacity phase measured (a full batch's throughput: the machine is shared, and the
   calibration before and after can differ from the run by tens of percent), and requires the mean
   absolute error of running and of waiting over time to be at most 20 % of the observed peak of each
   (the bound below);
4. holds the simulator's time to first token and inter-token latency against vLLM's own histograms
   (`vllm:time_to_first_token_seconds`, `vllm:request_time_per_output_token_seconds`), scraped every
   0.5 s: between two scrapes the histogram's count and sum grew by the requests that got their first
   token (or ended) meanwhile, and vLLM serves first come, first served, so those are the next requests
   in the order they were sent; the simulator's figure for each of them is read at its send time. The
   mean absolute error over those groups must be at most 20 % of the largest observed group mean. The
   simulator's prefill (the first token's share of a request) is vLLM's own time to first token for
   one request alone, measured with the service times.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.validate.simulate.support import single_replica
from tools.validate.simulate.load import LoadProfile

pytestmark = pytest.mark.vllm

MAX_TOKENS = 96
SCRAPE_SECONDS = 0.5
MAE_BOUND = 0.20  # of the observed peak, for running and for waiting
REPEATS = 3
STEPS_PER_SERVICE = 10  # simulator steps in the fastest measured service time
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


def _complete(client: httpx.Client, server: Any) -> float:
    started = time.perf_counter()
    response = client.post(
        f"{server.base_url}/v1/completions",
        json={
            "model": server.model,
            "prompt": "Tell me about autoscaling.",
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "temperature": 0,
        },
        timeout=120,
    )
    response.raise_for_status()
    assert response.json()["usage"]["completion_tokens"] == MAX_TOKENS
    return time.perf_counter() - started


@dataclass
class Calibration:
    """Mean latency of `b` simultaneous requests by b, and vLLM's time to first token of one alone."""

    service: dict[int, float]
    first_token: float


def calibrate(server: Any) -> Calibration:
    """Service time of b simultaneous requests, for b = 1..max_num_seqs (median of REPEATS rounds: the
    machine is shared, single rounds wander), and vLLM's mean time to first token over the rounds of one."""
    service: dict[int, float] = {}
    with httpx.Client(limits=FRESH_CONNECTIONS) as client, ThreadPoolExecutor(server.max_num_seqs) as pool:
        _complete(client, server)  # first request compiles and warms caches
        alone = Histogram()
        for batch in range(1, server.max_num_seqs + 1):
            if batch == 1:
                alone.add(read_metrics(client, server), TTFT)
            rounds = [
                np.mean(list(pool.map(lambda _: _complete(client, server), range(batch))))
                for _ in range(REPEATS)
            ]
            if batch == 1:
                alone.add(read_metrics(client, server), TTFT)
            service[batch] = float(np.median(rounds))
    assert alone.observed == REPEATS, f"vLLM counted {alone.observed} first tokens of {REPEATS} requests"
    return Calibration(service, (alone.sums[-1] - alone.sums[0]) / REPEATS)


WAITING = "vllm:num_requests_waiting"
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:request_time_per_output_token_seconds"  # one observation per request: its mean
SAMPLES = (WAITING, f"{TTFT}_count", f"{TTFT}_sum", f"{ITL}_count", f"{ITL}_sum")


def read_metrics(client: httpx.Client, server: Any) -> dict[str, float]:
    """The SAMPLES of vLLM's /metrics, summed over label sets."""
    values = dict.fromkeys(SAMPLES, 0.0)
    for family in text_string_to_metric_families(client.get(server.metrics_url, timeout=30).text):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name] += sample.value
    return values


@dataclass
class Histogram:
    """A vLLM histogram's count and sum at successive scrapes."""

    counts: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)

    def add(self, metrics: dict[str, float], name: str) -> None:
        self.counts.append(metrics[f"{name}_count"])
        self.sums.append(metrics[f"{name}_sum"])

    def groups(self) -> list[tuple[int, int, float]]:
        """(first request, end, mean) of the requests observed between consecutive scrapes, numbered
        from the first scrape."""
        out = []
        for before, after, sum_before, sum_after in zip(
                self.counts, self.counts[1:], self.sums, self.sums[1:], strict=False):
            if after > before:
                first, end = int(before - self.counts[0]), int(after - self.counts[0])
                out.append((first, end, (sum_after - sum_before) / (after - before)))
        return out

    @property
    def observed(self) -> int:
        return int(self.counts[-1] - self.counts[0])


def group_error(groups: list[tuple[int, int, float]], simulated: np.ndarray) -> tuple[float, float]:
    """(mean absolute error per request, largest observed group mean) of the simulated per-request
    figures (in sent order) against the observed group means."""
    errors = [(end - first) * abs(mean - float(np.mean(simulated[first:end]))) for first, end, mean in groups]
    requests = sum(end - first for first, end, _ in groups)
    return sum(errors) / requests, max(mean for _, _, mean in groups)


@dataclass
class Observed:
    """What a run of `drive` saw."""

    rows: np.ndarray  # (t, running, waiting) every SCRAPE_SECONDS, counted from the requests' own times
    sent: np.ndarray  # each request's send time, in sent order
    done: np.ndarray  # each request's answer time, in sent order
    peak_gauge_waiting: float
    failed_scrapes: int
    first_token: Histogram
    per_token: Histogram


def drive(server: Any, schedule: list[float], duration: float) -> Observed:
    """Send one request at each time of `schedule` (s after start), scraping vLLM every SCRAPE_SECONDS.

    The queue is counted on the client's side: in flight = sent and not yet answered, of which vLLM
    runs up to max-num-seqs (its FCFS scheduler; the tiny model's KV cache never limits it) and queues
    the rest. That count is exact at every sample time; vLLM's gauges are a scrape's snapshot, taken
    whenever its API server gets to the request, and are read only to check that vLLM itself queued.
    The latency histograms are read before the first request, at every scrape, and after the last."""
    spans: list[tuple[float, float]] = []
    peak_waiting = [0.0]
    failed_scrapes = [0]
    first_token, per_token = Histogram(), Histogram()
    stop = threading.Event()

    def record(metrics: dict[str, float]) -> None:
        peak_waiting[0] = max(peak_waiting[0], metrics[WAITING])
        first_token.add(metrics, TTFT)
        per_token.add(metrics, ITL)

    def timed() -> None:
        sent = time.perf_counter() - start
        _complete(client, server)
        spans.append((sent, time.perf_counter() - start))

    def scrape() -> None:
        with httpx.Client(limits=FRESH_CONNECTIONS) as scraper_client:
            while not stop.wait(SCRAPE_SECONDS):
                # a scrape that failed is counted, and the next one tried
                try:
                    record(read_metrics(scraper_client, server))
                except httpx.HTTPError:
                    failed_scrapes[0] += 1

    scraper = threading.Thread(target=scrape, daemon=True)
    with (
        httpx.Client(limits=httpx.Limits(max_connections=len(schedule), max_keepalive_connections=0))
        as client,
        ThreadPoolExecutor(len(schedule)) as pool,
    ):
        record(read_metrics(client, server))
        start = time.perf_counter()
        scraper.start()
        futures = []
        for at in schedule:
            time.sleep(max(0.0, start + at - time.perf_counter()))
            futures.append(pool.submit(timed))
        for future in futures:
            future.result()
        stop.set()
        scraper.join(timeout=60)
        record(read_metrics(client, server))
    assert len(spans) == len(schedule)
    sent, done = np.array(sorted(spans)).T
    times = np.arange(0.0, duration + SCRAPE_SECONDS / 2, SCRAPE_SECONDS)
    in_flight = np.array([np.count_nonzero((sent <= t) & (t < done)) for t in times], dtype=float)
    running = np.minimum(in_flight, server.max_num_seqs)
    return Observed(np.column_stack([times, running, in_flight - running]), sent, done, peak_waiting[0],
                    failed_scrapes[0], first_token, per_token)


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


def run_calibration(server: Any) -> tuple[bool, str]:
    """(whether vLLM kept its calibrated throughput, the run's report); asserts on a run that did."""
    before = calibrate(server)
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
    run = drive(server, schedule, duration)
    # The machine is shared: measure again after the run and use the mean of both calibrations.
    after = calibrate(server)
    service = {b: (before.service[b] + after.service[b]) / 2 for b in before.service}
    first_token = (before.first_token + after.first_token) / 2
    # Over capacity the batch is full from shortly after the phase starts to its end.
    full_batch_rate = server.max_num_seqs / service[server.max_num_seqs]
    served = np.count_nonzero((run.done >= 25.0) & (run.done < 40.0)) / 15.0
    held = served >= HELD_THROUGHPUT * full_batch_rate
    # The simulator gets this run's own pace: the service times scaled so that a full batch serves what
    # the over-capacity phase measured. On a shared machine the before/after calibration and the run
    # differ by tens of percent (a neighbour's job, the engine's core), and the queue the simulator
    # should follow is the one this run's pace built.
    pace = float(full_batch_rate / served) if served > 0 else 1.0
    service = {b: seconds * pace for b, seconds in service.items()}
    prefill = first_token * pace

    times = np.array([0.0, 20.0, 20.0, 40.0, 40.0, duration])
    rates = np.array([phases[0][1], phases[0][1], phases[1][1], phases[1][1], 0.0, 0.0])
    load = LoadProfile("calibration", times + np.array([0, 0, 1e-6, 0, 1e-6, 0]), rates)
    # The simulator's slots finish at most one request per step: the step must be well under the
    # fastest service time, which on a fast machine is below SCRAPE_SECONDS (0.17 s seen), and divide
    # SCRAPE_SECONDS so that every observed sample has its step.
    substeps = max(1, math.ceil(STEPS_PER_SERVICE * SCRAPE_SECONDS / min(service.values())))
    step_seconds = SCRAPE_SECONDS / substeps
    result = single_replica(service, server.max_num_seqs, load, tokens=MAX_TOKENS, prefill=prefill,
                            step_seconds=step_seconds)
    series = result.series
    assert series.ttft is not None and series.itl is not None

    index = np.minimum(np.rint(run.rows[:, 0] / step_seconds).astype(int), len(series.time) - 1)
    sim_running, sim_waiting = series.running[index], series.waiting[index]
    obs_running, obs_waiting = run.rows[:, 1], run.rows[:, 2]
    mae_running = float(np.mean(np.abs(sim_running - obs_running)))
    mae_waiting = float(np.mean(np.abs(sim_waiting - obs_waiting)))
    # Each request's simulated figures, read at its send time (the simulator keeps them by arrival step)
    with_ttft, with_itl = ~np.isnan(series.ttft), ~np.isnan(series.itl)
    sim_ttft = np.interp(run.sent, series.time[with_ttft], series.ttft[with_ttft])
    sim_itl = np.interp(run.sent, series.time[with_itl], series.itl[with_itl])
    mae_ttft, peak_ttft = group_error(run.first_token.groups(), sim_ttft)
    mae_itl, peak_itl = group_error(run.per_token.groups(), sim_itl)
    report = (
        f"service s by batch {service}, prefill {prefill:.4f} s; MAE running {mae_running:.2f} "
        f"(peak {obs_running.max():.0f}), waiting {mae_waiting:.2f} (peak {obs_waiting.max():.0f}; "
        f"vLLM's gauge {run.peak_gauge_waiting:.0f}, {run.failed_scrapes} scrapes failed) "
        f"over {len(run.rows)} samples; time to first token MAE {mae_ttft:.3f} s (peak {peak_ttft:.3f} s, "
        f"{len(run.first_token.groups())} groups), inter-token latency MAE {mae_itl * 1000:.2f} ms "
        f"(peak {peak_itl * 1000:.2f} ms, {len(run.per_token.groups())} groups); "
        f"simulated in steps of {step_seconds:.3f} s"
    )
    report += (f"; full-batch throughput {served:.2f} req/s against {full_batch_rate:.2f} calibrated "
               f"(service times scaled by {pace:.2f})")
    print(report)
    if not held:
        return False, report
    assert obs_waiting.max() >= 2, f"the over-capacity phase must build a real queue: {report}"
    assert run.peak_gauge_waiting >= 2, f"vLLM's own gauge must report that queue: {report}"
    assert run.first_token.observed == run.per_token.observed == len(schedule), (
        f"vLLM's histograms must count every request of the run once: {report}")
    assert mae_running <= MAE_BOUND * obs_running.max(), report
    assert mae_waiting <= MAE_BOUND * obs_waiting.max(), report
    assert mae_ttft <= MAE_BOUND * peak_ttft, report
    assert mae_itl <= MAE_BOUND * peak_itl, report
    return True, report
