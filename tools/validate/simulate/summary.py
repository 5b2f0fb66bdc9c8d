"""Figures of merit for one simulation run, and the tables that print them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tools.validate.simulate.engine import SimResult

QUEUED = 0.5  # a queue "exists" once half a request (fluid) waits


@dataclass(frozen=True)
class Summary:
    name: str
    time_to_capacity: float | None  # from the first unmet demand to the next added ready replica, s
    wait_p50: float | None
    wait_p95: float | None
    wait_p99: float | None
    slo_minutes: int
    peak_ready: int
    peak_desired: int
    gpu_hours: float
    cost: float
    served: float
    rejected: float
    aborted: float
    still_queued: float
    notes: tuple[str, ...]


def time_to_capacity(result: SimResult) -> float | None:
    """From the first step with unmet demand (a queue, or requests finding no replica) to the first
    step with more ready replicas than then."""
    s = result.series
    queued = np.flatnonzero((s.waiting > QUEUED) | (s.rejected > 0))
    if not queued.size:
        return None
    first = int(queued[0])
    more = np.flatnonzero(s.ready_replicas[first:] > s.ready_replicas[first])
    if not more.size:
        return None
    return float(more[0]) * result.step_seconds


def _percentile(hist: np.ndarray, q: float) -> float | None:
    total = hist.sum()
    if total <= 0:
        return None
    cdf = np.cumsum(hist) / total
    return float(np.searchsorted(cdf, q - 1e-12))


def gpu_hours_and_cost(result: SimResult, minimum_billed: float = 60.0) -> tuple[float, float]:
    gpu_hours = cost = 0.0
    for node in result.nodes:
        end = min(node.gone_at, result.end_time)
        if node.launched >= result.end_time or end <= node.launched:
            continue
        seconds = end - node.launched
        gpu_hours += node.instance.gpus * seconds / 3600.0
        cost += node.instance.price(node.capacity_type) * max(seconds, minimum_billed) / 3600.0
    return gpu_hours, cost


def summarize(result: SimResult, minimum_billed: float = 60.0) -> Summary:
    s = result.series
    per_minute = max(1, round(60.0 / result.step_seconds))
    minutes = [s.max_wait[i : i + per_minute].max() for i in range(0, len(s.max_wait), per_minute)]
    gpu_hours, cost = gpu_hours_and_cost(result, minimum_billed)
    return Summary(
        name=result.name,
        time_to_capacity=time_to_capacity(result),
        wait_p50=_percentile(result.wait_histogram, 0.50),
        wait_p95=_percentile(result.wait_histogram, 0.95),
        wait_p99=_percentile(result.wait_histogram, 0.99),
        slo_minutes=sum(1 for m in minutes if m > result.slo_wait_seconds),
        peak_ready=int(s.ready_replicas.max(initial=0)),
        peak_desired=int(s.desired_replicas.max(initial=0)),
        gpu_hours=gpu_hours,
        cost=cost,
        served=result.served,
        rejected=result.rejected,
        aborted=result.aborted,
        still_queued=result.still_queued,
        notes=tuple(result.notes),
    )


def _seconds(value: float | None, never: str = "never") -> str:
    return never if value is None else f"{value:.0f} s"


def rows(summary: Summary, slo: float) -> list[tuple[str, str]]:
    return [
        (
            "time to capacity",
            _seconds(summary.time_to_capacity, "no queue" if summary.wait_p95 == 0 else "never"),
        ),
        (
            "queue wait p50 / p95 / p99",
            " / ".join(
                "-" if v is None else f"{v:.0f}"
                for v in (summary.wait_p50, summary.wait_p95, summary.wait_p99)
            )
            + " s",
        ),
        (f"minutes with a wait > {slo:g} s", str(summary.slo_minutes)),
        ("peak replicas ready / desired", f"{summary.peak_ready} / {summary.peak_desired}"),
        ("GPU-hours", f"{summary.gpu_hours:.2f}"),
        ("estimated cost", f"${summary.cost:.2f}"),
        (
            "requests served / rejected / aborted",
            f"{summary.served:.0f} / {summary.rejected:.0f} / {summary.aborted:.0f}",
        ),
    ]


def table(summaries: Sequence[Summary], slo: float) -> str:
    """A plain-text table: one column per run."""
    labels = [label for label, _ in rows(summaries[0], slo)]
    columns = [[value for _, value in rows(s, slo)] for s in summaries]
    header = ["", *(s.name for s in summaries)]
    body = [[label, *(col[i] for col in columns)] for i, label in enumerate(labels)]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[c]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(r))
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
