from __future__ import annotations

import pytest
from kubernetes.utils import parse_quantity
from rendered_manifests import Rendered

OVERLAYS = ("overlays/dev", "overlays/prod")

# Compute capability >= 8.0 (A10G 8.6, L4 8.9, L40S 8.9, A100 8.0, H100 9.0, ...).
MARLIN_CAPABLE_GPUS = {"a10g", "l4", "l40s", "a100", "h100", "h200", "l40", "a10"}
TOO_OLD_GPUS = {"t4", "v100", "k80", "m60", "t4g"}


def requirement(node_pool: dict, key: str) -> dict:
    (match,) = [r for r in node_pool["spec"]["template"]["spec"]["requirements"] if r["key"] == key]
    return match


@pytest.mark.parametrize(
    ("target", "min_replicas", "max_replicas", "fallback_replicas"),
    [("overlays/dev", 0, 2, 1), ("overlays/prod", 2, 10, 2)],
)
def test_scaledobject_replica_bounds(
    rendered: dict[str, Rendered], target: str, min_replicas: int, max_replicas: int, fallback_replicas: int
) -> None:
    spec = rendered[target].one("ScaledObject", "vllm")["spec"]
    assert spec["minReplicaCount"] == min_replicas
    assert spec["maxReplicaCount"] == max_replicas
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": fallback_replicas}
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"}


@pytest.mark.parametrize("target", OVERLAYS)
def test_scaledobject_triggers_and_formula(rendered: dict[str, Rendered], target: str) -> None:
    spec = rendered[target].one("ScaledObject", "vllm")["spec"]
    assert spec["triggers"] == [
        {
            "type": "kedify-otel",
            "name": "running",
            "metadata": {
                "scalerAddress": "keda-otel-scaler.keda.svc:4318",
                "metricQuery": "sum(vllm_num_requests_running)",
                "operationOverTime": "last_one",
                "targetValue": "25",
            },
        },
        {
            "type": "kedify-otel",
            "name": "waiting",
            "metadata": {
                "scalerAddress": "keda-otel-scaler.keda.svc:4318",
                "metricQuery": "sum(vllm_num_requests_waiting)",
                "operationOverTime": "last_one",
                "targetValue": "5",
            },
        },
        {
            "type": "kedify-otel",
            "name": "unserved",
            "metadata": {
                "scalerAddress": "keda-otel-scaler.keda.svc:4318",
                "metricQuery": "sum(gateway_upstream_unavailable_total)",
                "operationOverTime": "rate",
                "targetValue": "1",
            },
        },
    ]
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "running + (waiting * 10) + (unserved * 25)"
    assert modifiers["target"] == "25"
    assert modifiers["activationTarget"] == "0"


@pytest.mark.parametrize("target", OVERLAYS)
def test_scaledobject_hpa_behavior(rendered: dict[str, Rendered], target: str) -> None:
    advanced = rendered[target].one("ScaledObject", "vllm")["spec"]["advanced"]
    behavior = advanced["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 0,
        "policies": [
            {"type": "Percent", "value": 900, "periodSeconds": 15},
            {"type": "Pods", "value": 4, "periodSeconds": 15},
        ],
        "selectPolicy": "Max",
    }
    # Longer than a ~2 minute cold start.
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


@pytest.mark.parametrize(
    ("target", "capacity_types"), [("overlays/dev", ["spot"]), ("overlays/prod", ["spot", "on-demand"])]
)
def test_nodepool_capacity_types(
    rendered: dict[str, Rendered], target: str, capacity_types: list[str]
) -> None:
    node_pool = rendered[target].one("NodePool", "gpu-inference")
    capacity = requirement(node_pool, "karpenter.sh/capacity-type")
    assert capacity == {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity_types}


