"""`json`: a versioned document for scripts; docs/output.md documents every field.

Bump SCHEMA_VERSION when a field changes meaning or disappears; adding a field does not bump it.
"""

from __future__ import annotations

import json
from typing import Any

from tools.validate.model import Finding, Report, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    RenderOptions,
    RuleInfo,
    active,
    remediation,
    rule_catalogue,
    severity_name,
    source,
    summarise,
    suppressed,
)

SCHEMA_VERSION = 1


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"


def document(report: Report) -> dict[str, Any]:
    summary = summarise(report)
    return {
        "version": SCHEMA_VERSION,
        "summary": {
            "verdict": "pass" if summary.passed else "fail",
            "fail_level": severity_name(summary.fail_level),
            "overlays": list(summary.overlays),
            "resources": summary.resources,
            "by_severity": {severity_name(s): n for s, n in summary.counts.items()},
            "failing": summary.failing,
            "suppressed": summary.suppressed,
        },
        "findings": [_finding(report, f) for f in [*active(report), *suppressed(report)]],
        "rules": [_rule(rule) for rule in rule_catalogue(report)],
        "notes": list(report.notes),
    }


def _finding(report: Report, finding: Finding) -> dict[str, Any]:
    file, line = source(finding)
    resource = finding.resource
    return {
        "rule": finding.rule_id,
        "severity": severity_name(finding.severity),
        "message": finding.message,
        "remediation": remediation(report, finding),
        "overlay": finding.overlay,
        "resource": None
        if resource is None
        else {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "namespace": resource.namespace or None,
            "name": resource.name,
        },
        "path": format_path(finding.path) or None,
        "file": file,
        "line": line,
        "suppressed": None
        if finding.suppression is None
        else {"reason": finding.suppression.reason, "expires": finding.suppression.expires},
    }


def _rule(rule: RuleInfo) -> dict[str, Any]:
    return {
        "id": rule.id,
        "family": rule.family,
        "title": rule.title,
        "severity": severity_name(rule.severity),
        "why": rule.why,
        "remediation": rule.remediation,
        "scope": list(rule.scope),
        "registered": rule.registered,
    }
