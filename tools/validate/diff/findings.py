"""The gate's own findings on one environment of a revision, for the scaling comment: a reviewer sees
beside the simulated impact whether the change passes the gate at all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.validate.config import ConfigError, find_config, load_config
from tools.validate.engine import GateError, RunOptions, discover_targets, run
from tools.validate.rules import default_registry


@dataclass(frozen=True)
class GateFindings:
    lines: tuple[str, ...]  # one per finding, with its fix
    failing: int  # findings at or above the fail level
    error: str | None = None  # the gate could not run


def gate_findings(tree: Path, env: str) -> GateFindings:
    registry = default_registry()
    try:
        config_path = find_config(tree, None)
        config = load_config(config_path, registry, "gate.yaml" if config_path else None)
        targets = [
            t for t in discover_targets(tree) if config.environment_of(t.relative_to(tree).as_posix()) == env
        ]
        if not targets:
            return GateFindings((), 0, None)
        report = run(targets, RunOptions(repo_root=tree, config=config, registry=registry))
    except (GateError, ConfigError, ValueError) as exc:
        return GateFindings((), 0, str(exc).replace(str(tree), "."))
    lines = []
    failing = 0
    for finding in report.findings:
        if finding.suppression is not None:
            continue
        if finding.severity >= config.fail_level:
            failing += 1
        where = finding.resource.ref() if finding.resource is not None else finding.overlay
        if finding.location is not None:
            where += f" ({finding.location.file}:{finding.location.line})"
        fix = f" Fix: {finding.remediation}" if finding.remediation else ""
        severity = finding.severity.name.lower()
        lines.append(f"**{severity}** `{finding.rule_id}` {where}: {finding.message.rstrip('.')}.{fix}")
    return GateFindings(tuple(lines), failing)
