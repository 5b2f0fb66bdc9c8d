"""`github`: GitHub Actions workflow commands, so findings appear as annotations on the PR diff.

One `::error` / `::warning` / `::notice` line per finding (info and suppressed findings are
notices), then the verdict as a plain log line. Values are escaped as the Actions runner expects:
in the message `%`, CR and LF; in properties also `:` and `,`.
"""

from __future__ import annotations

from tools.validate.model import Finding, Report, Severity, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    RenderOptions,
    active,
    join_lines,
    remediation,
    resource_ref,
    source,
    summarise,
    suppressed,
    verdict_line,
)

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    lines = [_command(report, f) for f in active(report)]
    lines.extend(_command(report, f) for f in suppressed(report))
    lines.append(verdict_line(summarise(report)))
    return join_lines(lines)


def _command(report: Report, finding: Finding) -> str:
    file, line = source(finding)
    properties: list[tuple[str, str]] = []
    if file is not None:
        properties.append(("file", file))
        if line is not None:
            properties.append(("line", str(line)))
    where = f"[{finding.overlay}] {resource_ref(finding)}"
    if finding.path:
        where += f" {format_path(finding.path)}"
    body = f"{where}: {finding.message}"
    if finding.suppression is not None:
        command = "notice"
        properties.append(("title", f"{finding.rule_id} (suppressed)"))
        expiry = f" (expires {finding.suppression.expires})" if finding.suppression.expires else ""
        body += f"\nsuppressed: {finding.suppression.reason}{expiry}"
    else:
        command = COMMANDS[finding.severity]
        properties.append(("title", finding.rule_id))
        fix = remediation(report, finding)
        if fix:
            body += f"\nfix: {fix}"
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties)
    return f"::{command} {props}::{escape_data(body)}"
