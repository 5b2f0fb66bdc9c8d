from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rendered_manifests import RENDER_TARGETS, Rendered, RenderError, render

WORKLOAD_IDS = {
    ("Namespace", "inference"),
    ("Namespace", "monitoring"),
    ("ServiceAccount", "vllm"),
    ("ServiceAccount", "gateway"),
    ("ServiceAccount", "vllm-metrics-collector"),
    ("ClusterRole", "vllm-metrics-collector"),
    ("ClusterRoleBinding", "vllm-metrics-collector"),
    ("ConfigMap", "gateway-config"),
    ("Deployment", "vllm"),
    ("Deployment", "gateway"),
    ("Service", "vllm"),
    ("Service", "vllm-pods"),
    ("Service", "gateway"),
    ("PodDisruptionBudget", "vllm"),
    ("PodDisruptionBudget", "gateway"),
    ("HorizontalPodAutoscaler", "gateway"),
    ("Ingress", "gateway"),
    ("NetworkPolicy", "default-deny-ingress"),
    ("NetworkPolicy", "gateway-ingress"),
    ("NetworkPolicy", "vllm-ingress"),
    ("ScaledObject", "vllm"),
    ("NodePool", "gpu-inference"),
    ("EC2NodeClass", "gpu-inference"),
    ("OpenTelemetryCollector", "vllm-metrics"),
    ("ServiceMonitor", "vllm"),
    ("ServiceMonitor", "gateway"),
    ("PodMonitor", "keda-operator"),
    ("PodMonitor", "karpenter"),
    ("PodMonitor", "vllm-metrics-collector"),
    ("PrometheusRule", "llm-inference"),
    ("ConfigMap", "dashboard-inference"),
    ("ConfigMap", "dashboard-scaling"),
    ("ConfigMap", "dashboard-nodes"),
    ("ConfigMap", "dashboard-gateway"),
    ("ConfigMap", "dashboard-gpu"),
    ("Policy", "vllm-model-read"),
    ("Policy", "gateway-responses"),
    ("Role", "vllm"),
    ("Role", "gateway"),
    ("PodIdentityAssociation", "vllm"),
    ("PodIdentityAssociation", "gateway"),
    ("PullThroughCacheRule", "docker-hub"),
    ("Distribution", "gateway"),
}
# prod's shared compile cache (overlays/prod/compile-cache.yaml)
COMPILE_CACHE_IDS = {("StorageClass", "efs-compile-cache"), ("PersistentVolumeClaim", "vllm-compile-cache")}
APPS_IDS = {
    ("AppProject", "llm-inference"),
    ("Application", "karpenter"),
    ("Application", "keda"),
    ("Application", "keda-otel-scaler"),
    ("Application", "opentelemetry-operator"),
    ("Application", "kube-prometheus-stack"),
    ("Application", "dcgm-exporter"),
    ("Application", "inference"),
    ("Application", "ack-iam-controller"),
    ("Application", "ack-eks-controller"),
    ("Application", "ack-ecr-controller"),
    ("Application", "ack-cloudfront-controller"),
}
CLUSTER_IDS = {("AppProject", "bootstrap"), ("Application", "root")}

EXPECTED_IDS = {
    "overlays/dev": WORKLOAD_IDS,
    "overlays/prod": WORKLOAD_IDS | COMPILE_CACHE_IDS,
    "apps/dev": APPS_IDS,
    "apps/prod": APPS_IDS,
    "clusters/dev": CLUSTER_IDS,
    "clusters/prod": CLUSTER_IDS,
}

# Words base/ uses as placeholders until an overlay's environment values replace them.
PLACEHOLDERS = (
    "cluster-name",
    "models-bucket/",
    "responses-bucket",
    "aws-region",
    "000000000000",
    "certificate-id",
    "environment-name",
    "karpenter-node-role",
    "repository-url",
    "git-revision",
    "gateway.example.com",
)


def test_render_targets_are_every_environment() -> None:
    assert set(EXPECTED_IDS) == set(RENDER_TARGETS)


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_target_renders_exactly_its_resources(rendered: dict[str, Rendered], target: str) -> None:
    result = rendered[target]
    assert result.ids() == EXPECTED_IDS[target]
    assert len(result.documents) == len(EXPECTED_IDS[target])


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_no_placeholder_reaches_a_rendered_target(rendered: dict[str, Rendered], target: str) -> None:
    text = yaml.safe_dump_all(rendered[target].documents)
    leaked = [word for word in PLACEHOLDERS if word in text]
    assert leaked == []


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_local_config_never_rendered(rendered: dict[str, Rendered], target: str) -> None:
    local = [
        doc["metadata"]["name"]
        for doc in rendered[target].documents
        if doc["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config") == "true"
    ]
    assert local == []


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_removed_vllm_metric_is_never_used(rendered: dict[str, Rendered], target: str) -> None:
    assert "gpu_cache_usage_perc" not in yaml.safe_dump_all(rendered[target].documents)


