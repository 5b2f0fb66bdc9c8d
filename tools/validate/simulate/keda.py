"""KEDA's part of scaling: triggers, scalingModifiers, activation, cooldown and fallback.

Sources (keda.sh docs, "ScaledObject specification" and "Scaling Deployments"):
- pollingInterval: how often KEDA checks each trigger; it decides 0 -> 1 activation (and 1 -> 0); the
  1 <-> N range is the HPA's, at its own sync period, reading KEDA's metrics server.
- cooldownPeriod: after the last time a trigger was active, wait this long before scaling to 0; it only
  applies to scaling to 0 (minReplicaCount 0).
- "Activating and Scaling thresholds": a trigger is active when its metric exceeds its activation
  threshold (default 0); for scalingModifiers, when the formula's result exceeds `activationTarget`.
- advanced.scalingModifiers: the formula combines named triggers into one metric, which becomes the
  HPA's only metric, with `target` and `metricType` (AverageValue by default).
- fallback: after `failureThreshold` consecutive failures of a scaler, KEDA serves the HPA the
  metric `fallback.replicas x target` instead of an error (AverageValue metrics only), so the HPA heads
  for `fallback.replicas`; the formula is not applied while fallback is active.
- minReplicaCount/maxReplicaCount default 0/100; pollingInterval 30 s; cooldownPeriod 300 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import simpleeval

from tools.validate.keda import QueryError, formula_names
from tools.validate.simulate.hpa import (
    Behavior,
    HorizontalPodAutoscaler,
    replicas_for_average_value,
    replicas_for_utilization,
    replicas_for_value,
)

# What a trigger can read in the simulation: vLLM's gauges, the gateway's request rate and in-flight
# gauge (gateway/metrics.py), or pod CPU.
# `unserved`: the rate of the gateway's gateway_upstream_unavailable_total (requests that found no ready
# vLLM pod, plus one per second each stays held), the one signal that exists at zero replicas.
SIGNALS = ("running", "waiting", "arrivals", "in_flight", "unserved", "cpu")
TARGET_KEYS = ("targetValue", "threshold", "value", "targetQueryValue")
ACTIVATION_KEYS = ("activationTargetValue", "activationThreshold", "activationValue")
FORMULA_FUNCTIONS = {"min": min, "max": max, "abs": abs, "float": float, "int": int}


class ScalingConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Trigger:
    name: str
    type: str
    signal: str  # one of SIGNALS: what the simulator feeds it
    target: float
    activation: float = 0.0
    metric_type: str = "AverageValue"  # AverageValue | Value | Utilization
    query: str = ""


@dataclass(frozen=True)
class Modifiers:
    formula: str
    target: float
    activation_target: float = 0.0
    metric_type: str = "AverageValue"


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int
    behavior: str = "static"


@dataclass(frozen=True)
class KedaScaling:
    name: str
    min_replicas: int
    max_replicas: int
    polling_interval: float
    cooldown_period: float
    initial_cooldown_period: float
    triggers: tuple[Trigger, ...]
    behavior: Behavior
    modifiers: Modifiers | None = None
    fallback: Fallback | None = None

    def with_triggers(self, triggers: tuple[Trigger, ...], modifiers: Modifiers | None) -> KedaScaling:
        return replace(self, triggers=triggers, modifiers=modifiers)


def signal_of(trigger_type: str, query: str) -> str:
    if trigger_type == "cpu":
        return "cpu"
    if "num_requests_running" in query:
        return "running"
    if "num_requests_waiting" in query:
        return "waiting"
    if "gateway_upstream_unavailable" in query:
        return "unserved"  # a rate() of the gateway's refused-for-want-of-upstream counter
    if "gateway_in_flight_requests" in query:
        return "in_flight"
    if "gateway_requests" in query:
        return "arrivals"  # a rate() of the gateway's request counter
    raise ScalingConfigError(
        f"trigger of type {trigger_type!r} with query {query!r}: the simulator models vLLM's "
        "num_requests_running / num_requests_waiting, the gateway's gateway_requests and "
        "gateway_upstream_unavailable_total rates and gateway_in_flight_requests, and CPU"
    )


class Formula:
    """The scalingModifiers formula (expr-lang in KEDA) for its arithmetic subset: + - * / %, parentheses,
    comparisons and min/max/abs. Parsed once, evaluated at every poll."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._evaluator = simpleeval.SimpleEval(functions=dict(FORMULA_FUNCTIONS))
        try:
            self._parsed = self._evaluator.parse(text)
        except SyntaxError as exc:
            raise ScalingConfigError(f"scalingModifiers.formula {text!r}: cannot parse ({exc.msg})") from None

    def __call__(self, values: Mapping[str, float]) -> float:
        self._evaluator.names = dict(values)
        try:
            return float(self._evaluator.eval(self.text, previously_parsed=self._parsed))
        except (simpleeval.InvalidExpression, ZeroDivisionError, TypeError) as exc:
            raise ScalingConfigError(
                f"scalingModifiers.formula {self.text!r}: cannot evaluate ({exc})"
            ) from None


