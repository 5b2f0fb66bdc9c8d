"""What several rule families need to read from rendered resources: pod templates, label selection,
KEDA ScaledObjects and their queries, Karpenter NodePool requirements, taints and limits.

Quantities are parsed with `kubernetes.utils.parse_quantity`; PromQL with `promql_parser`; the KEDA
otel add-on's `metricQuery` (`op(metric{l=v,...})`) with a small `lark` grammar; OTTL rename statements
and KEDA formulas with Python's `ast` (both are call/expression syntax Python's parser accepts).
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import promql_parser
from kubernetes.utils import parse_quantity
from lark import Lark, LarkError, Token

from tools.validate.catalogue import Catalogue, InstanceType
from tools.validate.loader import InputError, load_text
from tools.validate.model import Resource, mapping, mappings, sequence
from tools.validate.rules.base import Context
from tools.validate.vllm_args import VllmCommand, dotted, pod_spec_path, vllm_commands

GPU_RESOURCE = "nvidia.com/gpu"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")


def as_int(value: Any, default: int | None = None) -> int | None:
    """An integer field of a rendered resource (int or numeric string); `default` when absent or not a
    number (the schema stage reports the wrong type)."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):  # "INFINITY" parses as a float no int holds
        return default


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a Decimal, or None when absent or malformed."""
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class PodTemplate:
    resource: Resource
    spec: Mapping[str, Any]
    path: tuple[str, ...]  # path of the pod spec in the resource

    def at(self, *parts: str | int) -> str:
        return dotted([*self.path, *parts])

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


_POD_TEMPLATES_KEY = "helpers.pod_templates"
_VLLM_WORKLOADS_KEY = "helpers.vllm_workloads"
_GPU_TEMPLATES_KEY = "helpers.gpu_pod_templates"
_VLLM_COMMANDS_KEY = "helpers.vllm_commands"


def pod_templates(ctx: Context) -> list[PodTemplate]:
    """The overlay's pod templates in rendered order, found once per overlay (most rules walk them)."""
    return ctx.memo(_POD_TEMPLATES_KEY, lambda: [
        t for t in map(pod_template, ctx.of_kind(*WORKLOAD_KINDS)) if t is not None])


def gpu_pod_templates(ctx: Context) -> list[PodTemplate]:
    return ctx.memo(_GPU_TEMPLATES_KEY, lambda: [t for t in pod_templates(ctx) if t.gpus_per_pod() > 0])


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
    return ctx.memo(f"helpers.selector_groups.{kind}", lambda: _group_by_selector(ctx, kind))


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
        group = groups.setdefault(_canonical(selector), _SelectorGroup(selector, []))
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


# --------------------------------------------------------------------------------------------- KEDA


def scale_target(scaled_object: Resource) -> tuple[str, str]:
    ref = mapping(scaled_object.get("spec", "scaleTargetRef"))
    return str(ref.get("kind") or "Deployment"), str(ref.get("name") or "")


_SCALED_OBJECTS_KEY = "helpers.scaled_objects_by_target"


def scaled_objects_of(ctx: Context, workload: Resource) -> list[Resource]:
    """The ScaledObjects whose scaleTargetRef is this workload, in rendered order."""
    def index() -> dict[tuple[str, str, str], list[Resource]]:
        by_target: dict[tuple[str, str, str], list[Resource]] = {}
        for so in ctx.of_kind("ScaledObject"):
            by_target.setdefault((so.namespace, *scale_target(so)), []).append(so)
        return by_target

    by_target = ctx.memo(_SCALED_OBJECTS_KEY, index)
    return list(by_target.get((workload.namespace, workload.kind, workload.name), ()))


def target_of(ctx: Context, scaled_object: Resource) -> Resource | None:
    kind, name = scale_target(scaled_object)

    def index() -> dict[tuple[str, str], Resource]:
        by_name: dict[tuple[str, str], Resource] = {}
        for resource in ctx.of_kind(kind):
            by_name.setdefault((resource.name, resource.namespace), resource)
        return by_name

    return ctx.memo(f"helpers.by_name.{kind}", index).get((name, scaled_object.namespace))


