"""GPUs: the pods that request them, the NodePools that launch them (grouped into classes that no rule
tells apart), the pools and instance types a GPU pod can get, and which requirement admits which GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tools.validate.catalogue import Catalogue, InstanceType
from tools.validate.karpenter import (
    CATEGORY,
    FAMILY,
    GPU_NAME,
    NODEPOOL_NAME,
    KeyConstraint,
    PodRequirementTerm,
    Requirements,
    compatible,
    nodepool_requirements,
    pod_requirement_terms,
    requirement_index,
    requirements_key,
    types_admitted,
)
from tools.validate.model import Context, FieldPath, Resource, mapping, mappings, quantity, sequence
from tools.validate.workloads import GPU_RESOURCE, PodTemplate, canonical, pod_templates

REQUIREMENTS: FieldPath = ("spec", "template", "spec", "requirements")


def gpu_pod_templates(ctx: Context) -> list[PodTemplate]:
    return ctx.memo("gpu.pod_templates", lambda: [t for t in pod_templates(ctx) if t.gpus_per_pod() > 0])


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


_GPU_POOLS_KEY = "gpu.gpu_pools"
_POD_TERMS_KEY = "gpu.pod_terms"


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
        key = (requirements_key(shared), canonical(taints), canonical(pool.get("spec", "limits")))
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
    shape = tuple(requirements_key(term.requirements) for term in terms)
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
    cache: dict[tuple[Any, ...], list[InstanceType]] = ctx.extras.setdefault("gpu.pod_instance_types", {})
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


def admission_path(nodepool: Resource, deciding: str | None) -> FieldPath:
    """Path of the NodePool requirement on `deciding` (see `_gpus_admitted`) that admits its GPUs."""
    if deciding is None:
        return REQUIREMENTS
    index = requirement_index(nodepool, deciding)
    if index is None:
        return ("spec", "template", "metadata", "labels")
    return (*REQUIREMENTS, index)


def gpus_nodepool_may_launch(
    nodepool: Resource, catalogue: Catalogue, template: PodTemplate | None = None
) -> tuple[set[str], FieldPath]:
    """GPU names the pool may launch (for the pod, when given: its required node labels narrow the
    choice), and the path of the NodePool requirement that admits them."""
    candidates, deciding = _gpus_admitted(nodepool_requirements(nodepool), catalogue)
    if template is not None:
        for_pod: set[str] = set()
        for term in pod_requirement_terms(template):
            for_pod |= _gpus_admitted(term.requirements, catalogue)[0]
        candidates &= for_pod
    return candidates, admission_path(nodepool, deciding)


def gpu_admission_path(nodepool: Resource, gpu: str, catalogue: Catalogue) -> FieldPath | None:
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
                    return (*REQUIREMENTS, i, "values", j)
    return None
