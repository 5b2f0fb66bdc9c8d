"""What every output format shares: ordering, source locations, rule descriptions, the verdict.

Each format renders the same facts in the same order, so a finding reads the same in the log, the
PR comment and the code-scanning alert.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tools.validate.model import Finding, Report, Severity, format_path

TOOL_NAME = "gate"
DISTRIBUTION = "eks-llm-inference"
# Where a reader of a SARIF alert learns what the tool is; a fork points it at its own repository
# through RenderOptions.information_uri.
DEFAULT_INFORMATION_URI = "https://github.com/eks-llm-inference/eks-llm-inference/blob/main/docs/output.md"
DEFAULT_MAX_FINDINGS = 50


@dataclass(frozen=True)
class RenderOptions:
    """Knobs a caller may turn; every format reads only the ones that concern it.

    colour: ANSI colours in `text` (off unless asked for).
    link_base: in `markdown`, turn `file:line` into links `<link_base>/<file>#L<line>`
        (e.g. `https://github.com/org/repo/blob/<sha>`); plain code otherwise.
    max_findings: in `markdown`, rows shown before the rest is summarised as a count.
    information_uri: `tool.driver.informationUri` in `sarif`.
    """

    colour: bool = False
    link_base: str | None = None
    max_findings: int = DEFAULT_MAX_FINDINGS
    information_uri: str = DEFAULT_INFORMATION_URI

    def __post_init__(self) -> None:
        if self.max_findings < 1:
            raise ValueError(f"max_findings must be at least 1, got {self.max_findings}")


DEFAULT_OPTIONS = RenderOptions()


@dataclass(frozen=True)
class RuleInfo:
    """A rule as the outputs describe it; also stands in for a rule id the registry does not know."""

    id: str
    family: str
    title: str
    severity: Severity
    why: str
    remediation: str
    scope: tuple[str, ...]
    registered: bool


def tool_version() -> str:
    """The project's version: from the installed distribution, else from the checkout's pyproject."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
        with pyproject.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])


def overlay_order(report: Report) -> list[str]:
    """The overlays in the order the run checked them, then any overlay only a finding names."""
    extra = sorted({f.overlay for f in report.findings} - set(report.overlays))
    return [*report.overlays, *extra]


def sort_findings(report: Report, findings: Iterable[Finding]) -> list[Finding]:
    """Overlay (run order), resource, most severe first, rule, path, line."""
    rank = {name: i for i, name in enumerate(overlay_order(report))}

    def key(f: Finding) -> tuple[int, str, int, str, str, int]:
        file_line = source(f)
        return (
            rank.get(f.overlay, len(rank)),
            resource_ref(f),
            -int(f.severity),
            f.rule_id,
            format_path(f.path),
            file_line[1] or 0,
        )

    return sorted(findings, key=key)


def active(report: Report) -> list[Finding]:
    return sort_findings(report, (f for f in report.findings if not f.suppressed))


def suppressed(report: Report) -> list[Finding]:
    return sort_findings(report, (f for f in report.findings if f.suppressed))


def source(finding: Finding) -> tuple[str | None, int | None]:
    """(repository-relative file, 1-based line) that set the field; the resource's file when the
    engine found no line; (None, None) when neither is known."""
    if finding.location is not None:
        return finding.location.file, finding.location.line
    if finding.resource is not None and finding.resource.origin:
        return finding.resource.origin, None
    return None, None


def source_text(finding: Finding) -> str | None:
    """`file:line`, `file`, or None."""
    file, line = source(finding)
    if file is None:
        return None
    return f"{file}:{line}" if line is not None else file


OVERLAY_WIDE = "(whole overlay)"


def resource_ref(finding: Finding) -> str:
    """`Kind/namespace/name`, `Kind/name` when cluster-scoped, or `(whole overlay)`."""
    return finding.resource.ref() if finding.resource is not None else OVERLAY_WIDE


def qualified_name(finding: Finding) -> str:
    """`overlay/Kind/namespace/name`: the resource as one name across every overlay."""
    return f"{finding.overlay}/{resource_ref(finding)}" if finding.resource is not None else finding.overlay


def severity_name(severity: Severity) -> str:
    return severity.name.lower()