_HPAS_KEY = "helpers.hpas_by_target"


def hpas_of(ctx: Context, workload: Resource) -> list[Resource]:
    """The HorizontalPodAutoscalers whose scaleTargetRef is this workload, in rendered order."""
    def index() -> dict[tuple[str, str, str], list[Resource]]:
        by_target: dict[tuple[str, str, str], list[Resource]] = {}
        for hpa in ctx.of_kind("HorizontalPodAutoscaler"):
            ref = mapping(hpa.get("spec", "scaleTargetRef"))
            kind, name = ref.get("kind"), ref.get("name")
            if isinstance(kind, str) and isinstance(name, str):  # anything else names no workload
                by_target.setdefault((hpa.namespace, kind, name), []).append(hpa)
        return by_target

    by_target = ctx.memo(_HPAS_KEY, index)
    return list(by_target.get((workload.namespace, workload.kind, workload.name), ()))


def triggers(scaled_object: Resource) -> list[tuple[int, Mapping[str, Any]]]:
    listed = sequence(scaled_object.get("spec", "triggers"))
    return [(i, t) for i, t in enumerate(listed) if isinstance(t, dict)]


class QueryError(ValueError):
    pass


# The KEDA otel add-on / kedify-otel `metricQuery`: op(metric{label=value,...}); only `=` matching.
_OTEL_QUERY_GRAMMAR = r"""
    start: OP "(" METRIC labels? ")"
    labels: "{" [label ("," label)*] "}"
    label: NAME "=" VALUE
    OP: "sum" | "min" | "max" | "avg" | "count"
    METRIC: /[a-zA-Z_:][a-zA-Z0-9_:.]*/
    NAME: /[a-zA-Z_][a-zA-Z0-9_.]*/
    VALUE: /[^,}\s]+/
    %ignore /\s+/
"""


@functools.cache
def _otel_query_parser() -> Lark:
    # Built on first use, not at import: most runs parse no otel query at all.
    return Lark(_OTEL_QUERY_GRAMMAR, parser="lalr")


def otel_query_metric(query: str) -> str:
    try:
        tree = _otel_query_parser().parse(query)
    except LarkError as exc:
        raise QueryError(f"metricQuery {query!r} is not op(metric{{label=value,...}}): {exc}") from None
    metric = next(t for t in tree.children if isinstance(t, Token) and t.type == "METRIC")
    return str(metric)


def promql_metrics(query: str) -> list[str]:
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        raise QueryError(f"query {query!r} is not valid PromQL: {exc}") from None
    names: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(str(node.name))

    promql_parser.walk(expr, visit)
    return names


@dataclass(frozen=True)
class TriggerQuery:
    field: str  # "query" | "metricQuery"
    metrics: tuple[str, ...]


def trigger_query(trigger: Mapping[str, Any]) -> TriggerQuery | None:
    """The metric names a trigger's query reads; None for triggers without a metrics query."""
    metadata = mapping(trigger.get("metadata"))
    kind = trigger.get("type")
    if kind == "prometheus" and "query" in metadata:
        return TriggerQuery("query", tuple(promql_metrics(str(metadata["query"]))))
    if kind in ("kedify-otel", "external") and "metricQuery" in metadata:
        return TriggerQuery("metricQuery", (otel_query_metric(str(metadata["metricQuery"])),))
    return None


def trigger_target(trigger: Mapping[str, Any]) -> tuple[str, float] | None:
    """(metadata field, value) of the trigger's per-replica target."""
    metadata = mapping(trigger.get("metadata"))
    for key in ("threshold", "targetValue", "value"):
        if key in metadata:
            try:
                return key, float(metadata[key])
            except (TypeError, ValueError):
                return None
    return None


def measures(trigger: Mapping[str, Any], metric_suffix: str) -> bool:
    """Whether the trigger's query reads the vLLM metric `metric_suffix` (either naming form)."""
    try:
        query = trigger_query(trigger)
    except QueryError:
        return False
    return query is not None and any(
        m.split(":")[-1].removeprefix("vllm_") == metric_suffix for m in query.metrics
    )


