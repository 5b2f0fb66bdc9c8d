"""The HorizontalPodAutoscaler's replica calculation, as the Kubernetes documentation describes it.

Sources (kubernetes.io, "Horizontal Pod Autoscaling"):
- "Algorithm details": desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)];
  no scaling while the ratio is within the tolerance (0.1); for several metrics the largest proposal wins.
  For external metrics with an AverageValue target the proposal is ceil(metricTotal / target).
- "Stabilization window": the controller keeps its recent recommendations; scaling down uses the highest
  one within the scale-down window, scaling up the lowest one within the scale-up window.
- "Scaling policies": Pods/Percent changes per periodSeconds, counted against the replica count at the
  start of the period (the changes made within the period are subtracted); selectPolicy Max picks the
  policy allowing the largest change, Min the smallest, Disabled turns the direction off.
- "Default behavior": scale-up no window, max(+4 pods, +100 %) per 15 s; scale-down 300 s window,
  -100 % per 15 s. The controller syncs every 15 s (--horizontal-pod-autoscaler-sync-period).

The event accounting follows kube-controller-manager's `calculateScaleUpLimitWithScalingRules` and
`calculateScaleDownLimitWithBehaviors`: a proposal for Percent rounds up when scaling up and down
(truncates) when scaling down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.1
SYNC_PERIOD_SECONDS = 15.0
DEFAULT_SCALE_DOWN_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class ScalingPolicy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: str  # "Max" | "Min" | "Disabled"
    policies: tuple[ScalingPolicy, ...]


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Behavior:
        """`spec.behavior` of an autoscaling/v2 HPA, with the API server's defaults filled in."""
        spec = spec or {}
        return cls(
            scale_up=_rules(spec.get("scaleUp"), default_window=0, default_policies=DEFAULT_SCALE_UP),
            scale_down=_rules(
                spec.get("scaleDown"),
                default_window=DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
                default_policies=DEFAULT_SCALE_DOWN,
            ),
        )


