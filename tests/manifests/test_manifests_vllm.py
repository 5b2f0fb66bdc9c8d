from __future__ import annotations

import pytest
from rendered_manifests import Rendered, flag_values, vllm_container

OVERLAYS = ("overlays/dev", "overlays/prod")

# Compute capability >= 8.0, as Karpenter names them (awq_marlin's Marlin kernels).
MARLIN_CAPABLE_GPUS = {"a10g", "l4", "l40s", "a100", "h100", "h200", "l40", "a10"}

EXPECTED_FLAGS = {
    "--served-model-name": "mistral-7b-instruct",
    "--load-format": "runai_streamer",
    "--quantization": "awq_marlin",
    "--max-model-len": "4096",
    "--max-num-seqs": "32",
    "--gpu-memory-utilization": "0.90",
    "--shutdown-timeout": "90",
    "--port": "8000",
}


@pytest.mark.parametrize(
    ("target", "account"), [("overlays/dev", "111111111111"), ("overlays/prod", "222222222222")]
)
def test_vllm_args_are_the_reference_flags(rendered: dict[str, Rendered], target: str, account: str) -> None:
    container = vllm_container(rendered[target])
    flags = flag_values(container["args"])
    assert flags == {
        "--model": f"s3://eks-llm-inference-models-{account}/mistral-7b-instruct-awq",
        **EXPECTED_FLAGS,
    }
    assert container["command"] == ["vllm", "serve"]
    registry = f"{account}.dkr.ecr.us-east-1.amazonaws.com"
    assert container["image"] == f"{registry}/docker-hub/vllm/vllm-openai:v0.32.0"


@pytest.mark.parametrize("target", OVERLAYS)
def test_vllm_deployment_leaves_replicas_to_keda(rendered: dict[str, Rendered], target: str) -> None:
    deployment = rendered[target].one("Deployment", "vllm")
    assert "replicas" not in deployment["spec"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["karpenter.sh/do-not-disrupt"] == "true"


@pytest.mark.parametrize("target", OVERLAYS)
def test_vllm_gets_exactly_one_capable_gpu(rendered: dict[str, Rendered], target: str) -> None:
    pod_spec = rendered[target].one("Deployment", "vllm")["spec"]["template"]["spec"]
    resources = vllm_container(rendered[target])["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec[
        "tolerations"
    ]
    (term,) = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    (gpu_rule,) = [e for e in term["matchExpressions"] if e["key"] == "karpenter.k8s.aws/instance-gpu-name"]
    assert gpu_rule["operator"] == "In"
    assert gpu_rule["values"] == ["a10g", "l4", "l40s", "a100", "h100"]
    assert set(gpu_rule["values"]) <= MARLIN_CAPABLE_GPUS


@pytest.mark.parametrize("target", OVERLAYS)
def test_vllm_drains_within_grace_and_spot_notice(rendered: dict[str, Rendered], target: str) -> None:
    pod_spec = rendered[target].one("Deployment", "vllm")["spec"]["template"]["spec"]
    container = vllm_container(rendered[target])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown_timeout = int(flag_values(container["args"])["--shutdown-timeout"])
    grace = pod_spec["terminationGracePeriodSeconds"]
    assert (pre_stop, shutdown_timeout, grace) == (5, 90, 100)
    assert pre_stop + shutdown_timeout <= grace < 120


@pytest.mark.parametrize("target", OVERLAYS)
def test_vllm_probes_cover_cold_start(rendered: dict[str, Rendered], target: str) -> None:
    container = vllm_container(rendered[target])
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 180
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("target", OVERLAYS)
def test_vllm_runs_restricted(rendered: dict[str, Rendered], target: str) -> None:
    pod_spec = rendered[target].one("Deployment", "vllm")["spec"]["template"]["spec"]
    container = vllm_container(rendered[target])
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec["serviceAccountName"] == "vllm"
    env_names = {item["name"] for item in container["env"]}
    static_secrets = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert not env_names & static_secrets
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    shared_cache = {"/cache/vllm": "compile-cache", "/cache/triton": "compile-cache"}
    expected = {"/dev/shm": "dshm", "/cache": "cache", "/tmp": "tmp"}
    assert mounts == (expected | shared_cache if target == "overlays/prod" else expected)


@pytest.mark.parametrize("target", OVERLAYS)
def test_only_gateway_collector_and_prometheus_reach_vllm(rendered: dict[str, Rendered], target: str) -> None:
    policy = rendered[target].one("NetworkPolicy", "vllm-ingress")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm"}}
    sources = [rule["from"] for rule in policy["ingress"]]
    assert sources == [
        [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}],
        [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm-metrics-collector"}},
            }
        ],
        [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    ]
    assert all(rule["ports"] == [{"protocol": "TCP", "port": 8000}] for rule in policy["ingress"])
    service_ports = rendered[target].one("Service", "vllm")["spec"]["ports"]
    assert service_ports == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