def evaluate_formula(formula: str, values: Mapping[str, float]) -> float:
    return Formula(formula)(values)


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ScalingConfigError(f"{where}: not a number ({value!r})") from None


def parse_scaled_object(doc: Mapping[str, Any]) -> KedaScaling:
    spec = doc.get("spec") or {}
    name = str((doc.get("metadata") or {}).get("name", ""))
    triggers = []
    for i, trig in enumerate(spec.get("triggers") or ()):
        meta = trig.get("metadata") or {}
        where = f"ScaledObject {name} spec.triggers[{i}]"
        ttype = str(trig.get("type", ""))
        query = str(meta.get("metricQuery") or meta.get("query") or "")
        target_key = next((k for k in TARGET_KEYS if k in meta), None)
        if target_key is None:
            raise ScalingConfigError(f"{where}: no target ({', '.join(TARGET_KEYS)})")
        activation_key = next((k for k in ACTIVATION_KEYS if k in meta), None)
        metric_type = str(trig.get("metricType") or ("Utilization" if ttype == "cpu" else "AverageValue"))
        triggers.append(
            Trigger(
                name=str(trig.get("name") or f"trigger{i}"),
                type=ttype,
                signal=signal_of(ttype, query),
                target=_number(meta[target_key], f"{where}.metadata.{target_key}"),
                activation=_number(meta[activation_key], f"{where}.metadata.{activation_key}")
                if activation_key
                else 0.0,
                metric_type=metric_type,
                query=query,
            )
        )
    if not triggers:
        raise ScalingConfigError(f"ScaledObject {name}: no triggers")
    advanced = spec.get("advanced") or {}
    mods_doc = advanced.get("scalingModifiers")
    modifiers = None
    if mods_doc:
        formula = str(mods_doc.get("formula", ""))
        try:
            names = set(formula_names(formula))  # the subset the rules accept (scaling/formula-valid)
        except QueryError as exc:
            raise ScalingConfigError(f"ScaledObject {name}: scalingModifiers.{exc}") from None
        unknown = names - {t.name for t in triggers}
        if unknown:
            raise ScalingConfigError(
                f"ScaledObject {name}: formula names {', '.join(sorted(unknown))}, which no trigger is named"
            )
        modifiers = Modifiers(
            formula=formula,
            target=_number(mods_doc.get("target"), f"ScaledObject {name} scalingModifiers.target"),
            activation_target=_number(
                mods_doc.get("activationTarget", 0), "scalingModifiers.activationTarget"
            ),
            metric_type=str(mods_doc.get("metricType") or "AverageValue"),
        )
        evaluate_formula(formula, {t.name: 1.0 for t in triggers})
    fb = spec.get("fallback")
    fallback = (
        Fallback(int(fb["failureThreshold"]), int(fb["replicas"]), str(fb.get("behavior") or "static"))
        if fb
        else None
    )
    hpa_config = advanced.get("horizontalPodAutoscalerConfig") or {}
    return KedaScaling(
        name=name,
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        polling_interval=float(spec.get("pollingInterval", 30)),
        cooldown_period=float(spec.get("cooldownPeriod", 300)),
        initial_cooldown_period=float(spec.get("initialCooldownPeriod", 0)),
        triggers=tuple(triggers),
        behavior=Behavior.from_spec(hpa_config.get("behavior")),
        modifiers=modifiers,
        fallback=fallback,
    )


