"""Properties over a realistic baseline (fixtures/baseline: the repository's rendered dev and prod overlays
and the Applications deploying them):

- the baseline, and valid variations of it, are clean under every rule;
- each breaking change to one cross-resource invariant yields exactly that rule's id.

gpu/vllm-flags-accepted is left out here: each distinct argument list costs one vLLM start-up (~20 s);
its fixtures cover it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_fixtures import FIXTURES, policy_rules, resources_from, run_all

from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.config import load_config
from tools.validate.environment_values import EXTRAS_KEY as ENVIRONMENT_VALUES_KEY
from tools.validate.environment_values import environment_values
from tools.validate.loader import Limits
from tools.validate.model import Context
from tools.validate.rules import default_registry

REPO = Path(__file__).resolve().parents[3]
RULES = [r for r in policy_rules() if r.id != "gpu/vllm-flags-accepted"]
ENV_OPTIONS: dict[str, dict[str, Any]] = {
    "prod": {"min_warm_replicas": 1, "require_on_demand_fallback": True, "forbid_hf_token": True},
    "dev": {"min_warm_replicas": 0, "require_on_demand_fallback": False, "allowed_revisions": ["main"]},
}
CATALOGUE: Catalogue = load_catalogue()
# What the repository's gate.yaml declares external (a Helm chart's Services), as the engine passes it.
EXTERNAL = load_config(REPO / "gate.yaml", default_registry()).external
# Each environment's values, as the engine reads them for overlays/<env> (the aws rules compare with them).
ENVIRONMENT_VALUES = {
    env: environment_values(REPO / "overlays" / env, REPO, Limits()) for env in ("dev", "prod")
}
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Docs = list[dict[str, Any]]


def _load(name: str) -> Docs:
    with (FIXTURES / "baseline" / name).open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


BASELINES = {env: (_load(f"{env}.yaml"), _load(f"apps-{env}.yaml")) for env in ("dev", "prod")}


def violations(env: str, docs: Docs, apps: Docs) -> set[tuple[str, str, str]]:
    ctx = Context(
        overlay=f"overlays/{env}",
        env=env,
        resources=resources_from(docs, f"overlays/{env}"),
        catalogue=CATALOGUE,
        extras={
            "applications": resources_from(apps, f"apps/{env}"),
            ENVIRONMENT_VALUES_KEY: ENVIRONMENT_VALUES[env],
        },
        external=[external.as_resource(f"overlays/{env}") for external in EXTERNAL],
    )
    return run_all(RULES, ctx, ENV_OPTIONS[env])


def baseline(env: str) -> tuple[Docs, Docs]:
    docs, apps = BASELINES[env]
    return copy.deepcopy(docs), copy.deepcopy(apps)


def find(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def vllm_container(docs: Docs) -> dict[str, Any]:
    return find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]


def set_flag(docs: Docs, flag: str, value: str) -> None:
    args = vllm_container(docs)["args"]
    args[args.index(flag) + 1] = value


def flag(docs: Docs, name: str) -> int:
    args = vllm_container(docs)["args"]
    return int(args[args.index(name) + 1])


def gpu_names_requirement(docs: Docs) -> dict[str, Any]:
    reqs = find(docs, "NodePool", "gpu-inference")["spec"]["template"]["spec"]["requirements"]
    return next(r for r in reqs if r["key"] == "karpenter.k8s.aws/instance-gpu-name")


def pod_gpu_names_expression(docs: Docs) -> dict[str, Any]:
    spec = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return next(e for e in terms[0]["matchExpressions"] if e["key"] == "karpenter.k8s.aws/instance-gpu-name")


def scaled_object(docs: Docs) -> dict[str, Any]:
    return find(docs, "ScaledObject", "vllm")


def inference_app(apps: Docs) -> dict[str, Any]:
    return find(apps, "Application", "inference")


ENVS = st.sampled_from(["dev", "prod"])


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_baseline_is_clean(env: str) -> None:
    assert violations(env, *baseline(env)) == set()


# ------------------------------------------------------------------------------------ valid variations


@st.composite
def valid_variation(draw: st.DrawFn) -> tuple[str, Docs, Docs]:
    env = draw(ENVS)
    docs, apps = baseline(env)
    so = scaled_object(docs)
    pool = find(docs, "NodePool", "gpu-inference")
    gpu_limit = int(pool["spec"]["limits"]["nvidia.com/gpu"])
    so["spec"]["maxReplicaCount"] = draw(st.integers(max(so["spec"]["minReplicaCount"], 1), gpu_limit))
    seqs = draw(st.integers(8, 32))  # 32 x 4096 tokens fits the smallest GPU admitted (L4)
    set_flag(docs, "--max-num-seqs", str(seqs))
    running_target = draw(st.integers(1, seqs - 1))
    so["spec"]["triggers"][0]["metadata"]["targetValue"] = str(running_target)
    so["spec"]["advanced"]["scalingModifiers"]["target"] = str(draw(st.integers(1, seqs - 1)))
    # At least one GPU sold in 1-GPU instances: the 8-GPU p4d/p5 alone exceed dev's GPU limit.
    names = draw(st.lists(st.sampled_from(["a10g", "l4", "l40s"]), min_size=1, unique=True))
    names += draw(st.lists(st.sampled_from(["a100", "h100"]), unique=True))
    gpu_names_requirement(docs)["values"] = names
    pod_gpu_names_expression(docs)["values"] = names
    pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    drain = 5 + flag(docs, "--shutdown-timeout")
    pod["terminationGracePeriodSeconds"] = draw(st.integers(drain, 119))
    pod["tolerations"].append({"key": draw(st.sampled_from(["team", "dedicated"])), "operator": "Exists"})
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = draw(st.integers(121, 900))
    vllm_container(docs)["startupProbe"]["failureThreshold"] = draw(st.integers(12, 60))
    return env, docs, apps


@PROPERTY
@given(valid_variation())
def test_valid_variations_stay_clean(case: tuple[str, Docs, Docs]) -> None:
    env, docs, apps = case
    assert violations(env, docs, apps) == set()


# ------------------------------------------------------------------------------------ breaking changes

Breaker = Callable[[st.DrawFn, Docs, Docs], None]


def _max_replicas_over_gpu_limit(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    limit = int(find(docs, "NodePool", "gpu-inference")["spec"]["limits"]["nvidia.com/gpu"])
    scaled_object(docs)["spec"]["maxReplicaCount"] = draw(st.integers(limit + 1, limit + 20))


def _untolerated_taint(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    taints = find(docs, "NodePool", "gpu-inference")["spec"]["template"]["spec"]["taints"]
    key = draw(st.sampled_from(["dedicated", "team", "example.com/reserved"]))
    taints.append({"key": key, "value": "llm", "effect": draw(st.sampled_from(["NoSchedule", "NoExecute"]))})


def _pre_ampere_gpu_added(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    old = draw(st.sampled_from(["t4", "v100"]))
    gpu_names_requirement(docs)["values"].append(old)
    pod_gpu_names_expression(docs)["values"].append(old)


def _running_target_at_or_above_max_num_seqs(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    seqs = flag(docs, "--max-num-seqs")
    scaled_object(docs)["spec"]["triggers"][0]["metadata"]["targetValue"] = str(
        draw(st.integers(seqs, 4 * seqs))
    )


def _formula_with_unknown_trigger(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    unknown = draw(st.sampled_from(["queued", "waitng", "kv_cache", "running_total"]))
    modifiers = scaled_object(docs)["spec"]["advanced"]["scalingModifiers"]
    # Only `waiting` is misnamed: the rest of the formula (dev's wake signal among it) stays.
    modifiers["formula"] = modifiers["formula"].replace("waiting", unknown)


def _grace_period_shortened(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    drain = 5 + flag(docs, "--shutdown-timeout")
    pod = find(docs, "Deployment", "vllm")["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = draw(st.integers(0, drain - 1))


def _startup_probe_too_short(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    probe = vllm_container(docs)["startupProbe"]
    probe["failureThreshold"] = draw(st.integers(1, 120 // int(probe["periodSeconds"]) - 1))


def _kv_cache_outgrows_gpu(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    set_flag(docs, "--max-num-seqs", str(draw(st.integers(40, 128))))


def _removed_metric(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    metric = draw(
        st.sampled_from(["vllm_gpu_cache_usage_perc", "vllm_num_requests_swapped", "vllm_queue_size"])
    )
    scaled_object(docs)["spec"]["triggers"][1]["metadata"]["metricQuery"] = f"sum({metric})"


def _replicas_without_respect_ignore(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    find(docs, "Deployment", "vllm")["spec"]["replicas"] = draw(st.integers(1, 4))
    options = inference_app(apps)["spec"]["syncPolicy"]["syncOptions"]
    options.remove("RespectIgnoreDifferences=true")


def _workload_before_its_crds(draw: st.DrawFn, docs: Docs, apps: Docs) -> None:
    provider = draw(st.sampled_from(["karpenter", "keda", "opentelemetry-operator"]))
    wave = int(find(apps, "Application", provider)["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    annotations = inference_app(apps)["metadata"].setdefault("annotations", {})
    annotations["argocd.argoproj.io/sync-wave"] = str(draw(st.integers(wave - 3, wave)))


BREAKERS: dict[str, Breaker] = {
    "scaling/max-replicas-fit-nodepool-limits": _max_replicas_over_gpu_limit,
    "gpu/nodepool-taints-tolerated": _untolerated_taint,
    "gpu/quantization-supported-by-nodepool-gpus": _pre_ampere_gpu_added,
    "scaling/running-target-below-max-num-seqs": _running_target_at_or_above_max_num_seqs,
    "scaling/formula-valid": _formula_with_unknown_trigger,
    "spot/termination-grace-covers-drain": _grace_period_shortened,
    "scaling/startup-probe-covers-cold-start": _startup_probe_too_short,
    "gpu/model-fits-gpu-memory": _kv_cache_outgrows_gpu,
    "scaling/trigger-metric-exported": _removed_metric,
    "gitops/scaled-replicas-ignored": _replicas_without_respect_ignore,
    "gitops/sync-wave-order": _workload_before_its_crds,
}


@pytest.mark.parametrize("rule_id", sorted(BREAKERS))
def test_breaking_change_yields_exactly_its_rule(rule_id: str) -> None:
    @PROPERTY
    @given(env=ENVS, data=st.data())
    def check(env: str, data: st.DataObject) -> None:
        docs, apps = baseline(env)
        BREAKERS[rule_id](data.draw, docs, apps)
        found = violations(env, docs, apps)
        assert found, f"{rule_id}: the breaking change went unnoticed"
        assert {rule for rule, _, _ in found} == {rule_id}

    check()
