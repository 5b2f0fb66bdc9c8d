"""What a user feels: time to first token, inter-token latency and end-to-end latency per request, and
the share of requests within the environment's objectives.

A request's life in one pod is a prefill then a decode: its first token comes `prefill` after it is
admitted to the running batch; then every output token costs the batch's time per output token,
`batch / tokens_per_second(batch)`. The profile measures the throughput table up to batch 32; past its
last point the time per output token is extended linearly in the batch (decode is bound by reading the
weights once per step plus every running sequence's KV cache, which grows linearly with the batch), up
to what the KV cache holds (tools/validate/simulate/kvcache.py).

Requests that never get an answer count against the objectives: rejected (no replica, or the gateway's
429), held longer than the gateway's hold timeout, and timed out (no first token within the gateway's
first-token timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LATENCY_BIN_SECONDS = 0.1
LATENCY_MAX_SECONDS = 1800.0
ITL_BIN_SECONDS = 0.001
ITL_MAX_SECONDS = 2.0


def extended_throughput(table: Mapping[int, float], up_to: float) -> dict[int, float]:
    """The tokens/s table extended past its largest batch: the time per output token (batch / tok/s)
    grows by the slope of the table's last two points, a straight line in the batch."""
    batches = sorted(table)
    out = {int(b): float(table[b]) for b in batches}
    if len(batches) < 2 or up_to <= batches[-1]:
        return out
    b1, b2 = batches[-2], batches[-1]
    tpot1, tpot2 = b1 / table[b1], b2 / table[b2]
    slope = max((tpot2 - tpot1) / (b2 - b1), 0.0)
    b = b2
    while b < up_to:
        b = min(b * 2, int(np.ceil(up_to)))
        out[b] = b / (tpot2 + slope * (b - b2))
    return out


@dataclass(frozen=True)
class SloObjectives:
    """An environment's latency objectives (gate.yaml `environments.<env>.slo`)."""

    ttft_seconds: float = 2.0
    e2e_seconds: float = 30.0

    @classmethod
    def from_config(cls, doc: Mapping[str, Any] | None) -> SloObjectives:
        """From gate.yaml's `environments.<env>.slo` (already checked by the config's schema)."""
        if not doc:
            return cls()
        return cls(float(doc.get("ttft_seconds", 2.0)), float(doc.get("e2e_seconds", 30.0)))


class LatencyRecorder:
    """Histograms of requests (fluid counts) by TTFT, end-to-end latency and mean inter-token latency.

    TTFT and end-to-end latency are binned jointly, so that the share of requests within *both*
    objectives is exact to a bin."""

    def __init__(self) -> None:
        self.bins = int(LATENCY_MAX_SECONDS / LATENCY_BIN_SECONDS) + 1
        self.ttft = [0.0] * self.bins
        self.e2e = [0.0] * self.bins
        self.itl = [0.0] * (int(ITL_MAX_SECONDS / ITL_BIN_SECONDS) + 1)
        # requests within each (ttft, e2e) objective pair are counted at record time
        self.within: dict[tuple[float, float], float] = {}
        self.objectives: tuple[tuple[float, float], ...] = ()
        self.timed_out = 0.0
        self.first_token_timeout = float("inf")

    def watch(self, objectives: SloObjectives, first_token_timeout: float) -> None:
        self.objectives = ((objectives.ttft_seconds, objectives.e2e_seconds),)
        self.within = {self.objectives[0]: 0.0}
        self.first_token_timeout = first_token_timeout

    def record(self, count: float, ttft: float, e2e: float, itl: float, held: float = 0.0) -> None:
        """`held`: seconds of `ttft` spent in the gateway's hold, before the upstream timeout starts."""
        if ttft - held > self.first_token_timeout:
            self.timed_out += count
            return
        last = self.bins - 1
        i = int(ttft / LATENCY_BIN_SECONDS)
        self.ttft[i if i < last else last] += count
        j = int(e2e / LATENCY_BIN_SECONDS)
        self.e2e[j if j < last else last] += count
        k = int(itl / ITL_BIN_SECONDS)
        self.itl[k if k < len(self.itl) - 1 else len(self.itl) - 1] += count
        for pair in self.objectives:
            if ttft <= pair[0] and e2e <= pair[1]:
                self.within[pair] += count

    @property
    def answered(self) -> float:
        return float(sum(self.e2e))


def percentile(hist: list[float] | np.ndarray, width: float, q: float) -> float | None:
    """The q-quantile of a histogram with bins of `width`, at the bin's upper edge."""
    values = np.asarray(hist, float)
    total = values.sum()
    if total <= 0:
        return None
    cdf = np.cumsum(values) / total
    return (float(np.searchsorted(cdf, q - 1e-12)) + 1.0) * width


@dataclass(frozen=True)
class LatencySummary:
    ttft: tuple[float | None, float | None, float | None]  # p50, p95, p99
    itl: tuple[float | None, float | None, float | None]
    e2e: tuple[float | None, float | None, float | None]
    slo_attainment: float | None  # share of all requests within both objectives; failures count against
    answered: float
    timed_out: float


def summarize_latency(recorder: LatencyRecorder, failures: float) -> LatencySummary:
    """`failures`: requests that never reached a replica (rejected, held too long)."""
    qs = (0.50, 0.95, 0.99)

    def three(hist: list[float], width: float) -> tuple[float | None, float | None, float | None]:
        a, b, c = (percentile(hist, width, q) for q in qs)
        return a, b, c

    total = recorder.answered + recorder.timed_out + failures
    within = sum(recorder.within.values())
    return LatencySummary(
        ttft=three(recorder.ttft, LATENCY_BIN_SECONDS),
        itl=three(recorder.itl, ITL_BIN_SECONDS),
        e2e=three(recorder.e2e, LATENCY_BIN_SECONDS),
        slo_attainment=within / total if total > 0 else None,
        answered=recorder.answered,
        timed_out=recorder.timed_out,
    )