# Which Python AST nodes a KEDA formula may use: expr-lang's arithmetic and comparisons on trigger names
# and numbers, parenthesised. Ternaries, calls and attribute access are outside the subset.
_FORMULA_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
)


def formula_names(formula: str) -> list[str]:
    """Trigger names used by a scalingModifiers formula; raises QueryError outside the subset."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise QueryError(f"formula {formula!r} does not parse: {exc.msg}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _FORMULA_NODES):
            raise QueryError(
                f"formula {formula!r} uses {type(node).__name__}, outside the supported subset (trigger "
                "names, numbers, + - * / % **, comparisons, parentheses)"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise QueryError(f"formula {formula!r} has a non-numeric literal {node.value!r}")
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return names


# ---------------------------------------------------------------------------------------- Karpenter

WELL_KNOWN_PREFIXES = (
    "karpenter.k8s.aws/",
    "karpenter.sh/",
    "node.kubernetes.io/",
    "topology.kubernetes.io/",
)
WELL_KNOWN_KEYS = ("kubernetes.io/arch", "kubernetes.io/os", "kubernetes.io/hostname")
GPU_NAME = "karpenter.k8s.aws/instance-gpu-name"
FAMILY = "karpenter.k8s.aws/instance-family"
GPU_COUNT = "karpenter.k8s.aws/instance-gpu-count"
CATEGORY = "karpenter.k8s.aws/instance-category"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
SIZE = "karpenter.k8s.aws/instance-size"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
NODEPOOL_NAME = "karpenter.sh/nodepool"


@dataclass
class KeyConstraint:
    """What values one label key may take: the intersection of requirements on it."""

    allowed: set[str] | None = None  # None: any value
    excluded: set[str] = field(default_factory=set)
    must_exist: bool = False
    must_not_exist: bool = False
    gt: float | None = None
    lt: float | None = None

    def add(self, operator: str, values: Sequence[Any]) -> None:
        strings = {str(v) for v in values}
        if operator == "In":
            self.allowed = strings if self.allowed is None else self.allowed & strings
            self.must_exist = True
        elif operator == "NotIn":
            self.excluded |= strings
        elif operator == "Exists":
            self.must_exist = True
        elif operator == "DoesNotExist":
            self.must_not_exist = True
        elif operator in ("Gt", "Lt") and strings:
            bound = float(next(iter(strings)))
            self.must_exist = True
            if operator == "Gt":
                self.gt = bound if self.gt is None else max(self.gt, bound)
            else:
                self.lt = bound if self.lt is None else min(self.lt, bound)

    def merged(self, other: KeyConstraint) -> KeyConstraint:
        out = KeyConstraint(
            allowed=self.allowed,
            excluded=set(self.excluded),
            must_exist=self.must_exist,
            must_not_exist=self.must_not_exist,
            gt=self.gt,
            lt=self.lt,
        )
        if other.allowed is not None:
            out.allowed = other.allowed if out.allowed is None else out.allowed & other.allowed
        out.excluded |= other.excluded
        out.must_exist |= other.must_exist
        out.must_not_exist |= other.must_not_exist
        for bound in (other.gt,):
            if bound is not None:
                out.gt = bound if out.gt is None else max(out.gt, bound)
        for bound in (other.lt,):
            if bound is not None:
                out.lt = bound if out.lt is None else min(out.lt, bound)
        return out

    def _in_bounds(self, value: str) -> bool:
        if self.gt is None and self.lt is None:
            return True
        try:
            number = float(value)
        except ValueError:
            return False
        return (self.gt is None or number > self.gt) and (self.lt is None or number < self.lt)

    def satisfiable(self) -> bool:
        if self.must_not_exist:
            return not self.must_exist
        if self.allowed is not None:
            return any(v not in self.excluded and self._in_bounds(v) for v in self.allowed)
        if self.gt is not None and self.lt is not None:
            return self.lt - self.gt > 1
        return True

    def admits(self, value: str) -> bool:
        if self.must_not_exist:
            return False
        if self.allowed is not None and value not in self.allowed:
            return False
        return value not in self.excluded and self._in_bounds(value)


Requirements = dict[str, KeyConstraint]


def requirements_from(items: Iterable[Mapping[str, Any]]) -> Requirements:
    out: Requirements = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key", ""))
        out.setdefault(key, KeyConstraint()).add(str(item.get("operator", "")), sequence(item.get("values")))
    return out


def is_well_known(key: str) -> bool:
    return key in WELL_KNOWN_KEYS or key.startswith(WELL_KNOWN_PREFIXES)


def nodepool_requirements(nodepool: Resource) -> Requirements:
    """The NodePool's requirements plus its template labels (a label is `In [value]`) and its name."""
    reqs = requirements_from(sequence(nodepool.get("spec", "template", "spec", "requirements")))
    for key, value in (mapping(nodepool.get("spec", "template", "metadata", "labels"))).items():
        reqs.setdefault(str(key), KeyConstraint()).add("In", [value])
    reqs.setdefault(NODEPOOL_NAME, KeyConstraint()).add("In", [nodepool.name])
    return reqs


