"""The schema rule family: each rule yields the schema violations of its own id."""

from __future__ import annotations

import pytest
from schema_helpers import edited, example, renamed, resource

from tools.validate.model import Context, Resource, format_path
from tools.validate.rules import default_registry
from tools.validate.rules import schema as schema_rules
from tools.validate.schema import SchemaValidator, SchemaViolation

CONTAINER = "spec.template.spec.containers[0]"
RULE_IDS = ["schema/unknown-field", "schema/invalid-value", "schema/unknown-kind", "schema/cel-rule"]



@pytest.fixture
def overlay() -> list[Resource]:
    return [
        resource(renamed(example("deployment"), f"{CONTAINER}.imagePullPolicy", "imagePullPolcy")),
        resource(edited(example("nodepool"), "spec.disruption.consolidationPolicy", "WhenUnderutilized")),
        resource({"apiVersion": "karpenter.sh/v1beta1", "kind": "NodePool", "metadata": {"name": "old"}}),
        resource(example("scaledobject")),
    ]


def run(rule_id: str, ctx: Context) -> list[tuple[str, str, str]]:
    rule = default_registry().get(rule_id)
    return [(v.resource.ref(), format_path(v.segments), v.message) for v in rule.check(ctx, rule.options)]


def test_the_family_is_registered_with_its_docs() -> None:
    registry = default_registry()
    for rule_id in RULE_IDS:
        rule = registry.get(rule_id)
        assert rule.family == "schema"
        assert rule.why and rule.remediation and rule.example and rule.use_instead
    assert [r.id for r in schema_rules.RULES] == RULE_IDS


def test_each_rule_yields_its_own_violations(validator: SchemaValidator, overlay: list[Resource]) -> None:
    ctx = Context(overlay="prod", env="prod", resources=overlay, schemas=validator)

    assert run("schema/unknown-field", ctx) == [
        (
            "Deployment/inference/vllm",
            "spec.template.spec.containers[0].imagePullPolcy",
            "unknown field `imagePullPolcy` (did you mean `imagePullPolicy`?)",
        )
    ]
    assert run("schema/invalid-value", ctx) == [
        (
            "NodePool/gpu-spot",
            "spec.disruption.consolidationPolicy",
            "must be one of WhenEmpty, WhenEmptyOrUnderutilized, Balanced "
            "(got WhenUnderutilized — the v1beta1 name; v1 calls it WhenEmptyOrUnderutilized)",
        )
    ]
    assert run("schema/unknown-kind", ctx) == [
        (
            "NodePool/old",
            "",
            "no schema for NodePool karpenter.sh/v1beta1: this gate knows NodePool as karpenter.sh/v1",
        )
    ]
    assert run("schema/cel-rule", ctx) == []


def test_violations_are_computed_once_per_overlay(
    validator: SchemaValidator, overlay: list[Resource]
) -> None:
    calls: list[str] = []

    class Counting:
        """The validator, counting the resources it is asked to validate."""

        def validate(self, resource: Resource) -> list[SchemaViolation]:
            calls.append(resource.ref())
            return validator.validate(resource)

        def notes(self) -> list[str]:
            return validator.notes()

    counting = Counting()
    ctx = Context(overlay="prod", env="prod", resources=overlay, schemas=counting)
    for rule_id in RULE_IDS:
        run(rule_id, ctx)

    assert calls == [r.ref() for r in overlay]


def test_ignore_kinds_option(validator: SchemaValidator, overlay: list[Resource]) -> None:
    ctx = Context(overlay="prod", env="prod", resources=overlay, schemas=validator)
    rule = default_registry().get("schema/unknown-kind")

    ignored = list(rule.check(ctx, {"ignore_kinds": ["karpenter.sh/v1beta1/NodePool"]}))

    assert ignored == []
