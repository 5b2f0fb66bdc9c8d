"""`sarif`: SARIF 2.1.0 for code scanning (GitHub, GitLab, IDE viewers).

One run; `tool.driver.rules` lists every registered rule (so alerts can be closed when a rule stops
firing) plus any unregistered rule id that fired. Paths are repository-relative under the
`SRCROOT` base id; the resource and the JSON path go in logical locations; suppressed findings carry
an in-source suppression with its justification.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tools.validate.model import Finding, Report, Severity, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    TOOL_NAME,
    RenderOptions,
    RuleInfo,
    active,
    fingerprint,
    qualified_name,
    remediation,
    rule_catalogue,
    severity_name,
    source,
    summarise,
    suppressed,
    tool_version,
)

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SOURCE_ROOT = "SRCROOT"
FINGERPRINT_KEY = "gateFinding/v1"

LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    return json.dumps(document(report, options), indent=2, ensure_ascii=False) + "\n"


def document(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    rules = rule_catalogue(report)
    index = {rule.id: i for i, rule in enumerate(rules)}
    summary = summarise(report)
    run = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": tool_version(),
                "informationUri": options.information_uri,
                "rules": [_descriptor(rule) for rule in rules],
            }
        },
        "originalUriBaseIds": {SOURCE_ROOT: {"description": {"text": "The repository root."}}},
        "invocations": [_invocation(report)],
        "results": [_result(report, f, index) for f in [*active(report), *suppressed(report)]],
        "properties": {
            "verdict": "pass" if summary.passed else "fail",
            "failLevel": severity_name(summary.fail_level),
            "overlays": list(summary.overlays),
            "resourceCount": summary.resources,
        },
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def _invocation(report: Report) -> dict[str, Any]:
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if report.notes:
        invocation["toolExecutionNotifications"] = [
            {"level": "note", "message": {"text": note}} for note in report.notes
        ]
    return invocation


def _descriptor(rule: RuleInfo) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "id": rule.id,
        "shortDescription": {"text": rule.title},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": [rule.family]},
    }
    if rule.why:
        descriptor["fullDescription"] = {"text": rule.why}
    help_text = "\n\n".join(part for part in (rule.remediation, rule.why) if part)
    if help_text:
        help_markdown = "\n\n".join(
            part for part in (rule.remediation and f"**Fix:** {rule.remediation}", rule.why) if part
        )
        descriptor["help"] = {"text": help_text, "markdown": help_markdown}
    return descriptor


def _result(report: Report, finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    fix = remediation(report, finding)
    text = f"{finding.message}\nfix: {fix}" if fix else finding.message
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index[finding.rule_id],
        "level": LEVELS[finding.severity],
        "message": {"text": text},
        "locations": [_location(finding)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(finding)},
        "properties": {"overlay": finding.overlay},
    }
    if finding.suppression is not None:
        suppression: dict[str, Any] = {"kind": "inSource", "justification": finding.suppression.reason}
        if finding.suppression.expires:
            suppression["properties"] = {"expires": finding.suppression.expires}
        result["suppressions"] = [suppression]
    return result


def _location(finding: Finding) -> dict[str, Any]:
    location: dict[str, Any] = {}
    file, line = source(finding)
    if file is not None:
        physical: dict[str, Any] = {"artifactLocation": {"uri": quote(file), "uriBaseId": SOURCE_ROOT}}
        if line is not None:
            physical["region"] = {"startLine": line}
        location["physicalLocation"] = physical
    resource_name = qualified_name(finding)
    logical = [
        {
            "name": finding.resource.name if finding.resource is not None else finding.overlay,
            "fullyQualifiedName": resource_name,
            "kind": "object",
        }
    ]
    if finding.path:
        printed = format_path(finding.path)
        path_name = f"{resource_name}/{printed}"
        logical.append({"name": printed, "fullyQualifiedName": path_name, "kind": "property"})
    location["logicalLocations"] = logical
    return location