def compatible(pod_reqs: Requirements, pool_reqs: Requirements) -> str | None:
    """None when a node of the pool can carry the pod's required labels, else the first conflicting key."""
    for key, constraint in pod_reqs.items():
        pool = pool_reqs.get(key)
        if pool is None:
            if is_well_known(key):
                continue  # the pool does not constrain it: any value is possible
            pool = KeyConstraint(must_not_exist=True)  # the node will not carry the label
        if not constraint.merged(pool).satisfiable():
            return key
    return None


@dataclass(frozen=True)
class PodRequirementTerm:
    requirements: Requirements
    paths: Mapping[str, str]  # key -> path of the field that set it


def pod_requirement_terms(template: PodTemplate) -> list[PodRequirementTerm]:
    """nodeSelector AND each required node-affinity term (the terms are ORed)."""
    base_items = [
        {"key": k, "operator": "In", "values": [v]}
        for k, v in (mapping(template.spec.get("nodeSelector"))).items()
    ]
    base_paths = {k: template.at("nodeSelector", k) for k in (mapping(template.spec.get("nodeSelector")))}
    terms_path = (
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    )
    node = template.spec
    for part in terms_path:
        node = node.get(part) if isinstance(node, dict) else None
    terms = node if isinstance(node, list) and node else None
    if terms is None:
        return [PodRequirementTerm(requirements_from(base_items), base_paths)]
    out = []
    for t, term in enumerate(terms):
        exprs = mappings(mapping(term).get("matchExpressions"))
        paths = dict(base_paths)
        for e, expr in enumerate(exprs):
            paths.setdefault(str(expr.get("key", "")), template.at(*terms_path, t, "matchExpressions", e))
        out.append(PodRequirementTerm(requirements_from([*base_items, *exprs]), paths))
    return out


def nodepools(ctx: Context) -> list[Resource]:
    return list(ctx.of_kind("NodePool"))


def _is_gpu_pool(nodepool: Resource, reqs: Requirements, catalogue: Catalogue | None) -> bool:
    if (mapping(nodepool.get("spec", "limits"))).get(GPU_RESOURCE) is not None:
        return True
    if any(k.startswith("karpenter.k8s.aws/instance-gpu-") for k in reqs):
        return True
    category = reqs.get(CATEGORY)
    if category is not None and category.allowed is not None and category.allowed & {"g", "p"}:
        return True
    family = reqs.get(FAMILY)
    return bool(
        catalogue is not None
        and family is not None
        and family.allowed
        and family.allowed & set(catalogue.families)
    )


def is_gpu_nodepool(nodepool: Resource, catalogue: Catalogue | None) -> bool:
    return _is_gpu_pool(nodepool, nodepool_requirements(nodepool), catalogue)


