"""What the simulator reads from one rendered overlay: the vLLM Deployment, its ScaledObject, the
NodePools that may carry it (with their EC2NodeClass), the PDB and the metrics collector's scrape
interval. Everything else comes from the hardware profile."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.validate.karpenter import CAPACITY_TYPE, requirements_from
from tools.validate.keda import scale_target
from tools.validate.model import Resource
from tools.validate.quantity import parse_quantity
from tools.validate.simulate.compile_cache import POD, compile_cache_mode
from tools.validate.simulate.hardware import HardwareProfile, InstanceType
from tools.validate.simulate.hpa import Behavior
from tools.validate.simulate.keda import KedaScaling, ScalingConfigError, parse_scaled_object
from tools.validate.vllm_args import vllm_commands
from tools.validate.workloads import selector_matches, tolerates

VLLM_DEFAULT_MAX_NUM_SEQS = 256  # vLLM's engine default when --max-num-seqs is not given
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration (`2m`, `1h30m`); None for `Never`."""
    if text == "Never":
        return None
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ScalingConfigError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class Probe:
    initial_delay: float
    period: float
    failure_threshold: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Probe | None:
        if not spec:
            return None
        return cls(
            float(spec.get("initialDelaySeconds", 0)),
            float(spec.get("periodSeconds", 10)),
            int(spec.get("failureThreshold", 3)),
        )


@dataclass(frozen=True)
class VllmDeployment:
    name: str
    namespace: str
    container: str
    image: str
    flags: Mapping[str, str]
    max_num_seqs: int
    max_model_len: int | None
    gpus_per_pod: int
    cpu_request: float
    memory_request_gib: float
    startup_probe: Probe | None
    readiness_probe: Probe | None
    termination_grace_seconds: float
    replicas: int | None
    node_requirements: tuple[Mapping[str, Any], ...]
    tolerations: tuple[Mapping[str, Any], ...]
    compile_cache: str = POD  # tools/validate/simulate/compile_cache.py: SHARED (warm start) or POD (cold)


@dataclass(frozen=True)
class NodePool:
    name: str
    weight: int
    requirements: tuple[Mapping[str, Any], ...]
    capacity_types: tuple[str, ...]
    limits: Mapping[str, float]
    taints: tuple[Mapping[str, Any], ...]
    consolidation_policy: str
    consolidate_after: float | None
    node_class: str
    image_pull: str  # "soci_bottlerocket" | "soci_al2023" | "default"


@dataclass(frozen=True)
class PodDisruptionBudget:
    name: str
    min_available: str | None
    max_unavailable: str | None


@dataclass(frozen=True)
class Cluster:
    """The rendered overlay as the simulator sees it."""

    overlay: str
    deployment: VllmDeployment
    scaling: KedaScaling | None
    node_pools: tuple[NodePool, ...]
    pdb: PodDisruptionBudget | None
    scrape_interval: float | None
    export_delay: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _quantity(value: Any) -> float:
    return float(parse_quantity(str(value)))


def parse_deployment(res: Resource) -> VllmDeployment | None:
    pod = res.get("spec", "template", "spec", default={}) or {}
    command = next(vllm_commands(res), None)  # the vLLM container, as the rules find it
    if command is None:
        return None
    container = pod["containers"][command.container_index]
    flags = {flag: "true" if value is None else value for flag, value in command.values.items()}
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    gpus = int(_quantity(limits.get("nvidia.com/gpu", requests.get("nvidia.com/gpu", 0))))
    affinity = pod.get("affinity", {}) or {}
    terms = (
        affinity.get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms")
        or []
    )
    node_requirements = [dict(e) for e in (terms[0].get("matchExpressions") or ())] if terms else []
    for key, value in (pod.get("nodeSelector") or {}).items():
        node_requirements.append({"key": key, "operator": "In", "values": [value]})
    return VllmDeployment(
        name=res.name,
        namespace=res.namespace,
        container=str(container.get("name", "")),
        image=str(container.get("image", "")),
        flags=flags,
        max_num_seqs=int(flags.get("--max-num-seqs", VLLM_DEFAULT_MAX_NUM_SEQS)),
        max_model_len=int(flags["--max-model-len"]) if "--max-model-len" in flags else None,
        gpus_per_pod=gpus,
        cpu_request=_quantity(requests.get("cpu", limits.get("cpu", "1"))),
        memory_request_gib=_quantity(requests.get("memory", limits.get("memory", "1Gi"))) / 2**30,
        startup_probe=Probe.from_spec(container.get("startupProbe")),
        readiness_probe=Probe.from_spec(container.get("readinessProbe")),
        termination_grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)),
        replicas=res.get("spec", "replicas"),
        node_requirements=tuple(node_requirements),
        tolerations=tuple(pod.get("tolerations") or ()),
        compile_cache=compile_cache_mode(pod, container),
    )


def image_pull_mode(node_class: Resource | None) -> str:
    if node_class is None:
        return "default"
    user_data = str(node_class.get("spec", "userData", default="") or "")
    alias = " ".join(
        str(t.get("alias", "")) for t in node_class.get("spec", "amiSelectorTerms", default=[]) or []
    )
    soci = "soci" in user_data.lower() or "FastImagePull" in user_data
    if not soci:
        return "default"
    return "soci_bottlerocket" if "bottlerocket" in alias else "soci_al2023"


