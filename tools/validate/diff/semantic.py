"""Semantic changes between two renderings of one environment, in the words of the domain.

Each kind the scaling path depends on has an extractor that names its fields the way an engineer
talks about them ("KEDA maxReplicaCount", "vLLM --max-num-seqs", "NodePool gpu-inference: on-demand
fallback removed") and declares which paths it covers; every other changed field is reported by the
generic fallback as `Kind name: path old → new`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tools.validate.model import Resource, walk
from tools.validate.simulate.hardware import HardwareProfile
from tools.validate.simulate.manifests import (
    admitted_instances,
    image_pull_mode,
    parse_deployment,
    parse_node_pool,
)

ARROW = "→"


@dataclass(frozen=True)
class Facts:
    """Named values of one resource plus the paths they account for."""

    values: Mapping[str, Any]
    covered: tuple[str, ...]


def fmt(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and (" " in value or not value):
        return repr(value)
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "none"
    return str(value)


def _policies(rules: Mapping[str, Any] | None) -> str | None:
    if not rules or "policies" not in rules:
        return None
    return ", ".join(f"{p.get('type')} {p.get('value')}/{p.get('periodSeconds')}s" for p in rules["policies"])


def scaled_object_facts(res: Resource, label: str) -> Facts:
    spec = res.get("spec", default={}) or {}
    values: dict[str, Any] = {}
    for key in (
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
    ):
        values[f"{label} {key}"] = spec.get(key)
    for trig in spec.get("triggers") or ():
        name = trig.get("name") or trig.get("type")
        meta = trig.get("metadata") or {}
        values[f"{label} trigger {name}"] = "present"
        for key, value in meta.items():
            if key in ("scalerAddress",):
                continue
            values[f"{label} trigger {name} {key}"] = value
        values[f"{label} trigger {name} metricType"] = trig.get("metricType")
    advanced = spec.get("advanced") or {}
    mods = advanced.get("scalingModifiers") or {}
    for key in ("formula", "target", "activationTarget", "metricType"):
        values[f"{label} {key}"] = mods.get(key)
    fallback = spec.get("fallback") or {}
    for key in ("failureThreshold", "replicas", "behavior"):
        values[f"{label} fallback {key}"] = fallback.get(key)
    behavior = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {}
    for direction, word in (("scaleUp", "scale-up"), ("scaleDown", "scale-down")):
        rules = behavior.get(direction) or {}
        values[f"HPA {word} stabilization window"] = rules.get("stabilizationWindowSeconds")
        values[f"HPA {word} policies"] = _policies(rules)
        values[f"HPA {word} selectPolicy"] = rules.get("selectPolicy")
    return Facts(
        values,
        (
            "spec.minReplicaCount",
            "spec.maxReplicaCount",
            "spec.pollingInterval",
            "spec.cooldownPeriod",
            "spec.initialCooldownPeriod",
            "spec.triggers",
            "spec.fallback",
            "spec.advanced.scalingModifiers",
            "spec.advanced.horizontalPodAutoscalerConfig.behavior",
        ),
    )


def deployment_facts(res: Resource, label: str) -> Facts:
    vllm = parse_deployment(res)
    containers = res.get("spec", "template", "spec", "containers", default=[]) or []
    values: dict[str, Any] = {}
    covered: list[str] = ["spec.replicas"]
    values[f"{label} replicas"] = res.get("spec", "replicas")
    for i, container in enumerate(containers):
        name = container.get("name", str(i))
        is_vllm = vllm is not None and name == vllm.container
        who = "vLLM" if is_vllm else f"{label} container {name}"
        values[f"{who} image"] = container.get("image")
        covered.append(f"spec.template.spec.containers[{i}].image")
        if is_vllm:
            assert vllm is not None
            for flag, value in vllm.flags.items():
                values[f"vLLM {flag}"] = value
            values["vLLM GPUs per pod"] = vllm.gpus_per_pod
            probe = vllm.startup_probe
            values["vLLM startup probe budget"] = (
                None
                if probe is None
                else f"{probe.initial_delay + probe.period * probe.failure_threshold:g} s"
            )
            covered += [
                f"spec.template.spec.containers[{i}].args",
                f"spec.template.spec.containers[{i}].startupProbe",
                f"spec.template.spec.containers[{i}].resources.limits.nvidia.com/gpu",
                f"spec.template.spec.containers[{i}].resources.requests.nvidia.com/gpu",
            ]
    return Facts(values, tuple(covered))


def node_pool_facts(res: Resource, label: str, hardware: HardwareProfile) -> Facts:
    pool = parse_node_pool(res, {})
    values: dict[str, Any] = {
        f"{label} capacity types": tuple(pool.capacity_types),
        f"{label} GPU types": tuple(sorted({i.gpu.name for i in admitted_instances(pool, None, hardware)})),
        f"{label} weight": res.get("spec", "weight"),
        f"{label} consolidateAfter": res.get("spec", "disruption", "consolidateAfter"),
        f"{label} consolidationPolicy": res.get("spec", "disruption", "consolidationPolicy"),
    }
    for key, value in (res.get("spec", "limits", default={}) or {}).items():
        values[f"{label} limit {key}"] = value
    for req in pool.requirements:
        if req.get("key") in ("karpenter.sh/capacity-type", "karpenter.k8s.aws/instance-gpu-name"):
            continue
        values[f"{label} requirement {req.get('key')}"] = (
            f"{req.get('operator')} {fmt(req.get('values') or [])}"
        )
    return Facts(
        values,
        (
            "spec.template.spec.requirements",
            "spec.limits",
            "spec.weight",
            "spec.disruption.consolidateAfter",
            "spec.disruption.consolidationPolicy",
        ),
    )


def node_class_facts(res: Resource, label: str) -> Facts:

    alias = [t.get("alias") for t in res.get("spec", "amiSelectorTerms", default=[]) or [] if t.get("alias")]
    values = {f"{label} image pull": image_pull_mode(res), f"{label} AMI": ", ".join(alias) or None}
    return Facts(values, ("spec.userData",) + (("spec.amiSelectorTerms",) if alias else ()))


def pdb_facts(res: Resource, label: str) -> Facts:
    spec = res.get("spec", default={}) or {}
    return Facts(
        {
            f"{label} minAvailable": spec.get("minAvailable"),
            f"{label} maxUnavailable": spec.get("maxUnavailable"),
        },
        ("spec.minAvailable", "spec.maxUnavailable"),
    )


def application_facts(res: Resource, label: str) -> Facts:
    automated = res.get("spec", "syncPolicy", "automated")
    values: dict[str, Any] = {f"{label} sync": "manual" if automated is None else "automated"}
    for key, value in sorted((automated or {}).items()):
        values[f"{label} sync {key}"] = value
    source = res.get("spec", "source", default={}) or {}
    values[f"{label} targetRevision"] = source.get("targetRevision")
    return Facts(values, ("spec.syncPolicy.automated", "spec.source.targetRevision"))


def _key(res: Resource) -> tuple[str, str, str]:
    return (res.kind, res.namespace, res.name)


def _leaves(doc: Any) -> dict[str, Any]:
    return {
        path: value for path, value in walk(doc) if path and (not isinstance(value, dict | list) or not value)
    }


def _covered(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in prefixes)


def _compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    lines = []
    # An added or removed part (a trigger) is one line, not one per field of it.
    whole = [
        n
        for n in {*before, *after}
        if "present" in (before.get(n), after.get(n)) and before.get(n) != after.get(n)
    ]
    for name in list(dict.fromkeys([*before, *after])):
        old, new = before.get(name), after.get(name)
        if old == new or any(name.startswith(f"{w} ") for w in whole):
            continue
        if name.endswith(" capacity types"):
            lines.extend(_capacity_lines(name.removesuffix(" capacity types"), old or (), new or ()))
        elif name.endswith(" GPU types"):
            added = sorted(set(new or ()) - set(old or ()))
            removed = sorted(set(old or ()) - set(new or ()))
            parts = ([f"added {', '.join(added)}"] if added else []) + (
                [f"removed {', '.join(removed)}"] if removed else []
            )
            lines.append(f"{name} {'; '.join(parts)}")
        elif old == "present" or new == "present":
            lines.append(f"{name} {'added' if old is None else 'removed'}")
        else:
            lines.append(f"{name} {fmt(old)} {ARROW} {fmt(new)}")
    return lines


def _capacity_lines(label: str, old: Sequence[str], new: Sequence[str]) -> list[str]:
    lines = []
    for capacity, word in (("on-demand", "on-demand fallback"), ("spot", "Spot")):
        if capacity in old and capacity not in new:
            lines.append(f"{label}: {word} removed")
        elif capacity in new and capacity not in old:
            lines.append(f"{label}: {word} added")
    return lines


def _label(kind: str, res: Resource, unique: bool) -> str:
    if kind == "ScaledObject":
        return "KEDA" if unique else f"KEDA {res.name}"
    return f"{kind} {res.name}"


def facts_for(res: Resource, unique: bool, hardware: HardwareProfile) -> Facts | None:
    label = _label(res.kind, res, unique)
    extractors: dict[str, Callable[[], Facts]] = {
        "ScaledObject": lambda: scaled_object_facts(res, label),
        "Deployment": lambda: deployment_facts(res, label),
        "NodePool": lambda: node_pool_facts(res, label, hardware),
        "EC2NodeClass": lambda: node_class_facts(res, label),
        "PodDisruptionBudget": lambda: pdb_facts(res, label),
        "Application": lambda: application_facts(res, label),
    }
    extractor = extractors.get(res.kind)
    return extractor() if extractor else None


def semantic_changes(
    base: Sequence[Resource], head: Sequence[Resource], hardware: HardwareProfile
) -> list[str]:
    """Change lines (without the environment prefix), domain lines first, then generic ones."""
    before = {_key(r): r for r in base}
    after = {_key(r): r for r in head}
    scaled = {k for k in [*before, *after] if k[0] == "ScaledObject"}
    unique = len(scaled) <= 1
    domain: list[str] = []
    generic: list[str] = []
    for key in list(dict.fromkeys([*before, *after])):
        old, new = before.get(key), after.get(key)
        kind, _, name = key
        if old is None or new is None:
            generic.append(f"{kind} {name} {'added' if old is None else 'removed'}")
            continue
        if old.doc == new.doc:
            continue
        old_facts, new_facts = facts_for(old, unique, hardware), facts_for(new, unique, hardware)
        covered: tuple[str, ...] = ()
        if old_facts and new_facts:
            domain.extend(_compare(old_facts.values, new_facts.values))
            covered = old_facts.covered + new_facts.covered
        old_leaves, new_leaves = _leaves(old.doc), _leaves(new.doc)
        for path in list(dict.fromkeys([*old_leaves, *new_leaves])):
            if _covered(path, covered) or old_leaves.get(path) == new_leaves.get(path):
                continue
            generic.append(
                f"{kind} {name}: {path} {fmt(old_leaves.get(path))} {ARROW} {fmt(new_leaves.get(path))}"
            )
    return domain + generic
