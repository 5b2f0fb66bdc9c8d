"""The scenarios `gate diff` runs for each side of a change, and what each run comes to for a reviewer.

- `spike`: the reference's audience spike (load.spike), Spot as usual.
- `day`: a 24-hour day (load.diurnal) at one-second steps: what a setting costs while nothing happens.
- `spot-stress`: the spike while Spot is short (every Spot launch finds the pool short with the
  profile's `spot_risk.stress_shortage`) and, at the height of the spike, EC2 reclaims every Spot node
  serving a replica at once (2-minute notice).
Each runs over several seeds with random Spot interruptions on; a side reports the median and the worst.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from tools.validate.simulate.engine import SECONDS_PER_MONTH, SimOptions, SimResult, simulate
from tools.validate.simulate.hardware import HardwareProfile
from tools.validate.simulate.load import LoadProfile, diurnal, spike
from tools.validate.simulate.manifests import Cluster
from tools.validate.simulate.serving import ServingModel
from tools.validate.simulate.spot import SpotRisk
from tools.validate.simulate.summary import gpu_hours_and_cost

SPOT_STRESS_RECLAIM_SECONDS = 360.0  # five minutes into the spike's plateau (it starts at 61 s)
DEFAULT_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    load: Callable[[], LoadProfile]
    stress: bool = False
    reclaim_at: tuple[float, ...] = ()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("spike", "the audience spike: 0.5 → 20 req/s for 10 min", spike),
    Scenario("day", "a 24-hour day: 0.5 req/s at night, 25 req/s at 14:00", diurnal),
    Scenario(
        "spot-stress",
        "the spike while Spot is short, every Spot node reclaimed together at 6 min",
        spike,
        stress=True,
        reclaim_at=(SPOT_STRESS_RECLAIM_SECONDS,),
    ),
)


def spot_risk(hardware: HardwareProfile, stress: bool) -> SpotRisk:
    return SpotRisk(
        {i.name: i.spot_unavailable_at_launch for i in hardware.instance_types},
        hardware.figures.get("spot_risk.correlated_reclaim_share", 0.0),
        stress=stress,
        stress_shortage=hardware.figures.get("spot_risk.stress_shortage", 0.0),
    )


@dataclass(frozen=True)
class Outcome:
    """One run, in the units the comment prints."""

    slo_attainment: float  # share of all requests within both objectives, 0..1
    ttft_p95: float
    e2e_p95: float
    itl_p95: float
    rejected: float  # 429 / 503 at once
    held: float  # entered the gateway's hold
    failed: float  # rejected + held too long + timed out + aborted by a deleted pod
    peak_replicas: float
    peak_nodes: float
    peak_on_demand_nodes: float
    scale_events: float
    gpu_hours: float
    cost: float
    cost_per_month: float
    interruptions: float
    requests: float
    ttft_p50: float = 0.0
    ttft_p99: float = 0.0
    e2e_p50: float = 0.0
    e2e_p99: float = 0.0
    itl_p50: float = 0.0
    itl_p99: float = 0.0


# Which way is worse, per field: the worst of several seeds is the max (or the min where higher is better).
HIGHER_IS_BETTER = frozenset({"slo_attainment"})


def _p(triple: tuple[float | None, float | None, float | None], index: int) -> float:
    value = triple[index]
    return value if value is not None else 0.0


def outcome(result: SimResult, minimum_billed: float) -> Outcome:
    s = result.series
    gpu_hours, cost = gpu_hours_and_cost(result, minimum_billed)
    latency = result.latency
    desired = s.desired_replicas
    events = float(np.count_nonzero(np.diff(desired))) if len(desired) > 1 else 0.0
    on_demand = s.ready_gpu_nodes - (s.spot_nodes if s.spot_nodes is not None else 0.0)
    failed = result.rejected + result.held_too_long + result.aborted + (latency.timed_out if latency else 0.0)
    requests = float(s.arrivals.sum() * result.step_seconds)
    return Outcome(
        slo_attainment=latency.slo_attainment if latency and latency.slo_attainment is not None else 0.0,
        ttft_p95=_p(latency.ttft, 1) if latency else 0.0,
        e2e_p95=_p(latency.e2e, 1) if latency else 0.0,
        itl_p95=_p(latency.itl, 1) if latency else 0.0,
        rejected=result.rejected,
        held=result.held,
        failed=failed,
        peak_replicas=float(s.ready_replicas.max(initial=0)),
        peak_nodes=float(s.ready_gpu_nodes.max(initial=0)),
        peak_on_demand_nodes=float(on_demand.max(initial=0)),
        scale_events=events,
        gpu_hours=gpu_hours,
        cost=cost,
        cost_per_month=cost * SECONDS_PER_MONTH / max(result.end_time, 1.0),
        interruptions=float(result.interruptions),
        requests=requests,
        ttft_p50=_p(latency.ttft, 0) if latency else 0.0,
        ttft_p99=_p(latency.ttft, 2) if latency else 0.0,
        e2e_p50=_p(latency.e2e, 0) if latency else 0.0,
        e2e_p99=_p(latency.e2e, 2) if latency else 0.0,
        itl_p50=_p(latency.itl, 0) if latency else 0.0,
        itl_p99=_p(latency.itl, 2) if latency else 0.0,
    )


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    median: Outcome
    worst: Outcome
    runs: tuple[Outcome, ...]
    notes: tuple[str, ...]
    last: SimResult  # the first seed's run, for the plot


def aggregate(runs: Sequence[Outcome]) -> tuple[Outcome, Outcome]:
    median: dict[str, float] = {}
    worst: dict[str, float] = {}
    for f in fields(Outcome):
        values = [getattr(r, f.name) for r in runs]
        median[f.name] = float(statistics.median(values))
        worst[f.name] = float(min(values) if f.name in HIGHER_IS_BETTER else max(values))
    return Outcome(**median), Outcome(**worst)


def run_scenario(
    cluster: Cluster,
    hardware: HardwareProfile,
    scenario: Scenario,
    serving: ServingModel,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    step_seconds: float = 1.0,
) -> ScenarioResult:
    load = scenario.load()
    model = replace(serving, spot=spot_risk(hardware, scenario.stress), reclaim_pool_at=scenario.reclaim_at)
    minimum = hardware.timing("node_minimum_billed_seconds")
    results = [
        simulate(cluster, hardware, load, SimOptions(step_seconds=step_seconds, seed=seed, serving=model))
        for seed in seeds
    ]
    runs = tuple(outcome(r, minimum) for r in results)
    median, worst = aggregate(runs)
    notes = tuple(dict.fromkeys(n for r in results for n in r.notes if "Spot interruption(s)" not in n))
    return ScenarioResult(scenario, median, worst, runs, notes, results[0])