def _canonical(value: Any) -> str:
    """A rendered value as canonical text, so that equal fields of many resources compare in one step."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except TypeError:  # keys of mixed types cannot be sorted: unequal texts only split classes further
        return repr(value)


def _constraint_key(constraint: KeyConstraint) -> tuple[Any, ...]:
    allowed = None if constraint.allowed is None else tuple(sorted(constraint.allowed))
    return (allowed, tuple(sorted(constraint.excluded)), constraint.must_exist, constraint.must_not_exist,
            constraint.gt, constraint.lt)


def _requirements_key(reqs: Requirements) -> tuple[Any, ...]:
    return tuple(sorted((key, _constraint_key(constraint)) for key, constraint in reqs.items()))


@dataclass(frozen=True)
class PoolMember:
    position: int  # in the overlay's rendered order
    pool: Resource
    name_constraint: KeyConstraint  # its `karpenter.sh/nodepool` requirement


@dataclass(eq=False)
class GpuPoolClass:
    """GPU NodePools of one overlay that no rule tells apart but by name: the same requirements (the
    `karpenter.sh/nodepool` one aside), taints and limits.

    What a pod gets from a pool (can it land there, which GPUs, which taints block it, how much the
    limits allow) is worked out once per class and pod shape: an overlay of N copies of one NodePool
    has one class, so matching its workloads to pools costs workloads + pools, not workloads x pools.
    """

    requirements: Requirements  # the first member's, without `karpenter.sh/nodepool`
    representative: Resource
    members: list[PoolMember] = field(default_factory=list)  # in rendered order
    members_by_name: dict[str, list[PoolMember]] = field(default_factory=dict)
    _gpus: tuple[frozenset[str], str | None] | None = field(default=None, repr=False)
    _types: list[InstanceType] | None = field(default=None, repr=False)

    def instance_types(self, catalogue: Catalogue) -> list[InstanceType]:
        """The instance types the class's requirements admit, worked out once."""
        if self._types is None:
            self._types = types_admitted(self.requirements, catalogue)
        return self._types

    @property
    def taints(self) -> list[Any]:
        return mappings(self.representative.get("spec", "template", "spec", "taints"))

    def limit(self, resource_name: str) -> Decimal | None:
        return quantity((mapping(self.representative.get("spec", "limits"))).get(resource_name))

    def gpus_admitted(self, catalogue: Catalogue) -> tuple[frozenset[str], str | None]:
        """The pool half of `gpus_nodepool_may_launch`: GPUs the requirements admit and the deciding key."""
        if self._gpus is None:
            gpus, deciding = _gpus_admitted(self.requirements, catalogue)
            self._gpus = frozenset(gpus), deciding
        return self._gpus


@dataclass(frozen=True)
class PoolMatch:
    """The GPU NodePools of one class a pod can land on (taints not considered)."""

    pool_class: GpuPoolClass
    members: Sequence[PoolMember]  # in rendered order


@dataclass
class GpuPools:
    """An overlay's GPU NodePools, grouped into classes, and the matches worked out so far, by pod shape."""

    members: list[PoolMember]  # every GPU NodePool, in rendered order
    requirements: list[Requirements]  # of each member, as `nodepool_requirements` gives them
    classes: list[GpuPoolClass]
    matches: dict[tuple[Any, ...], list[PoolMatch]] = field(default_factory=dict)


_GPU_POOLS_KEY = "helpers.gpu_pools"
_POD_TERMS_KEY = "helpers.pod_terms"


def gpu_pools(ctx: Context) -> GpuPools:
    """The overlay's GPU NodePools, worked out once per overlay: every GPU workload of every rule asks."""
    return ctx.memo(_GPU_POOLS_KEY, lambda: _classify_gpu_pools(ctx))


def _classify_gpu_pools(ctx: Context) -> GpuPools:
    members: list[PoolMember] = []
    requirements: list[Requirements] = []
    classes: dict[tuple[Any, ...], GpuPoolClass] = {}
    for position, pool in enumerate(ctx.of_kind("NodePool")):
        reqs = nodepool_requirements(pool)
        if not _is_gpu_pool(pool, reqs, ctx.catalogue):
            continue
        member = PoolMember(position, pool, reqs[NODEPOOL_NAME])
        members.append(member)
        requirements.append(reqs)
        shared = {key: constraint for key, constraint in reqs.items() if key != NODEPOOL_NAME}
        taints = pool.get("spec", "template", "spec", "taints")
        key = (_requirements_key(shared), _canonical(taints), _canonical(pool.get("spec", "limits")))
        pool_class = classes.get(key)
        if pool_class is None:
            pool_class = classes[key] = GpuPoolClass(shared, pool)
        pool_class.members.append(member)
        pool_class.members_by_name.setdefault(pool.name, []).append(member)
    return GpuPools(members, requirements, list(classes.values()))


