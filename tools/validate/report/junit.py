"""`junit`: JUnit XML for CI test-report views (GitLab, Jenkins).

`testsuites` > one `testsuite` per overlay > one `testcase` per (rule, resource) that has
findings, plus one passing `testcase` per rule that found nothing in that overlay, so the totals
say how many checks ran. A testcase fails when a finding at or above the fail level is open; open
findings below it leave the testcase passing with the findings in `system-out`; a testcase whose
findings are all suppressed is `skipped` with the reasons.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from tools.validate.model import Finding, Report, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    TOOL_NAME,
    RenderOptions,
    overlay_order,
    remediation,
    resource_ref,
    rule_catalogue,
    severity_name,
    sort_findings,
    source,
    source_text,
    summarise,
)

# Characters XML 1.0 cannot carry at all, even escaped; a message quoting raw bytes must not make
# the whole report unreadable.
_NOT_XML = re.compile(r"[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@dataclass
class _Case:
    rule_id: str
    family: str
    resource: str | None  # None: the passing case of a rule that found nothing
    failing: list[Finding] = field(default_factory=list)
    below_level: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    root = ET.Element("testsuites", name=TOOL_NAME)
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for overlay in overlay_order(report):
        suite = _suite(report, overlay)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    _set_counts(root, **totals)
    root.set("time", "0")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _suite(report: Report, overlay: str) -> ET.Element:
    cases = _cases(report, overlay)
    suite = ET.Element("testsuite", name=_clean(overlay))
    failures = sum(1 for c in cases if c.failing)
    skipped = sum(1 for c in cases if not c.failing and not c.below_level and c.suppressed)
    _set_counts(suite, tests=len(cases), failures=failures, skipped=skipped)
    suite.set("time", "0")
    for case in cases:
        suite.append(_testcase(report, overlay, case))
    return suite


def _set_counts(element: ET.Element, *, tests: int, failures: int, skipped: int) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("skipped", str(skipped))


def _cases(report: Report, overlay: str) -> list[_Case]:
    fail_level = summarise(report).fail_level
    in_overlay = sort_findings(report, (f for f in report.findings if f.overlay == overlay))
    by_key: dict[tuple[str, str], _Case] = {}
    families = {rule.id: rule.family for rule in rule_catalogue(report)}
    for finding in in_overlay:
        ref = resource_ref(finding)
        case = by_key.setdefault(
            (finding.rule_id, ref), _Case(finding.rule_id, families[finding.rule_id], ref)
        )
        if finding.suppressed:
            case.suppressed.append(finding)
        elif finding.severity >= fail_level:
            case.failing.append(finding)
        else:
            case.below_level.append(finding)
    fired = {rule_id for rule_id, _ in by_key}
    passing = [_Case(rule.id, rule.family, None) for rule in rule_catalogue(report) if rule.id not in fired]
    return [*by_key.values(), *passing]


def _testcase(report: Report, overlay: str, case: _Case) -> ET.Element:
    name = case.rule_id if case.resource is None else f"{case.rule_id} {case.resource}"
    element = ET.Element("testcase", classname=_clean(f"{overlay}.{case.family}"), name=_clean(name))
    findings = [*case.failing, *case.below_level, *case.suppressed]
    if findings:
        file, line = source(findings[0])
        if file is not None:
            element.set("file", _clean(file))
            if line is not None:
                element.set("line", str(line))
    element.set("time", "0")
    if case.failing:
        message = case.failing[0].message
        if len(case.failing) > 1:
            message = f"{len(case.failing)} findings: {message}"
        worst = severity_name(max(f.severity for f in case.failing))
        failure = ET.SubElement(element, "failure", message=_clean(message), type=worst)
        failure.text = _details(report, case.failing)
    elif case.suppressed and not case.below_level:
        reasons = "; ".join(_suppression_text(f) for f in case.suppressed)
        ET.SubElement(element, "skipped", message=_clean(f"suppressed: {reasons}"))
    quiet = [*case.below_level, *(case.suppressed if case.failing or case.below_level else [])]
    if quiet:
        out = ET.SubElement(element, "system-out")
        out.text = _details(report, quiet)
    return element


def _suppression_text(finding: Finding) -> str:
    assert finding.suppression is not None
    expiry = f" (expires {finding.suppression.expires})" if finding.suppression.expires else ""
    return f"{finding.suppression.reason}{expiry}"


def _details(report: Report, findings: Sequence[Finding]) -> str:
    """Each finding as the text format prints it: severity, location, path, message, fix."""
    blocks = []
    for finding in findings:
        head = " ".join(
            part
            for part in (
                severity_name(finding.severity),
                source_text(finding) or "(no source line)",
                resource_ref(finding),
                format_path(finding.path),
            )
            if part
        )
        lines = [head, finding.message]
        fix = remediation(report, finding)
        if fix:
            lines.append(f"fix: {fix}")
        if finding.suppression is not None:
            lines.append(f"suppressed: {_suppression_text(finding)}")
        blocks.append("\n".join(lines))
    return _clean("\n\n".join(blocks))