def test_environment_values_land_per_environment(rendered: dict[str, Rendered]) -> None:
    for env, account in (("dev", "111111111111"), ("prod", "222222222222")):
        result = rendered[f"overlays/{env}"]
        node_class = result.one("EC2NodeClass", "gpu-inference")["spec"]
        assert node_class["role"] == f"KarpenterNodeRole-llm-inference-{env}"
        assert node_class["subnetSelectorTerms"] == [
            {"tags": {"karpenter.sh/discovery": f"llm-inference-{env}"}}
        ]
        assert node_class["securityGroupSelectorTerms"] == node_class["subnetSelectorTerms"]
        assert node_class["tags"]["environment"] == env
        gateway_config = result.one("ConfigMap", "gateway-config")["data"]
        host = result.one("Ingress", "gateway")["spec"]["rules"][0]["host"]
        assert gateway_config == {
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": "8080",
            "GATEWAY_LOG_LEVEL": "info",
            "GATEWAY_SHUTDOWN_TIMEOUT": "30",
            "GATEWAY_KEEP_ALIVE_SECONDS": "310",
            "GATEWAY_UPSTREAM_URL": "http://vllm.inference.svc:8000",
            "GATEWAY_UPSTREAM_DISCOVERY_DNS": "vllm-pods.inference.svc.cluster.local",
            "GATEWAY_HOLD_MAX_REQUESTS": "128",
            "GATEWAY_HOLD_TIMEOUT_SECONDS": "180",
            "GATEWAY_HOLD_KEEPALIVE_SECONDS": "15",
            "GATEWAY_MODEL": "mistral-7b-instruct",
            "GATEWAY_ALLOWED_MODELS": "mistral-7b-instruct",
            "GATEWAY_MAX_TOKENS": "1024",
            "GATEWAY_MODEL_MAX_LEN": "4096",
            "GATEWAY_TRUSTED_HOPS": "2",
            "GATEWAY_S3_BUCKET": f"eks-llm-inference-responses-{account}",
            "GATEWAY_S3_REGION": "us-east-1",
            "GATEWAY_PUBLIC_URL": f"https://{host}",
            "GATEWAY_PROMETHEUS_URL": "http://kube-prometheus-stack-prometheus.prometheus.svc:9090",
        }
        assert host == {"dev": "llm-dev.example.com", "prod": "llm.example.com"}[env]
        gateway_pod = result.one("Deployment", "gateway")["spec"]["template"]["spec"]
        assert [container["image"] for container in gateway_pod["containers"]] == [
            f"{account}.dkr.ecr.us-east-1.amazonaws.com/eks-llm-inference-gateway:"
            "83a9aec502916ab1f056d836692ef8ad2f8e4379"]
        annotations = result.one("Ingress", "gateway")["metadata"]["annotations"]
        assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith(
            f"arn:aws:acm:us-east-1:{account}:certificate/"
        )


def test_broken_kustomization_reports_kustomize_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RenderError, match=r"missing\.yaml"):
        render(str(broken))


def test_the_gateway_discovers_the_vllm_pods_through_the_headless_service(
        rendered: dict[str, Rendered]) -> None:
    for env in ("dev", "prod"):
        result = rendered[f"overlays/{env}"]
        service = result.one("Service", "vllm")["spec"]
        pods = result.one("Service", "vllm-pods")["spec"]
        assert pods["clusterIP"] == "None"
        assert pods["selector"] == service["selector"]
        assert pods["ports"] == service["ports"]
        config = result.one("ConfigMap", "gateway-config")["data"]
        namespace = result.one("Service", "vllm-pods")["metadata"]["namespace"]
        assert config["GATEWAY_UPSTREAM_DISCOVERY_DNS"] == f"vllm-pods.{namespace}.svc.cluster.local"
        # A held non-streaming request sends nothing until answered: the ALB must not time it out first.
        annotations = result.one("Ingress", "gateway")["metadata"]["annotations"]
        idle = int(annotations["alb.ingress.kubernetes.io/load-balancer-attributes"].split("=")[1])
        assert float(config["GATEWAY_HOLD_TIMEOUT_SECONDS"]) < idle
        assert float(config["GATEWAY_HOLD_KEEPALIVE_SECONDS"]) < idle
        probe = result.one("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
        assert probe["readinessProbe"]["httpGet"]["path"] == "/readyz"
