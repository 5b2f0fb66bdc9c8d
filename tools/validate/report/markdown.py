"""`markdown`: a pull-request comment: a verdict, a table per overlay, fixes folded away.

At most `RenderOptions.max_findings` findings are shown as rows (and as many suppressed ones); the
rest are counted, so a comment stays within what a code host accepts and a reader can take in.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from tools.validate.model import Finding, Report, Severity, format_path
from tools.validate.report.common import (
    DEFAULT_OPTIONS,
    RenderOptions,
    active,
    join_lines,
    plural,
    remediation,
    resource_ref,
    scope_text,
    severity_name,
    source,
    summarise,
    suppressed,
)

ICONS = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}  # noqa: RUF001 (the emoji)
HEADLINE_PASS = "## ✅ Policy gate passed"
HEADLINE_FAIL = "## ❌ Policy gate failed"
TABLE_HEADER = ("| Severity | Rule | Resource | Source | Message |", "| --- | --- | --- | --- | --- |")


def escape(text: str) -> str:
    """Text safe inside a table cell: no cell breaks, no code spans, no HTML, one line."""
    for char in ("\\", "`", "|", "*", "_", "[", "]"):
        text = text.replace(char, f"\\{char}")
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return "<br>".join(text.splitlines())


def code(text: str) -> str:
    """`text` as inline code in a table cell (a pipe still needs its backslash there)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render(report: Report, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    summary = summarise(report)
    lines = [HEADLINE_PASS if summary.passed else HEADLINE_FAIL, ""]
    lines.append(f"{_bold_counts(summary.counts, summary.suppressed)}; {scope_text(summary)}.")
    if any(summary.counts.values()):
        lines[-1] += f" Fails at **{severity_name(summary.fail_level)}** or above."

    shown, hidden = _split(active(report), options.max_findings)
    for overlay, in_overlay in groupby(shown, key=lambda f: f.overlay):
        findings = list(in_overlay)
        lines += ["", f"### {escape(overlay)}", "", *TABLE_HEADER]
        lines += [_row(f, options) for f in findings]
        lines += _fixes(report, findings)
    if hidden:
        lines += ["", f"_…and {plural(len(hidden), 'more finding')} not shown; the job log lists them all._"]

    quiet_shown, quiet_hidden = _split(suppressed(report), options.max_findings)
    if quiet_shown:
        lines += ["", f"### Suppressed ({len(quiet_shown) + len(quiet_hidden)})", ""]
        lines += [_suppressed_item(f) for f in quiet_shown]
    if quiet_hidden:
        lines += ["", f"_…and {plural(len(quiet_hidden), 'more suppressed finding')} not shown._"]
    if report.notes:
        lines += ["", "**Notes** (not checked in this run)", ""]
        lines += [f"- {escape(note)}" for note in report.notes]
    return join_lines(lines)


def _bold_counts(counts: dict[Severity, int], quiet: int) -> str:
    if not any(counts.values()) and not quiet:
        return "No findings"
    parts = [plural(n, severity_name(s)) for s, n in counts.items()]
    parts = [f"**{p}**" if n else p for p, n in zip(parts, counts.values(), strict=True)]
    text = ", ".join(parts)
    return f"{text} ({quiet} suppressed)" if quiet else text


def _split(findings: list[Finding], limit: int) -> tuple[list[Finding], list[Finding]]:
    return findings[:limit], findings[limit:]


def _source_cell(finding: Finding, options: RenderOptions) -> str:
    file, line = source(finding)
    if file is None:
        return "(unknown)"
    label = f"{file}:{line}" if line is not None else file
    if options.link_base is None:
        return code(label)
    anchor = f"#L{line}" if line is not None else ""
    target = f"{options.link_base.rstrip('/')}/{file}{anchor}".replace(" ", "%20").replace(")", "%29")
    return f"[{code(label)}]({target})"


def _row(finding: Finding, options: RenderOptions) -> str:
    resource = resource_ref(finding)
    if finding.path:
        resource += f" {format_path(finding.path)}"
    cells = [
        f"{ICONS[finding.severity]} {severity_name(finding.severity)}",
        code(finding.rule_id),
        code(resource),
        _source_cell(finding, options),
        escape(finding.message),
    ]
    return f"| {' | '.join(cells)} |"


def _fixes(report: Report, findings: Sequence[Finding]) -> list[str]:
    """One bullet per distinct (rule, fix), naming the resources it applies to."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        fix = remediation(report, finding)
        if fix:
            refs = grouped.setdefault((finding.rule_id, fix), [])
            if resource_ref(finding) not in refs:
                refs.append(resource_ref(finding))
    if not grouped:
        return []
    lines = ["", "<details><summary>How to fix</summary>", ""]
    for (rule_id, fix), refs in grouped.items():
        lines.append(f"- {code(rule_id)} on {', '.join(code(r) for r in refs)}: {escape(fix)}")
    return [*lines, "", "</details>"]


def _suppressed_item(finding: Finding) -> str:
    assert finding.suppression is not None
    expiry = f", expires {finding.suppression.expires}" if finding.suppression.expires else ", no expiry"
    where = f"{finding.overlay} {resource_ref(finding)}"
    return (
        f"- {code(finding.rule_id)} on {code(where)}: {escape(finding.message)}"
        f" — reason: {escape(finding.suppression.reason)}{expiry}"
    )

