"""The numbers a reviewer decides on: one table per scenario (before, after, change) and one verdict
line per environment saying what got better and what got worse.

A change counts when it is larger than the model can resolve: half a percentage point of SLO
attainment, a tenth (and at least 0.3 s) of a latency percentile, half a percent of the scenario's
requests (and at least 5) failing, 2 % of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.validate.diff.findings import GateFindings
from tools.validate.simulate.latency import SloObjectives
from tools.validate.simulate.scenarios import Outcome, ScenarioResult


@dataclass(frozen=True)
class ScenarioPair:
    name: str
    description: str
    before: ScenarioResult | None
    after: ScenarioResult | None


def _pct(v: float) -> str:
    return f"{v * 100:.1f} %"


def _s(v: float) -> str:
    return f"{v:.1f} s"


def _ms(v: float) -> str:
    return f"{v * 1000:.0f} ms"


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _usd(v: float) -> str:
    return f"${v:,.2f}" if v < 1000 else f"${v:,.0f}"


@dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[Outcome], float]
    text: Callable[[float], str]
    percent_points: bool = False


def rows(objectives: SloObjectives) -> list[Row]:
    return [
        Row(
            f"SLO attainment (TTFT ≤ {objectives.ttft_seconds:g} s and end to end ≤ "
            f"{objectives.e2e_seconds:g} s)",
            lambda o: o.slo_attainment, _pct, percent_points=True,
        ),
        Row("time to first token p95", lambda o: o.ttft_p95, _s),
        Row("end-to-end latency p95", lambda o: o.e2e_p95, _s),
        Row("inter-token latency p95", lambda o: o.itl_p95, _ms),
        Row("rejected (429 / 503 at once)", lambda o: o.rejected, _n),
        Row("held by the gateway (cold start)", lambda o: o.held, _n),
        Row("failed (rejected, held too long, timed out, aborted)", lambda o: o.failed, _n),
        Row("peak replicas", lambda o: o.peak_replicas, _n),
        Row("peak GPU nodes", lambda o: o.peak_nodes, _n),
        Row("of which on-demand (peak)", lambda o: o.peak_on_demand_nodes, _n),
        Row("scale events", lambda o: o.scale_events, _n),
        Row("Spot interruptions", lambda o: o.interruptions, _n),
        Row("GPU-hours", lambda o: o.gpu_hours, lambda v: f"{v:.2f}"),
        Row("cost", lambda o: o.cost, _usd),
        Row("cost per month at this load", lambda o: o.cost_per_month, _usd),
    ]


def _cell(row: Row, result: ScenarioResult | None) -> str:
    if result is None:
        return "-"
    median, worst = row.value(result.median), row.value(result.worst)
    text = row.text(median)
    return text if row.text(worst) == text else f"{text} ({row.text(worst)})"


def _change(row: Row, before: ScenarioResult | None, after: ScenarioResult | None) -> str:
    if before is None or after is None:
        return ""
    old, new = row.value(before.median), row.value(after.median)
    if row.percent_points:
        delta = (new - old) * 100
        return "0" if abs(delta) < 0.05 else f"{delta:+.1f} pp"
    if old == new or row.text(old) == row.text(new):
        return "0"
    if old == 0:
        return "new"
    return f"{(new - old) / abs(old) * 100:+.0f} %"


PERCENTILES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("time to first token", "ttft", _s),
    ("inter-token latency", "itl", _ms),
    ("end-to-end latency", "e2e", _s),
)


def _percentiles(result: ScenarioResult | None, key: str, text: Callable[[float], str]) -> str:
    if result is None:
        return "-"
    return " / ".join(text(getattr(result.median, f"{key}_{p}")) for p in ("p50", "p95", "p99"))


def scenario_table(pair: ScenarioPair, objectives: SloObjectives) -> list[str]:
    lines = [f"**{pair.name}**: {pair.description}", "", "| | before | after | change |",
             "| --- | ---: | ---: | ---: |"]
    for row in rows(objectives):
        lines.append(
            f"| {row.label} | {_cell(row, pair.before)} | {_cell(row, pair.after)} | "
            f"{_change(row, pair.before, pair.after)} |"
        )
    lines += ["", "<details><summary>latency p50 / p95 / p99 (median of the seeds)</summary>", "",
              "| | before | after |", "| --- | ---: | ---: |"]
    for label, key, text in PERCENTILES:
        before, after = _percentiles(pair.before, key, text), _percentiles(pair.after, key, text)
        lines.append(f"| {label} | {before} | {after} |")
    lines += ["", "</details>"]
    return lines


@dataclass(frozen=True)
class Judged:
    metric: str
    scenario: str
    worse: bool
    size: float  # for picking the scenario with the largest change
    text: str


def _judge(pair: ScenarioPair) -> list[Judged]:
    if pair.before is None or pair.after is None:
        return []
    b, a = pair.before.median, pair.after.median
    out: list[Judged] = []
    slo = (a.slo_attainment - b.slo_attainment) * 100
    if abs(slo) >= 0.5:
        out.append(Judged("SLO attainment", pair.name, slo < 0, abs(slo), f"SLO attainment {slo:+.1f} pp"))
    for metric, old, new in (("TTFT p95", b.ttft_p95, a.ttft_p95), ("end-to-end p95", b.e2e_p95, a.e2e_p95)):
        delta = new - old
        if abs(delta) >= 0.3 and abs(delta) >= 0.1 * max(old, 1e-9):
            out.append(Judged(metric, pair.name, delta > 0, abs(delta) / max(old, 0.1),
                              f"{metric} {old:.1f} → {new:.1f} s"))
    failed = a.failed - b.failed
    if abs(failed) >= max(5.0, 0.005 * max(a.requests, 1.0)):
        out.append(Judged("failed requests", pair.name, failed > 0, abs(failed) / max(a.requests, 1.0),
                          f"failed requests {b.failed:,.0f} → {a.failed:,.0f}"))
    if b.cost_per_month > 0:
        cost = (a.cost_per_month - b.cost_per_month) / b.cost_per_month
        if abs(cost) >= 0.02:
            # The day is what a month looks like: its cost change is the one to quote.
            size = abs(cost) + (1.0 if pair.name == "day" else 0.0)
            monthly = _usd(abs(a.cost_per_month - b.cost_per_month))
            sign = "+" if cost > 0 else "-"
            out.append(Judged("cost", pair.name, cost > 0, size,
                              f"cost {cost * 100:+.0f} % ({sign}{monthly}/month at this load)"))
    # Spot as a risk: the worst seed of the stress scenario, when it moves more than the median.
    worst = (pair.after.worst.slo_attainment - pair.before.worst.slo_attainment) * 100
    if pair.name == "spot-stress" and abs(worst) >= 1.0 and abs(worst) > abs(slo) + 0.5:
        out.append(Judged("worst-seed SLO", pair.name, worst < 0, abs(worst),
                          f"worst-seed SLO attainment {worst:+.1f} pp"))
    return out


VERDICT_ITEMS = 3  # per side: the line stays short, the tables hold the rest


def _top(items: list[Judged]) -> list[str]:
    order = {"SLO attainment": 0, "worst-seed SLO": 1, "failed requests": 2, "cost": 3}
    ranked = sorted(items, key=lambda j: (order.get(j.metric, 4), -j.size))
    return [f"{j.text} ({j.scenario})" for j in ranked[:VERDICT_ITEMS]]


def verdict(env: str, pairs: Sequence[ScenarioPair], findings: GateFindings | None) -> str:
    judged = [j for pair in pairs for j in _judge(pair)]
    best: dict[tuple[str, bool], Judged] = {}
    for j in judged:
        key = (j.metric, j.worse)
        if key not in best or j.size > best[key].size:
            best[key] = j
    # SLO attainment speaks for the latencies behind it; the rest only when it has not moved.
    worse = _top([j for (_, w), j in best.items() if w])
    better = _top([j for (_, w), j in best.items() if not w])
    parts = []
    if findings is not None:
        if findings.error:
            parts.append("the gate could not run on the head revision")
        elif findings.failing:
            failing = findings.failing
            parts.append(f"**the gate fails the head revision** ({failing} finding(s), listed below)")
    if worse:
        parts.append("worse: " + "; ".join(worse))
    if better:
        parts.append("better: " + "; ".join(better))
    if not worse and not better and pairs:
        parts.append("no measurable change to latency, failures or cost")
    return " — ".join(parts) if parts else "configuration change only (nothing simulated)"
