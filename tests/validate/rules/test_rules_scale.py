"""How the rules' work grows with the overlay: linearly in its resources, never with workloads x
NodePools or resources x resources.

The overlay here is N copies of the baseline prod overlay in one Context (every name suffixed, the
references between a copy's resources kept), the shape of the benchmark's generated corpora: every
vLLM Deployment can land on every copy's GPU NodePool, and every copy's PodDisruptionBudget and
NetworkPolicy select every copy's pods. The proof is a count of calls to the helpers whose cost
matters, not a timing: the count for N copies must be a*N + b.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from rules_fixtures import FIXTURES, policy_rules

from tools.validate import gpu as gpu_facts
from tools.validate import karpenter, keda, network, vllm_args, workloads
from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.config import load_config
from tools.validate.environment_values import EXTRAS_KEY as ENVIRONMENT_VALUES_KEY
from tools.validate.environment_values import environment_values
from tools.validate.loader import Limits
from tools.validate.model import Context, Resource, format_path
from tools.validate.rules import aws as aws_rules
from tools.validate.rules import default_registry, gpu

BASELINE = FIXTURES / "baseline" / "prod.yaml"
REPOSITORY = Path(__file__).resolve().parents[3]
PROD_VALUES = environment_values(REPOSITORY / "overlays" / "prod", REPOSITORY, Limits())
EXTERNAL = load_config(Path(__file__).resolve().parents[3] / "gate.yaml", default_registry()).external
# The functions each (workload, NodePool) or (resource, resource) pair used to call, in the modules that call
# them.
COUNTED = {
    karpenter: ("nodepool_requirements", "requirements_from", "pod_requirement_terms"),
    gpu_facts: ("nodepool_requirements", "compatible", "pod_requirement_terms"),
    workloads: ("selector_matches",),
    keda: ("scale_target",),
    gpu: ("compatible", "pod_requirement_terms", "tolerates"),
    vllm_args: ("parse_container", "check_flags_with_vllm"),
    # every copy's ServiceMonitor selects every copy's Service; every copy's Ingress reaches every copy's pods
    network: ("selector_matches", "_service_connections"),
    aws_rules: ("_hops_settings",),
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def baseline_docs(path: Path = BASELINE) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [d for d in docs if d and d.get("kind") != "Fixture"]


def copies(docs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """COUNT copies of DOCS with `-cN` name suffixes; the Namespaces once, first."""
    out = [copy.deepcopy(d) for d in docs if d["kind"] == "Namespace"]
    services = {(d["metadata"]["name"], d["metadata"].get("namespace", ""))
                for d in docs if d["kind"] == "Service"}
    collectors = {d["metadata"]["name"] for d in docs if d["kind"] == "OpenTelemetryCollector"}
    names = {d["metadata"]["name"] for d in docs}
    for number in range(count):
        suffix = f"-c{number}"
        for original in docs:
            if original["kind"] == "Namespace":
                continue
            doc = copy.deepcopy(original)
            doc["metadata"]["name"] += suffix
            spec = doc.get("spec") or {}
            if isinstance(spec.get("scaleTargetRef"), dict):
                spec["scaleTargetRef"]["name"] += suffix
            node_class = ((spec.get("template") or {}).get("spec") or {}).get("nodeClassRef")
            if doc["kind"] == "NodePool" and isinstance(node_class, dict):
                node_class["name"] += suffix
            _rename_references(spec, suffix, names)
            _rename_addresses(doc, suffix, services, collectors)
            out.append(doc)
    return out


def _rename_addresses(node: Any, suffix: str, services: set[tuple[str, str]], collectors: set[str]) -> Any:
    """In-cluster addresses of the copied Services, and the pod label the OpenTelemetry operator derives
    from a collector's name, follow the renamed objects (kustomize leaves both alone: a real nameSuffix
    breaks them, which the references rules report)."""
    if isinstance(node, list):
        node[:] = [_rename_addresses(item, suffix, services, collectors) for item in node]
    elif isinstance(node, dict):
        for key, value in node.items():
            node[key] = _rename_addresses(value, suffix, services, collectors)
    elif isinstance(node, str):
        for name, namespace in services:
            node = node.replace(f"{name}.{namespace}.svc", f"{name}{suffix}.{namespace}.svc")
        for name in collectors:
            node = node.replace(f"{name}-collector", f"{name}{suffix}-collector")
    return node


def _rename_references(node: Any, suffix: str, names: set[str]) -> None:
    """What kustomize's nameSuffix does to references: ServiceAccount, ConfigMap/Secret and Ingress
    backend names follow the renamed objects (a reference to an object made elsewhere keeps its name)."""
    if isinstance(node, list):
        for item in node:
            _rename_references(item, suffix, names)
        return
    if not isinstance(node, dict):
        return
    if node.get("serviceAccountName") in names:
        node["serviceAccountName"] += suffix
    for key in ("configMapRef", "secretRef", "configMapKeyRef", "secretKeyRef", "configMap", "service"):
        ref = node.get(key)
        if isinstance(ref, dict) and ref.get("name") in names:
            ref["name"] += suffix
    secret = node.get("secret")
    if isinstance(secret, dict) and secret.get("secretName") in names:
        secret["secretName"] += suffix
    claim = node.get("persistentVolumeClaim")
    if isinstance(claim, dict) and claim.get("claimName") in names:
        claim["claimName"] += suffix
    # a claim's StorageClass, a Pod Identity association's ServiceAccount, an ACK reference ({from: {name}})
    for key in ("storageClassName", "serviceAccount"):
        if isinstance(node.get(key), str) and node[key] in names:
            node[key] += suffix
    reference = node.get("from")
    if isinstance(reference, dict) and reference.get("name") in names:
        reference["name"] += suffix
    for key, value in node.items():
        if key != "selector":
            _rename_references(value, suffix, names)


def context(docs: list[dict[str, Any]], catalogue: Catalogue) -> Context:
    resources = [Resource(doc, "overlays/prod", index=i) for i, doc in enumerate(docs)]
    return Context(overlay="overlays/prod", env="prod", resources=resources, catalogue=catalogue,
                   external=[item.as_resource("overlays/prod") for item in EXTERNAL],
                   extras={ENVIRONMENT_VALUES_KEY: PROD_VALUES})


def findings(ctx: Context) -> list[tuple[str, str, str]]:
    out = []
    for rule in policy_rules():
        for violation in rule.check(ctx, rule.options):
            out.append((rule.id, violation.resource.ref() if violation.resource else "",
                        format_path(violation.segments)))
    return out


def counting(calls: Counter[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return fn(*args, **kwargs)

    return counted


def calls_for(count: int, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of each counted helper while every policy rule checks COUNT copies."""
    calls: Counter[str] = Counter()
    with monkeypatch.context() as patch:
        for module, names in COUNTED.items():
            for name in names:
                counted = counting(calls, f"{module.__name__}.{name}", getattr(module, name))
                patch.setattr(module, name, counted)
        ctx = context(copies(baseline_docs(), count), catalogue)
        findings(ctx)
    return calls


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_copies_keep_their_references_and_each_finding_names_its_copy(catalogue: Catalogue) -> None:
    clean = copies(baseline_docs(), 4)
    assert findings(context(baseline_docs(), catalogue)) == findings(context(clean, catalogue)) == []

    broken = copies(baseline_docs(), 4)
    _named(broken, "ScaledObject", "vllm-c1")["spec"]["pollingInterval"] = 120
    del _named(broken, "Deployment", "vllm-c2")["spec"]["template"]["spec"]["tolerations"]

    # the polling interval of one copy; the untolerated taint of each of the 4 pools vllm-c2 may land on
    taint = ("gpu/nodepool-taints-tolerated", "spec.template.spec.taints[0]")
    assert findings(context(broken, catalogue)) == [
        ("scaling/polling-interval", "ScaledObject/inference/vllm-c1", "spec.pollingInterval"),
        *((taint[0], f"NodePool/gpu-inference-c{n}", taint[1]) for n in range(4)),
    ]


