"""The AWS side of each environment as rendered: IAM, Pod Identity, the pull-through cache, CloudFront and
prod's shared compile cache, each value from that environment's values."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from rendered_manifests import REPO_ROOT, Rendered, vllm_container

ENVIRONMENTS = ("dev", "prod")


def values(env: str) -> dict[str, str]:
    path = REPO_ROOT / "overlays" / env / "environment" / "environment.yaml"
    data: dict[str, str] = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
    return data


def statements(document: str) -> list[dict[str, Any]]:
    parsed: dict[str, Any] = json.loads(document)
    assert parsed["Version"] == "2012-10-17"
    return list(parsed["Statement"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_policies_name_the_environments_buckets_only(rendered: dict[str, Rendered], env: str) -> None:
    overlay = rendered[f"overlays/{env}"]
    models, responses = values(env)["modelsBucket"], values(env)["responsesBucket"]
    vllm = statements(overlay.one("Policy", "vllm-model-read")["spec"]["policyDocument"])
    gateway = statements(overlay.one("Policy", "gateway-responses")["spec"]["policyDocument"])

    assert [(s["Action"], s["Resource"]) for s in vllm] == [
        ("s3:ListBucket", f"arn:aws:s3:::{models}"),
        ("s3:GetObject", f"arn:aws:s3:::{models}/mistral-7b-instruct-awq/*"),
    ]
    assert vllm[0]["Condition"] == {
        "StringLike": {"s3:prefix": ["mistral-7b-instruct-awq", "mistral-7b-instruct-awq/*"]}
    }
    assert [(s["Action"], s["Resource"]) for s in gateway] == [
        ("s3:ListBucket", f"arn:aws:s3:::{responses}"),
        (["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{responses}/*"),
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_service_account_is_bound_to_its_role(rendered: dict[str, Rendered], env: str) -> None:
    overlay = rendered[f"overlays/{env}"]
    for name in ("vllm", "gateway"):
        association = overlay.one("PodIdentityAssociation", name)["spec"]
        assert association == {
            "clusterName": values(env)["clusterName"],
            "namespace": "inference",
            "serviceAccount": name,
            "roleRef": {"from": {"name": name}},
        }
        trust = statements(overlay.one("Role", name)["spec"]["assumeRolePolicyDocument"])
        assert trust[0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert trust[0]["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"] == name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_images_come_through_the_environments_registry(rendered: dict[str, Rendered], env: str) -> None:
    registry = f"{values(env)['accountId']}.dkr.ecr.{values(env)['awsRegion']}.amazonaws.com/"
    overlay = rendered[f"overlays/{env}"]
    gateway = overlay.one("Deployment", "gateway")["spec"]["template"]["spec"]
    images = [vllm_container(overlay)["image"], *(c["image"] for c in gateway["containers"])]
    images.append(overlay.one("OpenTelemetryCollector", "vllm-metrics")["spec"]["image"])
    assert all(image.startswith(registry) for image in images), images
    rule = overlay.one("PullThroughCacheRule", "docker-hub")["spec"]
    assert rule["credentialARN"] == (
        f"arn:aws:secretsmanager:{values(env)['awsRegion']}:{values(env)['accountId']}"
        ":secret:ecr-pullthroughcache/docker-hub"
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cloudfront_caches_static_assets_only(rendered: dict[str, Rendered], env: str) -> None:
    overlay = rendered[f"overlays/{env}"]
    config = overlay.one("Distribution", "gateway")["spec"]["distributionConfig"]
    assert config["aliases"]["items"] == [values(env)["gatewayHost"]]
    assert config["origins"]["items"][0]["domainName"] == values(env)["originHost"]
    caching_disabled = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert config["defaultCacheBehavior"]["cachePolicyID"] == caching_disabled
    assert [b["pathPattern"] for b in config["cacheBehaviors"]["items"]] == ["/static/*"]
    assert overlay.one("ConfigMap", "gateway-config")["data"]["GATEWAY_TRUSTED_HOPS"] == "2"


def test_prod_mounts_the_shared_compile_cache_dev_keeps_the_empty_dir(rendered: dict[str, Rendered]) -> None:
    prod, dev = rendered["overlays/prod"], rendered["overlays/dev"]
    claim = prod.one("PersistentVolumeClaim", "vllm-compile-cache")["spec"]
    storage_class = prod.one("StorageClass", "efs-compile-cache")
    assert claim["accessModes"] == ["ReadWriteMany"]
    assert storage_class["provisioner"] == "efs.csi.aws.com"
    assert storage_class["parameters"]["fileSystemId"] == values("prod")["efsFileSystemId"]
    mounts = {m["mountPath"]: m for m in vllm_container(prod)["volumeMounts"]}
    for path, sub_path in (("/cache/vllm", "vllm"), ("/cache/triton", "triton")):
        assert (mounts[path]["name"], mounts[path]["subPath"]) == ("compile-cache", sub_path)
    assert ("PersistentVolumeClaim", "vllm-compile-cache") not in dev.ids()
    assert {m["mountPath"] for m in vllm_container(dev)["volumeMounts"]} == {"/dev/shm", "/cache", "/tmp"}