def rule_info(report: Report, finding_or_id: Finding | str) -> RuleInfo:
    """The registered rule, or a description built from the finding when the registry lacks the id
    (the engine's own findings, e.g. a render error, need not be registered rules)."""
    rule_id = finding_or_id if isinstance(finding_or_id, str) else finding_or_id.rule_id
    if rule_id in report.rules:
        rule = report.rules.get(rule_id)
        return RuleInfo(
            id=rule.id,
            family=rule.family,
            title=rule.title,
            severity=rule.severity,
            why=rule.why,
            remediation=rule.remediation,
            scope=tuple(rule.scope),
            registered=True,
        )
    fired = [f for f in report.findings if f.rule_id == rule_id]
    return RuleInfo(
        id=rule_id,
        family=rule_id.partition("/")[0],
        title=rule_id,
        severity=max((f.severity for f in fired), default=Severity.ERROR),
        why="",
        remediation="",
        scope=(),
        registered=False,
    )


def rule_catalogue(report: Report) -> list[RuleInfo]:
    """Every registered rule in registry order, then any unregistered rule id that fired, by id."""
    registered = [rule_info(report, rule.id) for rule in report.rules]
    unregistered = sorted({f.rule_id for f in report.findings if f.rule_id not in report.rules})
    return [*registered, *(rule_info(report, rule_id) for rule_id in unregistered)]


def remediation(report: Report, finding: Finding) -> str:
    """The finding's own advice, else its registered rule's."""
    if finding.remediation:
        return finding.remediation
    return report.rules.get(finding.rule_id).remediation if finding.rule_id in report.rules else ""


def fingerprint(finding: Finding) -> str:
    """Stable across runs and line shifts: what fired, on what, where in the object; not the message
    (which may quote values) nor the line."""
    resource = finding.resource
    parts = [
        finding.rule_id,
        finding.overlay,
        resource.gvk if resource else "",
        resource.namespace if resource else "",
        resource.name if resource else "",
        format_path(finding.path),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Summary:
    passed: bool
    counts: dict[Severity, int]  # unsuppressed findings, by severity
    suppressed: int
    failing: int
    resources: int
    overlays: tuple[str, ...]
    fail_level: Severity


def summarise(report: Report) -> Summary:
    open_findings = [f for f in report.findings if not f.suppressed]
    failing = report.failing()
    return Summary(
        passed=not failing,
        counts={s: sum(1 for f in open_findings if f.severity == s) for s in sorted(Severity, reverse=True)},
        suppressed=len(report.findings) - len(open_findings),
        failing=len(failing),
        resources=report.resource_count,
        overlays=tuple(overlay_order(report)),
        fail_level=report.fail_level,
    )


def plural(count: int, noun: str) -> str:
    if noun == "info":
        return f"{count} info"
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def counts_text(summary: Summary) -> str:
    """`1 error, 2 warnings, 0 info (1 suppressed)`, or `no findings`."""
    if not any(summary.counts.values()) and not summary.suppressed:
        return "no findings"
    text = ", ".join(plural(n, severity_name(s)) for s, n in summary.counts.items())
    return f"{text} ({summary.suppressed} suppressed)" if summary.suppressed else text


def scope_text(summary: Summary) -> str:
    """`12 resources in 2 overlays checked (dev, prod)`."""
    names = f" ({', '.join(summary.overlays)})" if summary.overlays else ""
    overlays = plural(len(summary.overlays), "overlay")
    return f"{plural(summary.resources, 'resource')} in {overlays} checked{names}"


def verdict_line(summary: Summary) -> str:
    """The one line every human-facing format closes (or opens) with."""
    verdict = "PASS" if summary.passed else "FAIL"
    line = f"{verdict}: {counts_text(summary)}; {scope_text(summary)}"
    if any(summary.counts.values()):
        line += f"; fail level: {severity_name(summary.fail_level)}"
    return line


def indent(text: str, prefix: str) -> list[str]:
    """Each line of a possibly multi-line text, prefixed."""
    return [f"{prefix}{line}" if line else prefix.rstrip() for line in text.splitlines() or [""]]


def join_lines(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"
