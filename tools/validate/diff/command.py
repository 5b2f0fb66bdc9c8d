"""`gate diff --base REV [--head REV]`: what a change does to scaling, per environment.

Renders every environment at both revisions, lists the semantic changes in domain words, simulates
each overlay that runs vLLM under the default load at both revisions, and writes Markdown for a pull
request comment (`--output`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.validate.diff.policy import config_changes, read_gate_config, suppression_changes
from tools.validate.diff.revisions import RevisionError, checkout, environments, repository_root
from tools.validate.diff.semantic import semantic_changes
from tools.validate.model import Resource
from tools.validate.simulate.command import full_batch_seconds
from tools.validate.simulate.engine import SimOptions, simulate
from tools.validate.simulate.hardware import DEFAULT_HARDWARE, HardwareProfile, load_hardware_profile
from tools.validate.simulate.load import DEFAULT_LOAD, LoadProfile, load_profile
from tools.validate.simulate.manifests import read_cluster
from tools.validate.simulate.render import RenderError, render_overlay
from tools.validate.simulate.summary import Summary, summarize

EXIT_OK, EXIT_USAGE = 0, 2
COMMENT_MARKER = "<!-- gate-scaling-impact -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="the revision to compare against (e.g. origin/main)")
    parser.add_argument("--head", help="the revision under review (default: the working tree)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="a directory inside the repository")
    parser.add_argument("--output", type=Path, help="write the PR comment (Markdown) here")
    parser.add_argument(
        "--profile", default=DEFAULT_LOAD, help=f"load for the simulation (default {DEFAULT_LOAD})"
    )
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE, help="hardware profile name or YAML file")


@dataclass
class Side:
    resources: list[Resource] | None
    error: str | None = None
    summary: Summary | None = None


@dataclass
class EnvironmentDiff:
    name: str
    changes: list[str]
    before: Side
    after: Side


def _render(tree: Path, env: str) -> Side:
    path = environments(tree).get(env)
    if path is None:
        return Side(None)
    try:
        return Side(render_overlay(path, env, repo_root=tree))
    except RenderError as exc:
        return Side(None, str(exc).replace(str(tree), "."))


def _simulate(side: Side, env: str, hardware: HardwareProfile, load_spec: str) -> None:
    if side.resources is None or not any(r.kind == "Deployment" for r in side.resources):
        return
    try:
        cluster = read_cluster(env, side.resources)
    except ValueError:
        return  # not a vLLM overlay (or one the simulator cannot read): changes only
    load: LoadProfile = load_profile(
        load_spec, full_batch_seconds(cluster, hardware), hardware.k6_think_seconds
    )
    # Deterministic on both sides: no random Spot interruptions in a before/after comparison.
    options = SimOptions(spot_interruptions=False)
    side.summary = summarize(
        simulate(cluster, hardware, load, options), hardware.timing("node_minimum_billed_seconds")
    )


@dataclass
class Comparison:
    environments: list[EnvironmentDiff]
    policy: list[str]  # changes to gate.yaml and to suppressions, weakening ones marked


def compare(
    repo: Path, base: str, head: str | None, hardware: HardwareProfile, load_spec: str
) -> Comparison:
    out: list[EnvironmentDiff] = []
    policy: list[str] = []
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
            diff = EnvironmentDiff(env, changes, before, after)
            if changes:
                _simulate(before, env, hardware, load_spec)
                _simulate(after, env, hardware, load_spec)
            out.append(diff)
    return Comparison(out, policy)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f} s"


def _rows(s: Summary | None) -> list[str]:
    if s is None:
        return ["-"] * 5
    return [
        _seconds(s.time_to_capacity) if s.wait_p95 else "no queue",
        "-" if s.wait_p95 is None else f"{s.wait_p95:.0f} s",
        str(s.peak_ready),
        f"{s.gpu_hours:.2f}",
        f"${s.cost:.2f}",
    ]


def markdown(diffs: Sequence[EnvironmentDiff], base: str, head: str | None, load: str, hardware: str,
             policy: Sequence[str] = ()) -> str:
    lines = [COMMENT_MARKER]
    if policy:
        lines += ["## Policy changes", "", "This change edits the gate's own policy:", ""]
        lines += [f"- {change}" for change in policy]
        lines.append("")
    lines += [
        "## Scaling impact",
        "",
        f"Base `{base}` → head `{head or 'working tree'}`. Simulated load `{load}`, hardware profile "
        f"`{hardware}`, Spot interruptions off.",
        "",
    ]
    changed = [d for d in diffs if d.changes]
    if not changed:
        lines.append("No change to any rendered environment.")
    for d in changed:
        lines += [f"### {d.name}", ""]
        lines += [f"- {c}" for c in d.changes]
        lines.append("")
        if d.before.summary or d.after.summary:
            labels = ["time to capacity", "p95 queue wait", "peak replicas", "GPU-hours", "estimated cost"]
            lines += ["| | before | after |", "| --- | ---: | ---: |"]
            for label, old, new in zip(labels, _rows(d.before.summary), _rows(d.after.summary), strict=True):
                lines.append(f"| {label} | {old} | {new} |")
            notes = sorted(
                set(d.after.summary.notes if d.after.summary else ())
                - set(d.before.summary.notes if d.before.summary else ())
            )
            lines += [""] + [f"> {n}" for n in notes] if notes else []
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        hardware = load_hardware_profile(args.hardware)
        repo = repository_root(args.repo)
        comparison = compare(repo, args.base, args.head, hardware, args.profile)
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
            markdown(diffs, args.base, args.head, args.profile, hardware.name, comparison.policy),
            encoding="utf-8",
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate diff", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
