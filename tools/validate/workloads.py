"""Workloads: pod templates and their containers, label selectors and what they select, tolerations.

Every kind with a pod template (`WORKLOAD_KINDS`) gives a `PodTemplate`; the overlay's templates, the vLLM
containers among them and the objects selecting them are found once per overlay (`Context.memo`).
Quantities are parsed with `kubernetes.utils.parse_quantity`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tools.validate.model import Context, FieldPath, Resource, mapping, mappings, quantity, sequence
from tools.validate.vllm_args import VllmCommand, pod_spec_path, vllm_commands

GPU_RESOURCE = "nvidia.com/gpu"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")


@dataclass(frozen=True)
class PodTemplate:
    resource: Resource
    spec: Mapping[str, Any]
    path: tuple[str, ...]  # path of the pod spec in the resource

    def at(self, *parts: str | int) -> FieldPath:
        """The path of a field below the pod spec."""
        return (*self.path, *parts)

    @property
    def metadata_path(self) -> tuple[str, ...]:
        return (*self.path[:-1], "metadata")

    @property
    def labels(self) -> Mapping[str, str]:
        return {str(k): str(v) for k, v in mapping(self.resource.get(*self.metadata_path, "labels")).items()}

    @property
    def annotations(self) -> Mapping[str, str]:
        return mapping(self.resource.get(*self.metadata_path, "annotations"))

    def containers(self) -> list[tuple[int, Mapping[str, Any]]]:
        return [(i, c) for i, c in enumerate(sequence(self.spec.get("containers"))) if isinstance(c, dict)]

    def gpus_per_pod(self) -> int:
        total = 0
        for _, container in self.containers():
            limit = quantity(mapping(mapping(container.get("resources")).get("limits")).get(GPU_RESOURCE))
            total += int(limit) if limit is not None else 0
        return total

    def requests(self, resource_name: str) -> Decimal:
        total = Decimal(0)
        for _, container in self.containers():
            resources = mapping(container.get("resources"))
            value = quantity((mapping(resources.get("requests"))).get(resource_name))
            if value is None:
                value = quantity((mapping(resources.get("limits"))).get(resource_name))
            total += value or 0
        return total


def pod_template(resource: Resource) -> PodTemplate | None:
    path = pod_spec_path(resource)
    if path is None:
        return None
    spec = resource.get(*path)
    return PodTemplate(resource, spec, path) if isinstance(spec, dict) else None


_POD_TEMPLATES_KEY = "workloads.pod_templates"
_VLLM_WORKLOADS_KEY = "workloads.vllm_workloads"
_VLLM_COMMANDS_KEY = "workloads.vllm_commands"


def pod_templates(ctx: Context) -> list[PodTemplate]:
    """The overlay's pod templates in rendered order, found once per overlay (most rules walk them)."""
    return ctx.memo(_POD_TEMPLATES_KEY, lambda: [
        t for t in map(pod_template, ctx.of_kind(*WORKLOAD_KINDS)) if t is not None])


def vllm_commands_of(ctx: Context, resource: Resource) -> list[VllmCommand]:
    """`vllm_commands(resource)`, parsed once per overlay; rules read the commands, never change them."""
    cache: dict[int, tuple[Resource, list[VllmCommand]]] = ctx.extras.setdefault(_VLLM_COMMANDS_KEY, {})
    found = cache.get(id(resource))
    if found is None or found[0] is not resource:
        found = cache[id(resource)] = (resource, list(vllm_commands(resource)))
    return found[1]