@dataclass(frozen=True)
class Observation:
    """What the scalers can read at one moment: queue totals and per-pod CPU utilisation."""

    running: float
    waiting: float
    cpu_utilizations: tuple[float, ...] = ()  # ready pods, % of request
    unready_pods: int = 0
    arrivals: float = 0.0  # requests/s reaching the gateway
    unserved: float = 0.0  # requests/s the gateway refuses: no vLLM pod ready

    def value(self, signal: str) -> float:
        if signal == "running":
            return self.running
        if signal == "waiting":
            return self.waiting
        if signal == "in_flight":
            return self.running + self.waiting
        if signal == "unserved":
            return self.unserved
        return self.arrivals


@dataclass
class KedaController:
    """KEDA's operator loop plus the HPA it owns for one ScaledObject."""

    scaling: KedaScaling
    hpa: HorizontalPodAutoscaler = field(init=False)
    formula: Formula | None = field(init=False)
    last_active: float = field(default=float("-inf"))
    failures: int = 0
    created_at: float = 0.0

    def __post_init__(self) -> None:
        # KEDA creates the HPA with minReplicas max(minReplicaCount, 1): 0 is KEDA's own business.
        self.hpa = HorizontalPodAutoscaler(
            max(self.scaling.min_replicas, 1), self.scaling.max_replicas, self.scaling.behavior
        )
        self.formula = Formula(self.scaling.modifiers.formula) if self.scaling.modifiers else None

    @property
    def fallback_active(self) -> bool:
        fb = self.scaling.fallback
        return fb is not None and self.failures >= fb.failure_threshold

    def is_active(self, obs: Observation) -> bool:
        if any(t.signal == "cpu" for t in self.scaling.triggers):
            return True  # CPU and memory scalers cannot scale to zero
        mods = self.scaling.modifiers
        if mods is not None:
            assert self.formula is not None
            values = {t.name: obs.value(t.signal) for t in self.scaling.triggers}
            return self.formula(values) > mods.activation_target
        return any(obs.value(t.signal) > t.activation for t in self.scaling.triggers)

    def poll(self, now: float, current: int, obs: Observation | None) -> int:
        """One pollingInterval tick; `obs` None means the metric source failed. Returns the replicas."""
        if obs is None:
            self.failures += 1
            return current
        self.failures = 0
        if self.is_active(obs):
            self.last_active = now
            if current == 0:
                return max(self.scaling.min_replicas, 1)
        elif (
            current > 0
            and self.scaling.min_replicas == 0
            and now - max(self.last_active, self.created_at) >= self.scaling.cooldown_period
            and now - self.created_at >= self.scaling.initial_cooldown_period
        ):
            return 0
        return max(current, self.scaling.min_replicas) if current > 0 else current

    def metric_desired(self, spec_replicas: int, status_replicas: int, obs: Observation | None) -> int | None:
        """The largest proposal over the HPA's metrics, as KEDA's metrics server serves them."""
        if obs is None and not self.fallback_active:
            return None
        if obs is None or self.fallback_active:
            fb = self.scaling.fallback
            assert fb is not None
            replicas = fb.replicas
            if fb.behavior == "currentReplicas":
                replicas = spec_replicas
            elif fb.behavior == "currentReplicasIfHigher":
                replicas = max(spec_replicas, fb.replicas)
            elif fb.behavior == "currentReplicasIfLower":
                replicas = min(spec_replicas, fb.replicas)
            return replicas_for_average_value(status_replicas, float(replicas), 1.0)
        mods = self.scaling.modifiers
        if mods is not None:
            assert self.formula is not None
            values = {t.name: obs.value(t.signal) for t in self.scaling.triggers}
            metric = self.formula(values)
            if mods.metric_type == "Value":
                return replicas_for_value(spec_replicas, metric, mods.target)
            return replicas_for_average_value(status_replicas, metric, mods.target)
        proposals = []
        for trig in self.scaling.triggers:
            if trig.signal == "cpu":
                proposals.append(
                    replicas_for_utilization(
                        spec_replicas, obs.cpu_utilizations, obs.unready_pods, trig.target
                    )
                )
            elif trig.metric_type == "Value":
                proposals.append(replicas_for_value(spec_replicas, obs.value(trig.signal), trig.target))
            else:
                proposals.append(
                    replicas_for_average_value(status_replicas, obs.value(trig.signal), trig.target)
                )
        return max(proposals)

    def sync_hpa(self, now: float, spec_replicas: int, status_replicas: int, obs: Observation | None) -> int:
        return self.hpa.reconcile(
            now, spec_replicas, self.metric_desired(spec_replicas, status_replicas, obs)
        )
