"""Core kinds: strict schemas from kubernetes-validate, per Kubernetes version."""

from __future__ import annotations

import datetime as dt

import pytest
from schema_helpers import edited, example, found, renamed, resource

from tools.validate.model import format_path
from tools.validate.schema import (
    DEFAULT_KUBERNETES_VERSION,
    SchemaError,
    SchemaValidator,
    available_kubernetes_versions,
)


def test_valid_deployment_passes(validator: SchemaValidator) -> None:
    assert validator.validate(resource(example("deployment"))) == []


def test_typo_in_container_field_is_an_unknown_field_at_its_path(validator: SchemaValidator) -> None:
    doc = renamed(example("deployment"), "spec.template.spec.containers[0].imagePullPolicy", "imagePullPolcy")

    violations = validator.validate(resource(doc))

    assert found(violations) == [("schema/unknown-field", "spec.template.spec.containers[0].imagePullPolcy")]
    assert violations[0].message == "unknown field `imagePullPolcy` (did you mean `imagePullPolicy`?)"


def test_wrong_type_is_an_invalid_value(validator: SchemaValidator) -> None:
    doc = edited(example("deployment"), "spec.template.spec.terminationGracePeriodSeconds", "60s")

    violations = validator.validate(resource(doc))

    assert found(violations) == [("schema/invalid-value", "spec.template.spec.terminationGracePeriodSeconds")]
    assert violations[0].message == 'must be an integer (got string "60s")'


def test_missing_required_field_names_it(validator: SchemaValidator) -> None:
    doc = example("deployment")
    del doc["spec"]["template"]["spec"]["containers"][0]["name"]

    violations = validator.validate(resource(doc))

    assert found(violations) == [("schema/invalid-value", "spec.template.spec.containers[0]")]
    assert violations[0].message == "missing required field `name`"


def test_every_error_of_a_resource_is_reported(validator: SchemaValidator) -> None:
    doc = renamed(example("deployment"), "spec.selector", "selectr")
    doc = edited(doc, "spec.template.spec.containers[0].ports[0].containerPort", "8000")

    assert found(validator.validate(resource(doc))) == [
        ("schema/invalid-value", "spec"),
        ("schema/invalid-value", "spec.template.spec.containers[0].ports[0].containerPort"),
        ("schema/unknown-field", "spec.selectr"),
    ]


def test_unknown_kind_names_the_versions_the_gate_knows(validator: SchemaValidator) -> None:
    doc = {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "x"}}

    violations = validator.validate(resource(doc))

    assert found(violations) == [("schema/unknown-kind", "")]
    assert violations[0].message == (
        "no schema for Deployment apps/v1beta1: this gate knows Deployment as apps/v1"
    )


def test_kind_without_any_schema_is_an_unknown_kind(validator: SchemaValidator) -> None:
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe", "metadata": {"name": "m"}}

    violations = validator.validate(resource(doc))

    assert found(violations) == [("schema/unknown-kind", "")]
    assert "Probe monitoring.coreos.com/v1" in violations[0].message


def test_default_version_is_one_the_package_ships() -> None:
    assert DEFAULT_KUBERNETES_VERSION in available_kubernetes_versions()
    assert SchemaValidator().kubernetes_version == DEFAULT_KUBERNETES_VERSION


def test_version_selects_the_schema() -> None:
    # Service.spec.trafficDistribution arrived in Kubernetes 1.30.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vllm"},
        "spec": {
            "selector": {"app": "vllm"},
            "ports": [{"port": 8000}],
            "trafficDistribution": "PreferClose",
        },
    }

    assert SchemaValidator(kubernetes_version="1.33").validate(resource(service)) == []
    old = SchemaValidator(kubernetes_version="v1.29").validate(resource(service))
    assert found(old) == [("schema/unknown-field", "spec.trafficDistribution")]


def test_unknown_version_lists_the_available_ones() -> None:
    with pytest.raises(SchemaError) as raised:
        SchemaValidator(kubernetes_version="1.12")

    message = str(raised.value)
    assert message.startswith("no schemas for Kubernetes '1.12' (available: 1.25, 1.26,")
    assert f", {available_kubernetes_versions()[-1]})" in message


def test_quantity_syntax_is_checked(validator: SchemaValidator) -> None:
    # The published OpenAPI only says "string or number"; the API server rejects 16GB.
    doc = edited(example("deployment"), "spec.template.spec.containers[0].resources.requests.memory", "16GB")

    violations = validator.validate(resource(doc))

    assert found(violations) == [
        ("schema/invalid-value", "spec.template.spec.containers[0].resources.requests.memory")
    ]
    assert violations[0].message == 'must be a resource quantity such as 500m, 16Gi or 4 (got string "16GB")'


def test_values_json_cannot_carry_are_validated_as_kubectl_sends_them(validator: SchemaValidator) -> None:
    # YAML timestamps and binary reach the API server as strings; a number stays a number.
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dates", "annotations": {"since": dt.date(2026, 11, 28)}},
        "data": {"at": dt.datetime(2026, 11, 28, 9, 30), "replicas": 3},
        "binaryData": {"blob": b"\x00\x01"},
    }

    violations = validator.validate(resource(doc))

    assert [(v.rule_id, format_path(v.segments), v.message) for v in violations] == [
        ("schema/invalid-value", "data.replicas", "must be a string (got number 3)")
    ]


def test_a_document_that_is_not_an_object_is_reported(validator: SchemaValidator) -> None:
    violations = validator.validate(resource(["not", "a", "resource"]))  # type: ignore[arg-type]

    assert [(v.rule_id, format_path(v.segments), v.message) for v in violations] == [
        ("schema/unknown-kind", "", "a resource must be an object (got a list)")
    ]