def parse_node_pool(res: Resource, node_classes: Mapping[str, Resource]) -> NodePool:
    template = res.get("spec", "template", "spec", default={}) or {}
    requirements = tuple(dict(r) for r in template.get("requirements") or ())
    capacity = ("on-demand",)  # Karpenter's default when the requirement is absent
    for req in requirements:
        if req.get("key") == "karpenter.sh/capacity-type":
            values = [str(v) for v in req.get("values") or ()]
            if req.get("operator") == "In":
                capacity = tuple(values)
            elif req.get("operator") == "NotIn":
                capacity = tuple(c for c in ("spot", "on-demand", "reserved") if c not in values)
    disruption = res.get("spec", "disruption", default={}) or {}
    after = disruption.get("consolidateAfter")
    ref = (template.get("nodeClassRef") or {}).get("name", "")
    return NodePool(
        name=res.name,
        weight=int(res.get("spec", "weight", default=0) or 0),
        requirements=requirements,
        capacity_types=capacity,
        limits={str(k): _quantity(v) for k, v in (res.get("spec", "limits", default={}) or {}).items()},
        taints=tuple(template.get("taints") or ()),
        consolidation_policy=str(disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized")),
        consolidate_after=go_duration(str(after)) if after is not None else 0.0,
        node_class=str(ref),
        image_pull=image_pull_mode(node_classes.get(ref)),
    )


def admitted_instances(
    pool: NodePool, deployment: VllmDeployment | None, hardware: HardwareProfile
) -> list[InstanceType]:
    """Instance types of the profile that the pool's requirements (and the pod's node affinity) admit
    and that fit the pod's GPU, CPU and memory requests, in the profile's launch order."""
    reqs = requirements_from([*pool.requirements, *(deployment.node_requirements if deployment else ())])
    reqs.pop(CAPACITY_TYPE, None)  # chosen per launch, not a property of the instance type
    out = []
    for it in hardware.instance_types:
        # labels the profile does not model (zones, ...) are taken as satisfiable
        if not all(reqs[key].admits(value) for key, value in it.labels.items() if key in reqs):
            continue
        if deployment is not None and (
            it.gpus < max(deployment.gpus_per_pod, 1)
            or deployment.cpu_request > it.vcpu
            or deployment.memory_request_gib > it.memory_gib
        ):
            continue
        out.append(it)
    return out


def pools_for(deployment: VllmDeployment, pools: Sequence[NodePool]) -> list[NodePool]:
    """The pools the pod may land on (every taint tolerated), highest weight first."""
    usable = [p for p in pools if all(tolerates(deployment.tolerations, t) for t in p.taints)]
    return sorted(usable, key=lambda p: -p.weight)


def _scrape_settings(resources: Sequence[Resource]) -> tuple[float | None, float | None]:
    for res in resources:
        if res.kind != "OpenTelemetryCollector":
            continue
        config = res.get("spec", "config", default={}) or {}
        receivers = config.get("receivers") or {}
        for name, receiver in receivers.items():
            if not str(name).startswith("prometheus"):
                continue
            for job in ((receiver or {}).get("config") or {}).get("scrape_configs") or ():
                if "vllm" in str(job.get("job_name", "")) and job.get("scrape_interval"):
                    batch = ((config.get("processors") or {}).get("batch") or {}).get("timeout")
                    return go_duration(str(job["scrape_interval"])), go_duration(
                        str(batch)
                    ) if batch else None
    return None, None


def read_cluster(overlay: str, resources: Sequence[Resource]) -> Cluster:
    notes: list[str] = []
    deployments = [(r, d) for r in resources if r.kind == "Deployment" and (d := parse_deployment(r))]
    if not deployments:
        raise ScalingConfigError(f"{overlay}: no Deployment runs a vLLM container")
    dep_res, deployment = deployments[0]
    scaled = [
        r
        for r in resources
        if r.kind == "ScaledObject"
        and scale_target(r) == ("Deployment", deployment.name)
        and r.namespace == dep_res.namespace
    ]
    scaling = parse_scaled_object(scaled[0].doc) if scaled else None
    if scaling is None:
        notes.append(f"no ScaledObject targets Deployment {deployment.name}: fixed replicas")
    node_classes = {r.name: r for r in resources if r.kind == "EC2NodeClass"}
    pools = tuple(parse_node_pool(r, node_classes) for r in resources if r.kind == "NodePool")
    pdb = None
    for r in resources:
        if r.kind == "PodDisruptionBudget" and r.namespace == dep_res.namespace:
            selector = r.get("spec", "selector")
            labels = dep_res.get("spec", "template", "metadata", "labels", default={}) or {}
            if selector and selector_matches(selector, labels):
                pdb = PodDisruptionBudget(
                    r.name,
                    None if r.get("spec", "minAvailable") is None else str(r.get("spec", "minAvailable")),
                    None if r.get("spec", "maxUnavailable") is None else str(r.get("spec", "maxUnavailable")),
                )
    scrape, export = _scrape_settings(resources)
    return Cluster(overlay, deployment, scaling, pools, pdb, scrape, export, tuple(notes))


def default_behavior() -> Behavior:
    return Behavior.from_spec(None)
