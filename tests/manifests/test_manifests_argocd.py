from __future__ import annotations

import pytest
from rendered_manifests import Rendered

REPOSITORY = "https://github.com/example-org/eks-llm-inference.git"
ENVIRONMENTS = ("dev", "prod")
MOVING_REVISIONS = {"", "HEAD", "master"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inference_app_ignores_replicas(rendered: dict[str, Rendered], env: str) -> None:
    app = rendered[f"apps/{env}"].one("Application", "inference")
    assert app["spec"]["source"]["path"] == f"overlays/{env}"
    assert app["spec"]["source"]["repoURL"] == REPOSITORY
    assert {
        "group": "apps",
        "kind": "Deployment",
        "name": "vllm",
        "namespace": "inference",
        "jsonPointers": ["/spec/replicas"],
    } in app["spec"]["ignoreDifferences"]
    sync_options = app["spec"]["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in sync_options
    assert "SkipDryRunOnMissingResource=true" in sync_options


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sync_waves_put_controllers_first(rendered: dict[str, Rendered], env: str) -> None:
    result = rendered[f"apps/{env}"]
    waves = {
        name: int(result.one("Application", name)["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for kind, name in result.ids()
        if kind == "Application"
    }
    assert waves == {
        "karpenter": -2,
        "keda": -2,
        "opentelemetry-operator": -2,
        "kube-prometheus-stack": -2,
        "ack-iam-controller": -2,
        "ack-eks-controller": -2,
        "ack-ecr-controller": -2,
        "ack-cloudfront-controller": -2,
        "keda-otel-scaler": -1,
        "dcgm-exporter": -1,
        "inference": 0,
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_charts_are_pinned(rendered: dict[str, Rendered], env: str) -> None:
    result = rendered[f"apps/{env}"]
    charts = {
        name: (source["repoURL"], source["chart"], source["targetRevision"])
        for kind, name in result.ids()
        if kind == "Application" and "chart" in (source := result.one(kind, name)["spec"]["source"])
    }
    assert charts == {
        "karpenter": ("public.ecr.aws/karpenter", "karpenter", "1.14.1"),
        "keda": ("https://kedify.github.io/charts", "keda", "v2.17.1-0"),
        "keda-otel-scaler": ("ghcr.io/kedify/charts", "otel-add-on", "v0.0.13"),
        "opentelemetry-operator": (
            "https://open-telemetry.github.io/opentelemetry-helm-charts",
            "opentelemetry-operator",
            "0.115.0",
        ),
        "kube-prometheus-stack": (
            "https://prometheus-community.github.io/helm-charts",
            "kube-prometheus-stack",
            "88.5.0",
        ),
        "dcgm-exporter": ("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.1.1"),
        "ack-iam-controller": ("public.ecr.aws/aws-controllers-k8s", "iam-chart", "1.8.1"),
        "ack-eks-controller": ("public.ecr.aws/aws-controllers-k8s", "eks-chart", "1.20.0"),
        "ack-ecr-controller": ("public.ecr.aws/aws-controllers-k8s", "ecr-chart", "1.8.1"),
        "ack-cloudfront-controller": ("public.ecr.aws/aws-controllers-k8s", "cloudfront-chart", "1.7.1"),
    }
    for service in ("iam", "eks", "ecr", "cloudfront"):
        name = f"ack-{service}-controller"
        values = result.one("Application", name)["spec"]["source"]["helm"]["valuesObject"]
        assert values["aws"] == {"region": "us-east-1"}
    karpenter_settings = result.one("Application", "karpenter")["spec"]["source"]["helm"]["valuesObject"][
        "settings"
    ]
    assert karpenter_settings == {
        "clusterName": f"llm-inference-{env}",
        "interruptionQueue": f"llm-inference-{env}",
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_project_restricts_sources_and_destinations(rendered: dict[str, Rendered], env: str) -> None:
    project = rendered[f"apps/{env}"].one("AppProject", "llm-inference")["spec"]
    assert project["sourceRepos"][0] == REPOSITORY
    assert "*" not in project["sourceRepos"]
    assert {d["namespace"] for d in project["destinations"]} == {
        "inference",
        "monitoring",
        "karpenter",
        "keda",
        "opentelemetry-operator-system",
        "prometheus",
        "dcgm-exporter",
        "kube-system",
        "kube-node-lease",
        "ack-system",
    }
    assert all(d["server"] == "https://kubernetes.default.svc" for d in project["destinations"])
    for kind, name in rendered[f"apps/{env}"].ids():
        if kind == "Application":
            assert rendered[f"apps/{env}"].one(kind, name)["spec"]["project"] == "llm-inference"


@pytest.mark.parametrize(("env", "prune"), [("dev", True), ("prod", False)])
def test_sync_policy_per_environment(rendered: dict[str, Rendered], env: str, prune: bool) -> None:
    for target in (f"apps/{env}", f"clusters/{env}"):
        result = rendered[target]
        for kind, name in result.ids():
            if kind == "Application":
                automated = result.one(kind, name)["spec"]["syncPolicy"]["automated"]
                assert automated == {"enabled": True, "prune": prune, "selfHeal": True}


@pytest.mark.parametrize(("env", "revision"), [("dev", "main"), ("prod", "v0.1.0")])
def test_root_app_points_at_its_apps(rendered: dict[str, Rendered], env: str, revision: str) -> None:
    root = rendered[f"clusters/{env}"].one("Application", "root")["spec"]
    assert root["source"] == {"repoURL": REPOSITORY, "path": f"apps/{env}", "targetRevision": revision}
    assert root["project"] == "bootstrap"
    inference = rendered[f"apps/{env}"].one("Application", "inference")["spec"]["source"]
    assert inference["targetRevision"] == revision


def test_prod_runs_a_release_not_a_branch(rendered: dict[str, Rendered]) -> None:
    root = rendered["clusters/prod"].one("Application", "root")
    inference = rendered["apps/prod"].one("Application", "inference")
    root_revision = root["spec"]["source"]["targetRevision"]
    inference_revision = inference["spec"]["source"]["targetRevision"]
    assert root_revision not in MOVING_REVISIONS | {"main"}
    assert inference_revision == root_revision == "v0.1.0"
