"""Spot as a risk: capacity that may not be there at launch, and reclaims that come together.

- At launch, Karpenter asks EC2 for Spot capacity of a type (price-capacity-optimized); when the pool
  has none (an insufficient-capacity error) and the NodePool's capacity-type requirement allows
  on-demand, Karpenter launches on-demand instead, at the on-demand price (Karpenter docs, "Spot first,
  on-demand when Spot cannot be had": a NodePool with both values prefers Spot). A Spot-only NodePool
  gets nothing: the pods stay Pending and Karpenter retries.
- The chance that Spot is unavailable at launch is a profile figure per instance type
  (`spot_unavailable_at_launch`); no provider publishes it, so it is an assumption tied to the Spot
  Advisor's interruption bucket of the type (a pool reclaimed often is a pool often short).
- Reclaims are correlated: when EC2 reclaims one Spot node, the other Spot nodes of the same NodePool
  and instance type (one capacity pool) are reclaimed with it with the profile's
  `spot_correlated_reclaim_share` probability each, with the same 2-minute notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpotRisk:
    unavailable_at_launch: dict[str, float]  # instance type -> probability
    correlated_reclaim_share: float
    stress: bool = False  # spot-stress: every Spot launch request finds the pool short with STRESS_SHORTAGE
    stress_shortage: float = 0.5

    def shortage(self, instance: str) -> float:
        base = self.unavailable_at_launch.get(instance, 0.0)
        return max(base, self.stress_shortage) if self.stress else base


def launch_capacity(
    capacity_types: tuple[str, ...], instance: str, risk: SpotRisk | None, rng: np.random.Generator
) -> str | None:
    """The capacity type Karpenter gets for one launch, or None when it gets nothing."""
    if "spot" in capacity_types:
        if risk is None or rng.random() >= risk.shortage(instance):
            return "spot"
        return "on-demand" if "on-demand" in capacity_types else None
    return "on-demand" if "on-demand" in capacity_types or not capacity_types else capacity_types[0]


def reclaimed_with(risk: SpotRisk | None, candidates: int, rng: np.random.Generator) -> list[bool]:
    """Which of `candidates` other Spot nodes of the same pool and type go with one reclaim."""
    if risk is None or risk.correlated_reclaim_share <= 0:
        return [False] * candidates
    return [bool(rng.random() < risk.correlated_reclaim_share) for _ in range(candidates)]
