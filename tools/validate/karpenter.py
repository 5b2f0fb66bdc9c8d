"""Karpenter: NodePool requirements as label constraints, a pod's node-affinity terms, and the instance
types of the catalogue a set of requirements admits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.validate.catalogue import Catalogue, InstanceType
from tools.validate.model import Context, FieldPath, Resource, mapping, mappings, sequence
from tools.validate.workloads import PodTemplate

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
    paths: Mapping[str, FieldPath]  # key -> path of the field that set it


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


def constraint_key(constraint: KeyConstraint) -> tuple[Any, ...]:
    allowed = None if constraint.allowed is None else tuple(sorted(constraint.allowed))
    return (allowed, tuple(sorted(constraint.excluded)), constraint.must_exist, constraint.must_not_exist,
            constraint.gt, constraint.lt)


def requirements_key(reqs: Requirements) -> tuple[Any, ...]:
    return tuple(sorted((key, constraint_key(constraint)) for key, constraint in reqs.items()))


def requirement_index(nodepool: Resource, key: str) -> int | None:
    for i, item in enumerate(sequence(nodepool.get("spec", "template", "spec", "requirements"))):
        if mapping(item).get("key") == key:
            return i
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
