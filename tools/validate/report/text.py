"""`text`: the default, for a terminal or a CI log: grouped by overlay, then by resource."""

from __future__ import annotations

from itertools import groupby

from tools.validate.model import Finding, Report, Severity, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    RenderOptions,
    active,
    indent,
    join_lines,
    remediation,
    resource_ref,
    severity_name,
    source_text,
    summarise,
    suppressed,
    verdict_line,
)

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_SEVERITY_COLOUR = {Severity.ERROR: "\x1b[31m", Severity.WARNING: "\x1b[33m", Severity.INFO: "\x1b[36m"}
_PASS_COLOUR = "\x1b[32m"
_SEVERITY_WIDTH = max(len(s.name) for s in Severity)


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    paint = _Painter(options.colour)
    lines: list[str] = []
    findings = active(report)
    for overlay, in_overlay in groupby(findings, key=lambda f: f.overlay):
        lines.append(paint.bold(f"overlay {overlay}"))
        for ref, on_resource in groupby(in_overlay, key=resource_ref):
            lines.append(f"  {ref}")
            for finding in on_resource:
                lines.extend(_finding_lines(report, finding, paint))
        lines.append("")

    quiet = suppressed(report)
    if quiet:
        lines.append(paint.bold(f"suppressed ({len(quiet)})"))
        for (overlay, ref), on_resource in groupby(quiet, key=lambda f: (f.overlay, resource_ref(f))):
            lines.append(f"  {overlay} {ref}")
            for finding in on_resource:
                lines.extend(_suppressed_lines(finding, paint))
        lines.append("")

    if report.notes:
        lines.append(paint.bold("notes:"))
        for note in report.notes:
            lines.extend(indent(f"- {note}", "  "))
        lines.append("")

    lines.append(paint.verdict(verdict_line(summarise(report)), passed=not report.failing()))
    return join_lines(lines)


def _head(finding: Finding, paint: _Painter) -> str:
    label = paint.severity(finding.severity, severity_name(finding.severity).ljust(_SEVERITY_WIDTH))
    parts = [label, finding.rule_id, source_text(finding) or "(no source line)"]
    if finding.path:
        parts.append(format_path(finding.path))
    return "  ".join(parts)


def _finding_lines(report: Report, finding: Finding, paint: _Painter) -> list[str]:
    lines = [f"    {_head(finding, paint)}", *indent(finding.message, "      ")]
    fix = remediation(report, finding)
    if fix:
        lines.extend(indent(f"fix: {fix}", "      "))
    return lines


def _suppressed_lines(finding: Finding, paint: _Painter) -> list[str]:
    assert finding.suppression is not None
    lines = [f"    {_head(finding, paint)}", *indent(finding.message, "      ")]
    expiry = f" (expires {finding.suppression.expires})" if finding.suppression.expires else " (no expiry)"
    lines.extend(indent(f"reason: {finding.suppression.reason}{expiry}", "      "))
    return lines


class _Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap(_BOLD, text)

    def severity(self, severity: Severity, text: str) -> str:
        return self._wrap(_SEVERITY_COLOUR[severity], text)

    def verdict(self, text: str, *, passed: bool) -> str:
        return self._wrap(_PASS_COLOUR if passed else _SEVERITY_COLOUR[Severity.ERROR], text)