def vllm_workloads(ctx: Context) -> list[tuple[PodTemplate, VllmCommand]]:
    return ctx.memo(_VLLM_WORKLOADS_KEY, lambda: [
        (template, command)
        for template in pod_templates(ctx)
        for command in vllm_commands_of(ctx, template.resource)
    ])


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; an empty selector matches all."""
    if not selector:
        return True
    if not isinstance(selector, dict):
        return False  # not a selector: it selects nothing (the schema rules report its shape)
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in mappings(selector.get("matchExpressions")):
        key, op = expr.get("key"), expr.get("operator")
        values = {str(v) for v in sequence(expr.get("values"))}
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class _SelectorGroup:
    """Resources of one kind and namespace with the same selector: a pod is selected by all or none."""

    selector: Any
    members: list[tuple[int, Resource]]  # (rendered position, resource)
    accepted: dict[Callable[[Resource], bool], bool] = field(default_factory=dict)


def _selector_groups(ctx: Context, kind: str) -> dict[str, list[_SelectorGroup]]:
    """Resources of `kind` by namespace, then by selector, once per overlay."""
    return ctx.memo(f"workloads.selector_groups.{kind}", lambda: _group_by_selector(ctx, kind))


def _group_by_selector(ctx: Context, kind: str) -> dict[str, list[_SelectorGroup]]:
    by_namespace: dict[str, dict[str, _SelectorGroup]] = {}
    for position, resource in enumerate(ctx.of_kind(kind)):
        selector = (
            resource.get("spec", "podSelector")
            if kind == "NetworkPolicy"
            else resource.get("spec", "selector")
        )
        if selector is None and kind != "NetworkPolicy":
            continue
        groups = by_namespace.setdefault(resource.namespace, {})
        group = groups.setdefault(canonical(selector), _SelectorGroup(selector, []))
        group.members.append((position, resource))
    return {namespace: list(groups.values()) for namespace, groups in by_namespace.items()}


def _selecting_groups(ctx: Context, kind: str, template: PodTemplate) -> Iterator[_SelectorGroup]:
    labels = template.labels
    for group in _selector_groups(ctx, kind).get(template.resource.namespace, ()):
        if selector_matches(group.selector, labels):
            yield group


def selecting(ctx: Context, kind: str, template: PodTemplate) -> list[Resource]:
    """Resources of `kind` (PodDisruptionBudget, NetworkPolicy, ...) in the template's namespace whose
    selector matches its pod labels, in rendered order."""
    members = [member for group in _selecting_groups(ctx, kind, template) for member in group.members]
    return [resource for _, resource in sorted(members, key=lambda member: member[0])]


def any_selecting(
    ctx: Context, kind: str, template: PodTemplate, accept: Callable[[Resource], bool] | None = None
) -> bool:
    """Whether `selecting(ctx, kind, template)` holds a resource (for which `accept` is true).

    `accept` is asked once per group of resources with the same selector and kept: it must be a
    module-level function of the resource alone."""
    for group in _selecting_groups(ctx, kind, template):
        if accept is None:
            return True
        verdict = group.accepted.get(accept)
        if verdict is None:
            verdict = group.accepted[accept] = any(accept(resource) for _, resource in group.members)
        if verdict:
            return True
    return False


# (namespace, label, value) -> the templates carrying that label, with all their labels, in rendered order
_LabelIndex = dict[tuple[str, str, str], list[tuple[PodTemplate, Mapping[str, str]]]]


def templates_with_labels(ctx: Context, namespace: str, selector: Mapping[str, str]) -> list[PodTemplate]:
    """The pod templates of `namespace` whose labels hold every pair of `selector` (a Service's plain
    label map, keys and values as text), in rendered order; none for an empty selector.

    The templates are indexed by (namespace, label pair) once per overlay and each distinct selector is
    answered once: asking per Service with a scan of every template made the rules that follow Services
    to their pods quadratic in the overlay's size."""
    if not selector:
        return []
    answers: dict[tuple[str, str], list[PodTemplate]] = ctx.extras.setdefault(
        "workloads.templates_with_labels", {})
    key = (namespace, canonical(selector))
    found = answers.get(key)
    if found is None:
        by_pair: _LabelIndex = ctx.memo(
            "workloads.templates_by_label", lambda: _templates_by_label(ctx))
        first_key, first_value = next(iter(selector.items()))
        found = answers[key] = [
            template for template, labels in by_pair.get((namespace, first_key, first_value), ())
            if all(labels.get(k) == v for k, v in selector.items())
        ]
    return found


def _templates_by_label(ctx: Context) -> _LabelIndex:
    by_pair: _LabelIndex = {}
    for template in pod_templates(ctx):
        labels = template.labels
        for label, value in labels.items():
            by_pair.setdefault((template.resource.namespace, label, value), []).append((template, labels))
    return by_pair


def canonical(value: Any) -> str:
    """A rendered value as canonical text, so that equal fields of many resources compare in one step."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except TypeError:  # keys of mixed types cannot be sorted: unequal texts only split classes further
        return repr(value)


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    if not isinstance(taint, dict):
        return True  # not a taint: it keeps nothing off the node
    for tol in mappings(list(tolerations) if not isinstance(tolerations, list) else tolerations):
        effect = tol.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key")
        operator = tol.get("operator") or "Equal"
        if not key:
            if operator == "Exists":
                return True
            continue
        if key != taint.get("key"):
            continue
        if operator == "Exists" or str(tol.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False