@dataclass(frozen=True)
class _PodTerms:
    spec: Mapping[str, Any]  # kept so that the id the cache is keyed by stays this object's
    terms: list[PodRequirementTerm]
    shape: tuple[Any, ...]  # the terms' requirements as a key: pods of one shape land on the same pools


def _pod_terms(ctx: Context, template: PodTemplate) -> _PodTerms:
    """`pod_requirement_terms` of a pod template, once per template per overlay."""
    cache: dict[int, _PodTerms] = ctx.extras.setdefault(_POD_TERMS_KEY, {})
    found = cache.get(id(template.spec))
    if found is not None and found.spec is template.spec:
        return found
    terms = pod_requirement_terms(template)
    shape = tuple(_requirements_key(term.requirements) for term in terms)
    found = cache[id(template.spec)] = _PodTerms(template.spec, terms, shape)
    return found


def _match_class(pool_class: GpuPoolClass, terms: Sequence[PodRequirementTerm]) -> Sequence[PoolMember]:
    """The members of the class a pod with these terms can land on: `compatible` on the class's shared
    requirements (the pool's name is well known, so it is left open there), then the name."""
    fitting = [term for term in terms if compatible(term.requirements, pool_class.requirements) is None]
    if not fitting:
        return ()
    if any(NODEPOOL_NAME not in term.requirements for term in fitting):
        return pool_class.members
    candidates: Iterable[PoolMember] = pool_class.members
    named = [term.requirements[NODEPOOL_NAME].allowed for term in fitting]
    if all(allowed is not None for allowed in named):  # `In` names: look them up
        names: set[str] = set().union(*(allowed for allowed in named if allowed is not None))
        found = {id(m): m for name in names for m in pool_class.members_by_name.get(name, ())}
        candidates = sorted(found.values(), key=lambda m: m.position)
    name_terms = [term.requirements[NODEPOOL_NAME] for term in fitting]
    return [
        member
        for member in candidates
        if any(term.merged(member.name_constraint).satisfiable() for term in name_terms)
    ]


def gpu_pool_matches(ctx: Context, template: PodTemplate) -> list[PoolMatch]:
    """The GPU NodePools a node for this pod can come from (taints not considered), by class; pods of
    the same shape (nodeSelector and required node affinity) share the answer."""
    pools = gpu_pools(ctx)
    pod = _pod_terms(ctx, template)
    found = pools.matches.get(pod.shape)
    if found is None:
        found = []
        for pool_class in pools.classes:
            members = _match_class(pool_class, pod.terms)
            if members:
                found.append(PoolMatch(pool_class, members))
        pools.matches[pod.shape] = found
    return found


def matched_pools(matches: Iterable[PoolMatch]) -> list[Resource]:
    """The pools of these matches in rendered order."""
    members = [member for match in matches for member in match.members]
    return [member.pool for member in sorted(members, key=lambda m: m.position)]


def nodepools_for(ctx: Context, template: PodTemplate) -> list[Resource]:
    """GPU NodePools whose requirements a node for this pod can satisfy (taints not considered)."""
    return matched_pools(gpu_pool_matches(ctx, template))


