"""The ACK kinds (iam, eks, ecr, cloudfront .services.k8s.aws): the rendered overlays pass both the upstream
CRDs kept beside the checkout (shared/crds/ack, read by path, never copied) and the project's own schemas;
the same mistakes fail both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from schema_helpers import REPO_ROOT, edited, example, found, renamed, resource, upstream_crds

from tools.validate.cli import main
from tools.validate.model import Resource
from tools.validate.schema import SchemaValidator

ACK_KINDS = {
    ("iam.services.k8s.aws/v1alpha1", "Policy"),
    ("iam.services.k8s.aws/v1alpha1", "Role"),
    ("eks.services.k8s.aws/v1alpha1", "PodIdentityAssociation"),
    ("ecr.services.k8s.aws/v1alpha1", "PullThroughCacheRule"),
    ("cloudfront.services.k8s.aws/v1alpha1", "Distribution"),
}
EXAMPLES = ("iampolicy", "iamrole", "podidentityassociation", "pullthroughcacherule", "distribution")


def ack_crds() -> Path:
    location = upstream_crds() / "ack"
    if not (location / "iam.services.k8s.aws_roles.yaml").is_file():
        pytest.skip("upstream ACK CRDs not available beside the checkout")
    return location


@pytest.fixture(scope="module")
def upstream_ack() -> SchemaValidator:
    return SchemaValidator(crd_dirs=[ack_crds()])


def rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = Path(sys.executable).parent / "kubectl"
    output = subprocess.run(
        [str(kubectl), "kustomize", str(REPO_ROOT / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_the_rendered_ack_resources_pass_the_upstream_crds_and_the_project_schemas(
    upstream_ack: SchemaValidator, validator: SchemaValidator, overlay: str
) -> None:
    documents = [doc for doc in rendered(overlay) if (doc["apiVersion"], doc["kind"]) in ACK_KINDS]

    assert sorted((doc["kind"], doc["metadata"]["name"]) for doc in documents) == [
        ("Distribution", "gateway"),
        ("PodIdentityAssociation", "gateway"),
        ("PodIdentityAssociation", "vllm"),
        ("Policy", "gateway-responses"),
        ("Policy", "vllm-model-read"),
        ("PullThroughCacheRule", "docker-hub"),
        ("Role", "gateway"),
        ("Role", "vllm"),
    ]
    for doc in documents:
        assert upstream_ack.source_of(doc["apiVersion"], doc["kind"]).startswith("CRD ")
        assert upstream_ack.validate(Resource(doc, overlay)) == [], doc["metadata"]["name"]
        assert validator.source_of(doc["apiVersion"], doc["kind"]).startswith("project schema")
        assert validator.validate(Resource(doc, overlay)) == [], doc["metadata"]["name"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_passes_the_upstream_crd(upstream_ack: SchemaValidator, name: str) -> None:
    assert upstream_ack.validate(resource(example(name))) == []


@pytest.mark.parametrize(
    ("name", "path", "typo"),
    [
        ("iamrole", "spec.assumeRolePolicyDocument", "assumeRolePolicy"),
        ("podidentityassociation", "spec.serviceAccount", "serviceAccountName"),
        ("pullthroughcacherule", "spec.upstreamRegistryURL", "upstreamRegistryUrl"),
        ("distribution", "spec.distributionConfig.defaultCacheBehavior.targetOriginID", "targetOriginId"),
    ],
)
def test_a_misspelt_field_fails_both(
    upstream_ack: SchemaValidator, validator: SchemaValidator, name: str, path: str, typo: str
) -> None:
    doc = renamed(example(name), path, typo)
    misspelt = path.rpartition(".")[0] + "." + typo
    for schemas in (upstream_ack, validator):
        rules = {rule for rule, _ in found(schemas.validate(resource(doc)))}
        assert "schema/unknown-field" in rules, (schemas, misspelt)


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("iampolicy", "spec.policyDocument", {"Statement": []}),
        ("iamrole", "spec.maxSessionDuration", "1h"),
        ("podidentityassociation", "spec.disableSessionTags", "no"),
        ("distribution", "spec.distributionConfig.enabled", "yes"),
    ],
)
def test_a_value_of_the_wrong_type_fails_both(
    upstream_ack: SchemaValidator, validator: SchemaValidator, name: str, path: str, value: object
) -> None:
    doc = edited(example(name), path, value)
    assert found(upstream_ack.validate(resource(doc))) == [("schema/invalid-value", path)]
    assert found(validator.validate(resource(doc))) == [("schema/invalid-value", path)]


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("iamrole", "spec.maxSessionDuration", 60),
        ("pullthroughcacherule", "spec.credentialARN", "arn:aws:secretsmanager:us-east-1:1:secret:hub"),
        ("distribution", "spec.distributionConfig.defaultCacheBehavior.viewerProtocolPolicy", "https"),
        ("podidentityassociation", "spec.roleRef", None),
    ],
)
def test_the_project_schemas_catch_what_aws_would_refuse(
    validator: SchemaValidator, name: str, path: str, value: object
) -> None:
    """Values the upstream CRDs accept (they type fields, AWS checks the values) but AWS rejects at
    create time: the association without a role, a session under an hour, a credential secret not
    named ecr-pullthroughcache/..., an unknown viewer protocol policy."""
    doc = edited(example(name), path, value)
    if value is None:
        doc["spec"].pop("roleRef")
        path = "spec"
    assert found(validator.validate(resource(doc))) == [("schema/invalid-value", path)]


def test_the_gate_passes_the_repository_with_the_upstream_ack_crds(tmp_path: Path) -> None:
    """`gate validate --crd <shared/crds/ack>`: the ACK kinds validated by the upstream CRDs (their
    transition rules skipped and counted), every other kind as always, and no finding."""
    out = tmp_path / "report.json"
    crds = str(ack_crds())
    code = main(["validate", "--repo-root", str(REPO_ROOT), "--crd", crds, "--format", f"json={out}"])

    report = json.loads(out.read_text(encoding="utf-8"))
    assert (code, report["findings"]) == (0, [])