@pytest.mark.parametrize("count", [4, 16])
def test_gpu_nodepools_fall_in_one_class_worked_out_once(count: int, catalogue: Catalogue,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(copies(baseline_docs(), count), catalogue)
    calls: Counter[str] = Counter()
    counted = counting(calls, "nodepool_requirements", karpenter.nodepool_requirements)
    for module in (karpenter, gpu_facts):
        monkeypatch.setattr(module, "nodepool_requirements", counted)
    vllm = [t for t in gpu_facts.gpu_pod_templates(ctx) if t.resource.name.startswith("vllm-")]
    pool_names = [f"gpu-inference-c{n}" for n in range(count)]

    matched = [gpu_facts.nodepools_for(ctx, template) for template in vllm]

    pools = gpu_facts.gpu_pools(ctx)
    assert [[p.name for p in pools_of] for pools_of in matched] == [pool_names] * count
    assert len(pools.classes) == 1
    assert [m.pool.name for m in pools.classes[0].members] == pool_names
    assert len(pools.matches) == 1  # every vLLM pod has the same node affinity: one shape, matched once
    assert calls["nodepool_requirements"] == count  # once per NodePool, not once per (pod, NodePool)


def test_work_per_overlay_grows_linearly_with_its_resources(catalogue: Catalogue,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    by_count = {n: calls_for(n, catalogue, monkeypatch) for n in (2, 4, 8)}

    names = sorted(set().union(*by_count.values()))
    assert {"tools.validate.gpu.nodepool_requirements", "tools.validate.gpu.compatible",
            "tools.validate.workloads.selector_matches",
            "tools.validate.vllm_args.parse_container", "tools.validate.network._service_connections",
            "tools.validate.rules.aws._hops_settings"} <= set(names)
    for name in names:
        f = {n: by_count[n][name] for n in by_count}
        # a*N + b: doubling from 4 to 8 copies adds twice what doubling from 2 to 4 did
        assert f[8] - f[4] == 2 * (f[4] - f[2]), (name, f)