def pod_instance_types(ctx: Context, template: PodTemplate, match: PoolMatch) -> list[InstanceType]:
    """The instance types a pod can get from a class of NodePools: the pool's requirements intersected
    with each of the pod's node-affinity terms (nodeSelector included), in any term. Once per pool class
    and pod shape."""
    catalogue = ctx.catalogue
    if catalogue is None:
        return []
    pod = _pod_terms(ctx, template)
    cache: dict[tuple[Any, ...], list[InstanceType]] = ctx.extras.setdefault("helpers.pod_instance_types", {})
    key = (id(match.pool_class), pod.shape)
    found = cache.get(key)
    if found is None:
        names: dict[str, InstanceType] = {}
        for term in pod.terms:
            merged = dict(match.pool_class.requirements)
            for label, constraint in term.requirements.items():
                merged[label] = merged[label].merged(constraint) if label in merged else constraint
            names |= {itype.name: itype for itype in types_admitted(merged, catalogue)}
        found = cache[key] = [catalogue.instance_types[n] for n in catalogue.instance_types if n in names]
    return found


def requirement_index(nodepool: Resource, key: str) -> int | None:
    for i, item in enumerate(sequence(nodepool.get("spec", "template", "spec", "requirements"))):
        if mapping(item).get("key") == key:
            return i
    return None


def _gpus_admitted(reqs: Requirements, catalogue: Catalogue) -> tuple[set[str], str | None]:
    """GPUs whose labels (gpu-name, its family, its category) the requirements admit, and the most
    specific of those keys present."""
    candidates = set(catalogue.gpus)
    deciding = None
    for key in (CATEGORY, FAMILY, GPU_NAME):
        constraint = reqs.get(key)
        if constraint is None:
            continue
        if key == GPU_NAME:
            candidates = {g for g in candidates if constraint.admits(g)}
        elif key == FAMILY:
            candidates &= {f.gpu for f in catalogue.families.values() if constraint.admits(f.name)}
        else:
            candidates &= {f.gpu for f in catalogue.families.values() if constraint.admits(f.category)}
        deciding = key
    return candidates, deciding


def admission_path(nodepool: Resource, deciding: str | None) -> str:
    """Path of the NodePool requirement on `deciding` (see `_gpus_admitted`) that admits its GPUs."""
    if deciding is None:
        return "spec.template.spec.requirements"
    index = requirement_index(nodepool, deciding)
    if index is None:
        return "spec.template.metadata.labels"
    return f"spec.template.spec.requirements[{index}]"


def gpus_nodepool_may_launch(
    nodepool: Resource, catalogue: Catalogue, template: PodTemplate | None = None
) -> tuple[set[str], str]:
    """GPU names the pool may launch (for the pod, when given: its required node labels narrow the
    choice), and the path of the NodePool requirement that admits them."""
    candidates, deciding = _gpus_admitted(nodepool_requirements(nodepool), catalogue)
    if template is not None:
        for_pod: set[str] = set()
        for term in pod_requirement_terms(template):
            for_pod |= _gpus_admitted(term.requirements, catalogue)[0]
        candidates &= for_pod
    return candidates, admission_path(nodepool, deciding)


def gpu_admission_path(nodepool: Resource, gpu: str, catalogue: Catalogue) -> str | None:
    """Path of the requirement value that lets the pool launch `gpu` (`requirements[i].values[j]`): its
    name in instance-gpu-name, else its family in instance-family, else its category."""
    families = [f for f in catalogue.families.values() if f.gpu == gpu]
    wanted = {
        GPU_NAME: {gpu},
        FAMILY: {f.name for f in families},
        CATEGORY: {f.category for f in families},
    }
    items = sequence(nodepool.get("spec", "template", "spec", "requirements"))
    for key in (GPU_NAME, FAMILY, CATEGORY):
        for i, item in enumerate(items):
            if item.get("key") != key or item.get("operator") != "In":
                continue
            for j, value in enumerate(sequence(item.get("values"))):
                if str(value) in wanted[key]:
                    return f"spec.template.spec.requirements[{i}].values[{j}]"
    return None


def admitted_instance_types(nodepool: Resource, catalogue: Catalogue) -> list[str]:
    """Instance types of the catalogue the NodePool's requirements admit."""
    return [itype.name for itype in types_admitted(nodepool_requirements(nodepool), catalogue)]


