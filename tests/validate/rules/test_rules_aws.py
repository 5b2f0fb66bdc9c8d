"""The aws rules beyond their fixtures: what each finding says, what they say without the environment
values, and where the engine finds those values."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_fixtures import FIXTURES, context_for, load_fixture

from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.environment_values import EXTRAS_KEY, environment_values
from tools.validate.loader import Limits
from tools.validate.model import Context, Rule, as_int, format_path
from tools.validate.rules import aws

REPOSITORY = Path(__file__).parents[3]
RULES = {rule.id: rule for rule in aws.RULES}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def messages(rule: Rule, ctx: Context) -> list[tuple[str, str, str]]:
    found = rule.check(ctx, dict(rule.options))
    return sorted(
        (f"{v.resource.kind}/{v.resource.name}" if v.resource else "", format_path(v.path), v.message)
        for v in found
    )


def context(slug: str, which: str, catalogue: Catalogue, *, without_values: bool = False) -> Context:
    ctx = context_for(load_fixture(FIXTURES / slug / f"{which}.yaml"), catalogue)
    if without_values:
        ctx.extras.pop(EXTRAS_KEY, None)
    return ctx


def test_least_privilege_names_every_problem_of_a_document(catalogue: Catalogue) -> None:
    found = messages(RULES["aws/iam-least-privilege"], context("iam-least-privilege", "fire", catalogue))

    document = "spec.policyDocument"
    assert found == [
        ("Policy/beyond-prefix", document,
         "statement 1: arn:aws:s3:::models-prod/* reaches beyond the prefixes the pods read "
         "(mistral-7b-instruct-awq)"),
        ("Policy/broken", document,
         "the policy document is not JSON (Expecting value: line 1 column 16 (char 15))"),
        ("Policy/other-environment", document,
         "statement 1: arn:aws:s3:::models-* matches any bucket: name the environment's bucket"),
        ("Policy/other-environment", document,
         "statement 1: bucket 'models-dev' is not one of this environment's buckets "
         "(models-prod, responses-prod)"),
        ("Policy/wildcards", document, "statement 1: action 's3:*' is a wildcard"),
        ("Policy/wildcards", document, "statement 1: resource '*' is every resource"),
        ("Role/inline", "spec.inlinePolicies.extra",
         "statement 1: NotAction allows everything it does not name"),
        ("Role/inline", "spec.inlinePolicies.extra",
         "statement 2: action 's3:DeleteBucket' is not one the components need "
         "(s3:GetObject, s3:PutObject, s3:ListBucket)"),
    ]


def test_without_environment_values_the_rules_say_what_they_could_not_check(catalogue: Catalogue) -> None:
    images = messages(
        RULES["aws/image-from-environment-registry"],
        context("image-from-environment-registry", "pass", catalogue, without_values=True),
    )
    identity = messages(
        RULES["aws/pod-identity-bound"],
        context("pod-identity-bound", "pass", catalogue, without_values=True),
    )
    policies = messages(
        RULES["aws/iam-least-privilege"],
        context("iam-least-privilege", "pass", catalogue, without_values=True),
    )

    assert [(ref, path) for ref, path, _ in images] == [
        ("Deployment/vllm", "spec.template.spec.containers[0].image"),
        ("Deployment/vllm", "spec.template.spec.containers[1].image"),
        ("OpenTelemetryCollector/metrics", "spec.image"),
    ]
    assert [(ref, path) for ref, path, _ in identity] == [
        ("PodIdentityAssociation/gateway", "spec"),
        ("PodIdentityAssociation/vllm", "spec"),
    ]
    assert [(ref, path) for ref, path, _ in policies] == [
        ("Policy/vllm-model-read", "spec.policyDocument"),
        ("Role/gateway", "spec.inlinePolicies.responses"),
    ]
    for _, _, message in [*images, *identity, *policies]:
        assert message.startswith(aws.MISSING_VALUES)


def test_a_pod_that_calls_aws_is_named_with_the_reason(catalogue: Catalogue) -> None:
    found = messages(RULES["aws/pod-identity-bound"], context("pod-identity-bound", "fire", catalogue))

    assert found[0] == (
        "Deployment/gateway",
        "spec.template.spec.serviceAccountName",
        "its pods call AWS (container 'gateway': ConfigMap gateway-config GATEWAY_S3_BUCKET names a "
        "bucket) as ServiceAccount inference/gateway, which no PodIdentityAssociation of this environment "
        "binds: they get no credentials",
    )


@pytest.mark.parametrize("directory", ["overlays/prod", "apps/prod", "clusters/prod"])
def test_the_environment_values_of_each_entry_point_are_its_environments(directory: str) -> None:
    values = environment_values(REPOSITORY / directory, REPOSITORY, Limits())

    assert values is not None
    assert (values["environment"], values["accountId"], values["clusterName"]) == (
        "prod", "222222222222", "llm-inference-prod"
    )


def test_a_directory_without_environment_values_has_none(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "kustomization.yaml").write_text("resources: [configmap.yaml]\n", encoding="utf-8")
    (tmp_path / "web" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: environment}\ndata: {accountId: '1'}\n",
        encoding="utf-8",
    )

    # Named `environment` but deployed (not local-config): not the values.
    assert environment_values(tmp_path / "web", tmp_path, Limits()) is None


@pytest.mark.parametrize("text", ["INFINITY", "-inf", "nan", "1e999"])
def test_an_integer_field_that_no_integer_holds_reads_as_absent(text: str) -> None:
    """Found by the robustness property over the baseline with the AWS side (spec.fallback.replicas)."""
    assert as_int(text, default=7) == 7