DEFAULT_SCALE_UP = (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
DEFAULT_SCALE_DOWN = (ScalingPolicy("Percent", 100, 15),)


def _rules(
    spec: Mapping[str, Any] | None, default_window: int, default_policies: tuple[ScalingPolicy, ...]
) -> ScalingRules:
    spec = spec or {}
    policies = tuple(
        ScalingPolicy(str(p["type"]), int(p["value"]), int(p["periodSeconds"]))
        for p in spec.get("policies") or ()
    )
    window = spec.get("stabilizationWindowSeconds")
    return ScalingRules(
        stabilization_window_seconds=default_window if window is None else int(window),
        select_policy=str(spec.get("selectPolicy") or "Max"),
        policies=policies or default_policies,
    )


def within_tolerance(ratio: float) -> bool:
    return abs(1.0 - ratio) <= TOLERANCE


def replicas_for_value(current_replicas: int, metric: float, target: float) -> int:
    """Value or Utilization target: ceil(current x metric / target), unchanged within the tolerance."""
    ratio = metric / target
    if current_replicas == 0:
        return math.ceil(ratio)
    if within_tolerance(ratio):
        return current_replicas
    return math.ceil(ratio * current_replicas)


def replicas_for_average_value(current_replicas: int, metric_total: float, target_per_pod: float) -> int:
    """AverageValue target: ceil(metricTotal / target); unchanged while total/(targetxcurrent) is within
    the tolerance."""
    if current_replicas > 0 and within_tolerance(metric_total / (target_per_pod * current_replicas)):
        return current_replicas
    return math.ceil(metric_total / target_per_pod)


def replicas_for_utilization(
    current_replicas: int, ready_usages: Sequence[float], unready_pods: int, target_utilization: float
) -> int:
    """Resource Utilization (CPU) with the documentation's treatment of pods that are not ready yet:
    they are left out, and if the result would scale up they are counted at 0 % and the ratio is
    recomputed; if that reverses the direction or falls within the tolerance, nothing changes.
    `ready_usages` are utilisations in percent of the request."""
    if not ready_usages:
        return current_replicas
    ratio = sum(ready_usages) / (len(ready_usages) * target_utilization)
    if within_tolerance(ratio):
        return current_replicas
    if ratio > 1.0 and unready_pods:
        counted = len(ready_usages) + unready_pods
        new_ratio = sum(ready_usages) / (counted * target_utilization)
        if within_tolerance(new_ratio) or new_ratio < 1.0:
            return current_replicas
        return math.ceil(new_ratio * counted)
    return math.ceil(ratio * len(ready_usages))


@dataclass
class _Event:
    time: float
    change: int


@dataclass
class HorizontalPodAutoscaler:
    """The controller's state for one HPA: recommendations and scale events over time."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior = field(default_factory=lambda: Behavior.from_spec(None))
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _scale_up_events: list[_Event] = field(default_factory=list)
    _scale_down_events: list[_Event] = field(default_factory=list)

    def reconcile(self, now: float, current_replicas: int, metric_desired: int | None) -> int:
        """One sync: `metric_desired` is the largest per-metric proposal (None when no metric could be
        read, which leaves the scale alone). Returns the new replica count and records the event."""
        if current_replicas == 0 and self.min_replicas != 0:
            return 0  # "scaling is disabled" at 0 replicas; KEDA activates from zero
        if current_replicas > self.max_replicas:
            desired = self.max_replicas
        elif current_replicas < self.min_replicas:
            desired = self.min_replicas
        elif metric_desired is None:
            return current_replicas
        else:
            desired = self.normalize(now, current_replicas, metric_desired)
        self.record(now, current_replicas, desired)
        return desired

    def normalize(self, now: float, current_replicas: int, desired: int) -> int:
        stabilized = self.stabilize(now, current_replicas, desired)
        return self.limit_rate(now, current_replicas, stabilized)

    def stabilize(self, now: float, current_replicas: int, desired: int) -> int:
        up_cutoff = now - self.behavior.scale_up.stabilization_window_seconds
        down_cutoff = now - self.behavior.scale_down.stabilization_window_seconds
        up_recommendation = desired
        down_recommendation = desired
        for timestamp, recommendation in self._recommendations:
            if timestamp > up_cutoff:
                up_recommendation = min(up_recommendation, recommendation)
            if timestamp > down_cutoff:
                down_recommendation = max(down_recommendation, recommendation)
        keep_after = min(up_cutoff, down_cutoff)
        self._recommendations = [(ts, r) for ts, r in self._recommendations if ts > keep_after]
        self._recommendations.append((now, desired))
        recommendation = max(current_replicas, up_recommendation)
        return min(recommendation, down_recommendation)

    def limit_rate(self, now: float, current_replicas: int, desired: int) -> int:
        if desired > current_replicas:
            limit = max(self._scale_up_limit(now, current_replicas), current_replicas)
            return min(desired, self.max_replicas, limit)
        if desired < current_replicas:
            limit = min(self._scale_down_limit(now, current_replicas), current_replicas)
            return max(desired, self.min_replicas, limit)
        return desired

    def _changes_within(self, events: list[_Event], now: float, period: int) -> int:
        return sum(e.change for e in events if e.time > now - period)

    def _period_start(self, now: float, current_replicas: int, period: int) -> int:
        added = self._changes_within(self._scale_up_events, now, period)
        deleted = self._changes_within(self._scale_down_events, now, period)
        return current_replicas - added + deleted

    def _scale_up_limit(self, now: float, current_replicas: int) -> int:
        rules = self.behavior.scale_up
        if rules.select_policy == "Disabled":
            return current_replicas
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current_replicas, policy.period_seconds)
            if policy.type == "Pods":
                proposals.append(start + policy.value)
            else:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return min(proposals) if rules.select_policy == "Min" else max(proposals)

    def _scale_down_limit(self, now: float, current_replicas: int) -> int:
        rules = self.behavior.scale_down
        if rules.select_policy == "Disabled":
            return current_replicas
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current_replicas, policy.period_seconds)
            if policy.type == "Pods":
                proposals.append(start - policy.value)
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        return max(proposals) if rules.select_policy == "Min" else min(proposals)

    def record(self, now: float, previous: int, new: int) -> None:
        longest = max(
            (
                p.period_seconds
                for p in (*self.behavior.scale_up.policies, *self.behavior.scale_down.policies)
            ),
            default=0,
        )
        self._scale_up_events = [e for e in self._scale_up_events if e.time > now - longest]
        self._scale_down_events = [e for e in self._scale_down_events if e.time > now - longest]
        if new > previous:
            self._scale_up_events.append(_Event(now, new - previous))
        elif new < previous:
            self._scale_down_events.append(_Event(now, previous - new))