def types_admitted(reqs: Requirements, catalogue: Catalogue) -> list[InstanceType]:
    """Instance types of the catalogue whose labels every requirement admits. A requirement on a label the
    catalogue does not know (a pool's own template label, `karpenter.sh/nodepool`) does not narrow the set;
    one that needs a well-known label the catalogue does not model is taken as met."""
    out = []
    for itype in catalogue.instance_types.values():
        labels = catalogue.instance_labels(itype)
        if all(reqs[key].admits(value) for key, value in labels.items() if key in reqs):
            out.append(itype)
    return out


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


# ---------------------------------------------------------------------------------------- Argo CD


def applications(ctx: Context) -> list[Resource]:
    """Argo CD Applications of the overlay plus those rendered from apps/ (`ctx.extras["applications"]`)."""
    seen: dict[tuple[str, str], Resource] = {}
    for app in [*ctx.of_kind("Application"), *(sequence(ctx.extras.get("applications")))]:
        if isinstance(app, Resource) and app.kind == "Application":
            seen.setdefault((app.namespace, app.name), app)
    return list(seen.values())


def app_sources(app: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, source) for `spec.source` and each `spec.sources[i]`."""
    out = []
    if isinstance(app.get("spec", "source"), dict):
        out.append(("spec.source", app.get("spec", "source")))
    for i, source in enumerate(sequence(app.get("spec", "sources"))):
        if isinstance(source, dict):
            out.append((f"spec.sources[{i}]", source))
    return out


def sync_wave(resource: Resource) -> int:
    try:
        return int(str(resource.annotations.get("argocd.argoproj.io/sync-wave", "0")).strip())
    except ValueError:
        return 0


def sync_options(app: Resource) -> set[str]:
    return {str(o) for o in sequence(app.get("spec", "syncPolicy", "syncOptions"))}


def otel_renames(ctx: Context) -> list[tuple[re.Pattern[str], str]]:
    """Metric renames the OpenTelemetryCollectors' transform processors apply, as (regex, replacement)."""
    out: list[tuple[re.Pattern[str], str]] = []
    for collector in ctx.of_kind("OpenTelemetryCollector"):
        config = collector.get("spec", "config")
        if isinstance(config, str):  # v1alpha1 keeps the collector config as a YAML string
            try:
                documents = load_text(config, f"{collector.ref()} spec.config").documents
            except InputError:
                continue  # not YAML (or over the loader's limits): it configures no rename
            config = documents[0] if documents else None
        processors = mapping(mapping(config).get("processors"))
        for name, processor in processors.items():
            if not str(name).startswith("transform") or not isinstance(processor, dict):
                continue
            for group in sequence(processor.get("metric_statements")):
                statements = sequence(group.get("statements")) if isinstance(group, dict) else [group]
                for statement in statements:
                    rename = _ottl_rename(str(statement))
                    if rename is not None:
                        out.append(rename)
    return out


def _ottl_rename(statement: str) -> tuple[re.Pattern[str], str] | None:
    """`replace_pattern(name, "re", "repl")` or `set(name, "new") where name == "old"` (OTTL) as a regex "
    "rename."""
    call_text, _, condition = statement.partition(" where ")
    try:
        call = ast.parse(call_text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or not call.args:
        return None
    target = ast.unparse(call.args[0])
    if target not in ("name", "metric.name"):
        return None
    literals = [a.value for a in call.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if call.func.id == "replace_pattern" and len(literals) == 2:
        # The collector config escapes `$` as `$$`; OTTL's `$1`/`${1}` become Python's `\g<1>`.
        replacement = literals[1].replace("$$", "$")
        replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement)
        return re.compile(literals[0]), replacement
    if call.func.id == "set" and len(literals) == 1 and condition:
        try:
            cond = ast.parse(condition.strip(), mode="eval").body
        except SyntaxError:
            return None
        if (
            isinstance(cond, ast.Compare)
            and isinstance(cond.ops[0], ast.Eq)
            and isinstance(cond.comparators[0], ast.Constant)
        ):
            return re.compile("^" + re.escape(str(cond.comparators[0].value)) + "$"), literals[0].replace(
                "\\", "\\\\"
            )
    return None


def exported_name(name: str, renames: Sequence[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replacement in renames:
        name = pattern.sub(replacement, name)
    return name