@pytest.mark.parametrize("target", OVERLAYS)
def test_nodepool_admits_only_marlin_capable_gpus(rendered: dict[str, Rendered], target: str) -> None:
    node_pool = rendered[target].one("NodePool", "gpu-inference")
    gpu_names = requirement(node_pool, "karpenter.k8s.aws/instance-gpu-name")
    assert gpu_names["operator"] == "In"
    assert gpu_names["values"] == ["a10g", "l4", "l40s", "a100", "h100"]
    assert set(gpu_names["values"]) <= MARLIN_CAPABLE_GPUS
    assert not set(gpu_names["values"]) & TOO_OLD_GPUS
    assert requirement(node_pool, "karpenter.k8s.aws/instance-category")["values"] == ["g", "p"]
    assert requirement(node_pool, "karpenter.k8s.aws/instance-gpu-manufacturer")["values"] == ["nvidia"]
    assert requirement(node_pool, "kubernetes.io/arch")["values"] == ["amd64"]
    template = node_pool["spec"]["template"]["spec"]
    assert template["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert template["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "gpu-inference",
    }


@pytest.mark.parametrize(
    ("target", "gpu_limit", "budgets"),
    [
        ("overlays/dev", "3", [{"nodes": "10%"}]),
        (
            "overlays/prod",
            "12",
            [
                {"nodes": "1"},
                {"nodes": "0", "reasons": ["Drifted"], "schedule": "0 7 * * mon-fri", "duration": "12h"},
            ],
        ),
    ],
)
def test_nodepool_limits_and_disruption(
    rendered: dict[str, Rendered], target: str, gpu_limit: str, budgets: list[dict]
) -> None:
    spec = rendered[target].one("NodePool", "gpu-inference")["spec"]
    assert spec["limits"]["nvidia.com/gpu"] == gpu_limit
    assert spec["disruption"]["consolidationPolicy"] in {"WhenEmpty", "WhenEmptyOrUnderutilized"}
    assert spec["disruption"]["budgets"] == budgets
    # One GPU per replica: the KEDA maximum plus a rolling-update surge must fit.
    max_replicas = rendered[target].one("ScaledObject", "vllm")["spec"]["maxReplicaCount"]
    assert parse_quantity(gpu_limit) >= max_replicas + 1


@pytest.mark.parametrize("target", OVERLAYS)
def test_ec2nodeclass_bottlerocket_soci_imdsv2(rendered: dict[str, Rendered], target: str) -> None:
    spec = rendered[target].one("EC2NodeClass", "gpu-inference")["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "bottlerocket@v1.53.0"}]
    assert 'snapshotter = "soci"' in spec["userData"]
    assert 'pull-mode = "parallel-pull-unpack"' in spec["userData"]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert all(device["ebs"]["encrypted"] is True for device in spec["blockDeviceMappings"])


@pytest.mark.parametrize("target", OVERLAYS)
def test_collector_renames_vllm_metrics_for_the_scaler(rendered: dict[str, Rendered], target: str) -> None:
    config = rendered[target].one("OpenTelemetryCollector", "vllm-metrics")["spec"]["config"]
    scrape, gateway = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["inference"]}}]
    assert scrape["metric_relabel_configs"][0]["regex"] == (
        "vllm:(num_requests_running|num_requests_waiting|kv_cache_usage_perc)"
    )
    # The gateway's pods, for the one counter that exists while vLLM is at zero replicas.
    assert gateway["job_name"] == "gateway"
    assert gateway["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["inference"]}}]
    assert gateway["relabel_configs"][0] == {
        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "regex": "gateway",
        "action": "keep",
    }
    assert gateway["metric_relabel_configs"] == [
        {"source_labels": ["__name__"], "regex": "gateway_upstream_unavailable_total", "action": "keep"}
    ]
    statements = config["processors"]["transform/vllm-names"]["metric_statements"]
    assert statements == [
        {
            "context": "metric",
            "statements": [
                'replace_pattern(name, "^vllm:", "vllm_")',
                'set(name, "gateway_upstream_unavailable_total")'
                ' where name == "gateway_upstream_unavailable"',
            ],
        }
    ]
    assert config["exporters"]["otlp/kedify"]["endpoint"] == "keda-otel-scaler.keda.svc:4317"
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["otlp/kedify"]
