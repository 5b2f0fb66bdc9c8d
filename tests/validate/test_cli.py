"""`gate` on the command line: exit codes, outputs, discovery, rules and docs, delegated commands."""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tools.validate import cli
from tools.validate.cli import main
from tools.validate.config import load_config
from tools.validate.engine import RunOptions, discover_targets, run
from tools.validate.model import Report
from tools.validate.rules import default_registry, meta
from tools.validate.rules.base import Registry


def fake_formats() -> Mapping[str, Callable[..., str]]:
    def formatter(name: str) -> Callable[..., str]:
        def render(report: Report, options: object = None) -> str:
            rules = ",".join(sorted(f.rule_id for f in report.failing()))
            return f"[{name}] overlays={','.join(report.overlays)} failing={rules}\n"

        return render

    return {name: formatter(name) for name in ("text", "github", "sarif", "junit")}


@pytest.fixture
def formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in output formats and only the gate's own rules: these tests are about the command line,
    not about what the policy rules find in the fixture (tests/validate/rules covers that)."""
    monkeypatch.setattr(cli, "_formats", fake_formats)
    monkeypatch.setattr(cli, "default_registry", lambda: Registry(meta.RULES))


def test_clean_overlay_exits_0(tree: Path, formats: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree)])

    assert code == 0
    assert capsys.readouterr().out == "[text] overlays=overlays/dev failing=\n"


def test_findings_at_the_fail_level_exit_1(tree: Path, formats: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    overlay = str(tree / "overlays" / "suppressed")

    # the fixture's suppressions name gitops/fixture-every-resource, which only the engine tests register
    assert main(["validate", overlay, "--repo-root", str(tree)]) == 1
    failing = ",".join(["gitops/suppression-unknown-rule"] * 4)
    assert capsys.readouterr().out == f"[text] overlays=overlays/suppressed failing={failing}\n"

    (tree / "gate.yaml").write_text("rules:\n  gitops/suppression-unknown-rule: {severity: warning}\n")
    assert main(["validate", overlay, "--repo-root", str(tree)]) == 1
    capsys.readouterr()
    assert main(["validate", overlay, "--repo-root", str(tree), "--fail-level", "error"]) == 0
    assert capsys.readouterr().out == "[text] overlays=overlays/suppressed failing=\n"


def test_fail_level_from_the_config(tree: Path, formats: None, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "gate.yaml").write_text(
        "fail_level: error\nrules:\n  gitops/suppression-unknown-rule: {enabled: false}\n"
    )

    code = main(["validate", str(tree / "overlays" / "suppressed"), "--repo-root", str(tree)])

    assert code == 0
    assert capsys.readouterr().out == "[text] overlays=overlays/suppressed failing=\n"


def test_several_formats_each_to_its_own_file(tree: Path, tmp_path: Path, formats: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    sarif, junit = tmp_path / "out" / "gate.sarif", tmp_path / "gate.xml"

    code = main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree), "--format", "text",
                 "--format", f"sarif={sarif}", "--format", f"junit={junit}"])

    assert code == 0
    assert capsys.readouterr().out == "[text] overlays=overlays/dev failing=\n"
    assert sarif.read_text() == "[sarif] overlays=overlays/dev failing=\n"
    assert junit.read_text() == "[junit] overlays=overlays/dev failing=\n"


def test_github_and_text_by_default_under_github_actions(tree: Path, formats: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    assert main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree)]) == 0
    assert capsys.readouterr().out == (
        "[github] overlays=overlays/dev failing=\n[text] overlays=overlays/dev failing=\n"
    )


def test_unknown_format_exits_2(tree: Path, formats: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree), "--format", "yaml"])

    assert code == 2
    assert capsys.readouterr().err == (
        "gate: --format yaml: unknown format 'yaml' (choose from text, github, sarif, junit)\n"
    )


def test_without_paths_every_entry_point_is_validated(tree: Path, formats: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "overlays" / "broken").rename(tree / "broken")  # keep the failing one out of discovery
    (tree / "clusters" / "dev").mkdir(parents=True)
    (tree / "clusters" / "dev" / "kustomization.yaml").write_text("resources: [../../overlays/dev]\n")

    assert main(["validate", "--repo-root", str(tree)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("[text] overlays=overlays/replaced,overlays/suppressed,clusters/dev failing=")

    assert main(["validate", "--repo-root", str(tree), "--env", "dev"]) == 0
    assert capsys.readouterr().out == "[text] overlays=clusters/dev failing=\n"


def test_missing_path_exits_2(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tree / "overlays" / "qa"), "--repo-root", str(tree)]) == 2
    assert capsys.readouterr().err == "gate: overlays/qa: no such file or directory\n"


def test_rules_lists_every_registered_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [rule.id for rule in default_registry()]
    assert "gitops/suppression-needs-reason" in listed


def test_docs_are_written_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "--check", "--repo-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "gate: docs/rules.md is stale: run `gate docs`\n"

    assert main(["docs", "--repo-root", str(tmp_path)]) == 0
    text = (tmp_path / "docs" / "rules.md").read_text()
    for rule in default_registry():
        assert f"### {rule.id}\n" in text
    assert "**Why is this bad.** A suppression without a reason" in text
    assert main(["docs", "--check", "--repo-root", str(tmp_path)]) == 0

    (tmp_path / "docs" / "rules.md").write_text(text + "edited\n")
    assert main(["docs", "--check", "--repo-root", str(tmp_path)]) == 1


def test_simulate_and_diff_are_delegated(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[argparse.Namespace] = []
    module = types.ModuleType("fake_command")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--profile")

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.SUBCOMMAND_MODULES, "simulate", "fake_command")

    assert main(["simulate", "--profile", "burst"]) == 7
    assert seen[0].profile == "burst"


def test_a_missing_delegated_command_says_so(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.SUBCOMMAND_MODULES, "diff", "tools.validate.no_such_module.command")

    assert main(["diff"]) == 2
    assert capsys.readouterr().err == "gate diff: not available in this build\n"


def test_the_repository_rule_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    # after changing a rule or gate.yaml: `python -m tools.validate docs`
    code = main(["docs", "--check", "--repo-root", str(Path(__file__).parents[2])])
    assert code == 0, capsys.readouterr().err


def test_the_gate_runs_on_this_repository() -> None:
    # every deployed overlay renders and every rule runs without crashing (crashes raise under the tests)
    root = Path(__file__).parents[2]
    registry = default_registry()
    config = load_config(root / "gate.yaml", registry, "gate.yaml")

    report = run(discover_targets(root), RunOptions(repo_root=root, config=config, registry=registry))

    assert report.overlays == [
        "overlays/dev", "overlays/prod", "apps/dev", "apps/prod", "clusters/dev", "clusters/prod"
    ]
    assert report.resource_count > 0
    located = [f for f in report.findings if f.resource is not None]
    assert all(f.location is not None and (root / f.location.file).is_file() for f in located)
