"""`gate diff --base REV [--head REV]`: what a change does to users, to cost and to the gate, per environment.

Renders every environment at both revisions and lists the semantic changes in domain words. For each
changed environment that runs vLLM it simulates both revisions in three scenarios (the spike, a 24-hour
day, spot-stress; scenarios.py) over several seeds with Spot interruptions on, with user-facing latency,
the KV cache, the gateway as built and Spot as a risk (serving.py). It runs the gate on the head
revision's environment, derives plain consequences from the configuration (consequences.py) and writes
Markdown for a pull request comment (`--output`) that opens with one verdict line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.diff.consequences import consequences
from tools.validate.diff.findings import GateFindings, gate_findings
from tools.validate.diff.policy import config_changes, read_gate_config, suppression_changes
from tools.validate.diff.revisions import RevisionError, checkout, environments, repository_root
from tools.validate.diff.semantic import semantic_changes
from tools.validate.diff.verdict import ScenarioPair, scenario_table, verdict
from tools.validate.model import Resource
from tools.validate.simulate.coldstart import compile_cache_survives
from tools.validate.simulate.gateway_model import gateway_limits
from tools.validate.simulate.hardware import DEFAULT_HARDWARE, HardwareProfile, load_hardware_profile
from tools.validate.simulate.latency import SloObjectives
from tools.validate.simulate.manifests import Cluster, read_cluster
from tools.validate.simulate.render import RenderError, render_overlay
from tools.validate.simulate.scenarios import DEFAULT_SEEDS, SCENARIOS, ScenarioResult, run_scenario
from tools.validate.simulate.serving import ServingModel

EXIT_OK, EXIT_USAGE = 0, 2
COMMENT_MARKER = "<!-- gate-scaling-impact -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="the revision to compare against (e.g. origin/main)")
    parser.add_argument("--head", help="the revision under review (default: the working tree)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="a directory inside the repository")
    parser.add_argument("--output", type=Path, help="write the PR comment (Markdown) here")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="simulate only these scenarios (repeatable; default: all three)",
    )
    parser.add_argument(
        "--seeds", type=int, default=len(DEFAULT_SEEDS), help="seeds per scenario (median and worst reported)"
    )
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE, help="hardware profile name or YAML file")
    parser.add_argument("--no-findings", action="store_true", help="do not run the gate on the head revision")
    parser.add_argument("--plot", type=Path, help="write one PNG per changed environment into this directory")


@dataclass
class Side:
    resources: list[Resource] | None
    error: str | None = None
    cluster: Cluster | None = None
    scenarios: list[ScenarioResult] = field(default_factory=list)
    consequences: dict[str, str] = field(default_factory=dict)


@dataclass
class EnvironmentDiff:
    name: str
    changes: list[str]
    before: Side
    after: Side
    objectives: SloObjectives = field(default_factory=SloObjectives)
    findings: GateFindings | None = None


def _render(tree: Path, env: str) -> Side:
    path = environments(tree).get(env)
    if path is None:
        return Side(None)
    try:
        return Side(render_overlay(path, env, repo_root=tree))
    except RenderError as exc:
        return Side(None, str(exc).replace(str(tree), "."))


def objectives_for(config: dict[str, Any], env: str) -> SloObjectives:
    environment = (config.get("environments") or {}).get(env) or {}
    return SloObjectives.from_config(environment.get("slo") if isinstance(environment, dict) else None)


def _simulate(
    side: Side,
    env: str,
    hardware: HardwareProfile,
    catalogue: Catalogue,
    objectives: SloObjectives,
    scenarios: Sequence[str],
    seeds: Sequence[int],
) -> None:
    if side.resources is None or not any(r.kind == "Deployment" for r in side.resources):
        return
    try:
        cluster = read_cluster(env, side.resources)
    except ValueError:
        return  # not a vLLM overlay (or one the simulator cannot read): changes only
    deployment = next(
        (r for r in side.resources if r.kind == "Deployment" and r.name == cluster.deployment.name), None
    )
    warm = deployment is not None and compile_cache_survives(deployment)
    serving = ServingModel(catalogue, objectives, gateway_limits(side.resources), compile_cache_warm=warm)
    side.cluster = cluster
    side.consequences = consequences(cluster, hardware, catalogue, warm)
    side.scenarios = [
        run_scenario(cluster, hardware, scenario, serving, seeds)
        for scenario in SCENARIOS
        if scenario.name in scenarios
    ]


@dataclass
class Comparison:
    environments: list[EnvironmentDiff]
    policy: list[str]  # changes to gate.yaml and to suppressions, weakening ones marked


def compare(
    repo: Path,
    base: str,
    head: str | None,
    hardware: HardwareProfile,
    scenarios: Sequence[str] = tuple(s.name for s in SCENARIOS),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    findings: bool = True,
) -> Comparison:
    out: list[EnvironmentDiff] = []
    policy: list[str] = []
    catalogue = load_catalogue()
    with checkout(repo, base) as base_tree, checkout(repo, head) as head_tree:
        before_config, _ = read_gate_config(base_tree)
        after_config, after_error = read_gate_config(head_tree)
        if after_error:
            policy.append(f"gate.yaml cannot be read: {after_error}")
        policy.extend(config_changes(before_config, after_config))
        names = list(dict.fromkeys([*environments(head_tree), *environments(base_tree)]))
        for env in names:
            before, after = _render(base_tree, env), _render(head_tree, env)
            if before.resources is None and after.resources is None:
                changes = [f"does not render: {after.error or before.error}"]
            elif before.resources is None:
                changes = [
                    (before.error and f"did not render at base: {before.error}") or "environment added"
                ]
            elif after.resources is None:
                changes = [(after.error and f"does not render: {after.error}") or "environment removed"]
            else:
                changes = semantic_changes(before.resources, after.resources, hardware)
            if before.resources is not None and after.resources is not None:
                policy.extend(suppression_changes(env, before.resources, after.resources))
            # Both sides are judged by the head's objectives: the question is what the change does.
            objectives = objectives_for(after_config, env)
            diff = EnvironmentDiff(env, changes, before, after, objectives)
            if changes:
                _simulate(before, env, hardware, catalogue, objectives, scenarios, seeds)
                _simulate(after, env, hardware, catalogue, objectives, scenarios, seeds)
                if findings and after.resources is not None:
                    diff.findings = gate_findings(head_tree, env)
            out.append(diff)
    return Comparison(out, policy)


def _pairs(d: EnvironmentDiff) -> list[ScenarioPair]:
    before = {r.scenario.name: r for r in d.before.scenarios}
    after = {r.scenario.name: r for r in d.after.scenarios}
    return [
        ScenarioPair(s.name, s.description, before.get(s.name), after.get(s.name))
        for s in SCENARIOS
        if s.name in before or s.name in after
    ]


def markdown(diffs: Sequence[EnvironmentDiff], base: str, head: str | None, hardware: str,
             policy: Sequence[str] = (), seeds: int = len(DEFAULT_SEEDS)) -> str:
    changed = [d for d in diffs if d.changes]
    verdicts = [f"**{d.name}**: {verdict(d.name, _pairs(d), d.findings)}" for d in changed]
    lines = [COMMENT_MARKER, "## Scaling impact", ""]
    if verdicts:
        lines += [" · ".join(verdicts), ""]
    lines += [
        f"Base `{base}` → head `{head or 'working tree'}`; hardware profile `{hardware}`; each scenario over "
        f"{seeds} seed(s) with Spot interruptions on: the median, and the worst seed in brackets where it "
        "differs.",
        "",
    ]
    if policy:
        lines += ["### Policy changes", "", "This change edits the gate's own policy:", ""]
        lines += [f"- {change}" for change in policy]
        lines.append("")
    if not changed:
        lines.append("No change to any rendered environment.")
    for d in changed:
        lines += [f"### {d.name}", "", "Changes:", ""]
        lines += [f"- {c}" for c in d.changes]
        lines.append("")
        if d.findings is not None:
            if d.findings.error:
                lines += [f"The gate could not run on the head revision: {d.findings.error}", ""]
            elif d.findings.lines:
                lines += [
                    f"The gate on the head revision: {len(d.findings.lines)} finding(s), "
                    f"{d.findings.failing} failing the run:",
                    "",
                ]
                lines += [f"- {line}" for line in d.findings.lines]
                lines.append("")
            else:
                lines += ["The gate passes the head revision with no finding.", ""]
        if d.after.consequences or d.before.consequences:
            lines += ["What the configuration means (what the change alters first):", ""]
            changed_lines, same = [], []
            for key, text in d.after.consequences.items():
                old = d.before.consequences.get(key)
                if old is None or old == text:
                    (same if old == text else changed_lines).append(f"- {text}")
                else:
                    changed_lines.append(f"- **now:** {text} (before: {old})")
            changed_lines += [
                f"- **no longer:** {old}" for key, old in d.before.consequences.items()
                if key not in d.after.consequences
            ]
            lines += changed_lines + same
            lines.append("")
        for pair in _pairs(d):
            lines += scenario_table(pair, d.objectives)
            lines.append("")
        notes = sorted(
            {n for r in d.after.scenarios for n in r.notes} - {n for r in d.before.scenarios for n in r.notes}
        )
        lines += [f"> {n}" for n in notes] + [""] if notes else []
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    scenarios = tuple(args.scenario or [s.name for s in SCENARIOS])
    seeds = tuple(range(1, max(args.seeds, 1) + 1))
    try:
        hardware = load_hardware_profile(args.hardware)
        repo = repository_root(args.repo)
        comparison = compare(repo, args.base, args.head, hardware, scenarios, seeds, not args.no_findings)
    except (ValueError, RevisionError) as exc:
        print(f"gate diff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    diffs = comparison.environments
    for change in comparison.policy:
        print(f"policy: {change}")
    for d in diffs:
        for change in d.changes:
            print(f"{d.name}: {change}")
    if not any(d.changes for d in diffs):
        print("no change to any rendered environment")
    if args.output:
        args.output.write_text(
            markdown(diffs, args.base, args.head, hardware.name, comparison.policy, len(seeds)),
            encoding="utf-8",
        )
    if args.plot:
        from tools.validate.simulate.plot import plot_comparison

        args.plot.mkdir(parents=True, exist_ok=True)
        for d in diffs:
            if d.before.scenarios or d.after.scenarios:
                target = args.plot / f"{d.name}.png"
                plot_comparison(_pairs(d), target, f"{d.name}: base → head", d.objectives)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate diff", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
