"""`gate diff` on a temporary git repository made from the simulator's fixture overlays."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools.validate.diff.command import COMMENT_MARKER, main

FIXTURE = Path(__file__).resolve().parents[1] / "simulate" / "fixtures" / "repo"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    _git(root, "init", "--quiet", "--initial-branch", "main")
    _git(
        root,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "--quiet",
        "--allow-empty",
        "-m",
        "empty",
    )
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "base")
    _edit(root / "overlays" / "prod" / "scaling.yaml", "maxReplicaCount: 10", "maxReplicaCount: 4")
    _edit(root / "base" / "vllm.yaml", '--max-num-seqs, "32"', '--max-num-seqs, "64"')
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-am", "head")
    return root


def test_diff_lists_domain_changes_per_environment(repo: Path, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "scaling.md"
    code = main(["--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--output", str(out_file),
                 "--scenario", "spike", "--seeds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "dev: vLLM --max-num-seqs 32 → 64",
        "prod: vLLM --max-num-seqs 32 → 64",
        "prod: KEDA maxReplicaCount 10 → 4",
    ]
    md = out_file.read_text()
    assert md.startswith(COMMENT_MARKER + "\n## Scaling impact\n")
    assert "### prod\n\nChanges:\n\n- vLLM --max-num-seqs 32 → 64\n- KEDA maxReplicaCount 10 → 4\n" in md
    # Peak replicas follow the new maximum in the before/after table.
    assert "| peak replicas | 10 | 4 | -60 % |" in md
    assert not list((repo / ".git" / "worktrees").glob("*")), "the base worktree must be removed"


def test_diff_against_the_working_tree(repo: Path, capsys) -> None:
    nodepool = repo / "base" / "nodepool.yaml"
    _edit(nodepool, "values: [spot, on-demand]", "values: [spot]")
    _edit(nodepool, "values: [a10g, l4]", "values: [a10g, l40s, t4]")
    _edit(nodepool, 'nvidia.com/gpu: "4"', 'nvidia.com/gpu: "8"')
    _edit(
        repo / "base" / "scaledobject.yaml",
        'formula: "running + (waiting * 10)"',
        'formula: "running + waiting"',
    )
    _edit(repo / "base" / "vllm.yaml", "image: vllm/vllm-openai:v0.32.0", "image: vllm/vllm-openai:v0.33.0")
    _edit(
        repo / "base" / "vllm.yaml", "terminationGracePeriodSeconds: 100", "terminationGracePeriodSeconds: 60"
    )
    assert main(["--repo", str(repo), "--base", "HEAD"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("dev: ")] == [
        "dev: vLLM image vllm/vllm-openai:v0.32.0 → vllm/vllm-openai:v0.33.0",
        "dev: NodePool gpu-inference: on-demand fallback removed",
        "dev: NodePool gpu-inference GPU types added l40s, t4; removed l4",
        "dev: NodePool gpu-inference limit nvidia.com/gpu 4 → 8",
        "dev: KEDA formula 'running + (waiting * 10)' → 'running + waiting'",
        "dev: Deployment vllm: spec.template.spec.terminationGracePeriodSeconds 100 → 60",
    ]
    # prod patches the GPU limit itself, so that line is absent there.
    assert "prod: NodePool gpu-inference limit nvidia.com/gpu 4 → 8" not in lines


def test_unknown_base_revision_exits_2(repo: Path, capsys) -> None:
    assert main(["--repo", str(repo), "--base", "no-such-branch"]) == 2
    assert capsys.readouterr().err == "gate diff: unknown revision 'no-such-branch'\n"


def test_no_change(repo: Path, capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "scaling.md"
    assert main(["--repo", str(repo), "--base", "HEAD", "--output", str(out_file)]) == 0
    assert capsys.readouterr().out == "no change to any rendered environment\n"
    assert "No change to any rendered environment." in out_file.read_text()


BASE_POLICY = """\
fail_level: warning
limits:
  max_depth: 64
environments:
  prod:
    rules:
      spot/on-demand-fallback: {require_on_demand_fallback: true}
"""
HEAD_POLICY = """\
fail_level: error
kustomize:
  build_options: [--helm-kube-version=1.33]
limits:
  max_depth: 128
environments:
  prod:
    rules:
      spot/on-demand-fallback: {require_on_demand_fallback: false, severity: info}
      scaling/min-warm-replicas: {enabled: false}
"""
SUPPRESSION = """\
  annotations:
    gate.eks-llm-inference.io/suppress: |
      - rule: security/run-as-non-root
        reason: the CPU test image runs as root
        expires: {expires}
"""


def _commit_all(repo: Path, message: str) -> None:
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", message)


def test_a_change_that_weakens_the_policy_is_listed_under_policy_changes(
    repo: Path, tmp_path: Path, capsys
) -> None:
    (repo / "gate.yaml").write_text(BASE_POLICY)
    deployment = "kind: Deployment\nmetadata:\n  name: vllm\n"
    _edit(repo / "base" / "vllm.yaml", deployment, deployment + SUPPRESSION.format(expires="2027-01-31"))
    _commit_all(repo, "policy")
    (repo / "gate.yaml").write_text(HEAD_POLICY)
    _edit(repo / "base" / "vllm.yaml", "expires: 2027-01-31\n",
          "expires: 2031-12-31\n      - rule: security/no-privilege-escalation\n        reason: later\n")
    out_file = tmp_path / "scaling.md"

    assert main(["--repo", str(repo), "--base", "HEAD", "--output", str(out_file), "--no-findings",
                 "--scenario", "spike", "--seeds", "1"]) == 0

    policy = [line for line in capsys.readouterr().out.splitlines() if line.startswith("policy: ")]
    expected = [
        "gate.yaml fail_level: warning → error (weakens: fewer findings fail the run)",
        "gate.yaml limits.max_depth: 64 → 128 (weakens: limit raised)",
        "gate.yaml environments.prod.rules.spot/on-demand-fallback.require_on_demand_fallback: true → false "
        "(rule option changed: check it does not loosen the rule)",
        "gate.yaml kustomize.build_options: unset → [--helm-kube-version=1.33] "
        "(changes how every overlay renders)",
        "gate.yaml environments.prod.rules.spot/on-demand-fallback.severity: unset → info "
        "(weakens: severity lowered)",
        "gate.yaml environments.prod.rules.scaling/min-warm-replicas.enabled: unset → false "
        "(weakens: rule disabled)",
        "dev: Deployment/inference/vllm: suppression of security/no-privilege-escalation added "
        "(weakens: no expiry)",
        "dev: Deployment/inference/vllm: suppression of security/run-as-non-root weakens: extended, "
        "until 2027-01-31 → until 2031-12-31",
        "prod: Deployment/inference/vllm: suppression of security/no-privilege-escalation added "
        "(weakens: no expiry)",
        "prod: Deployment/inference/vllm: suppression of security/run-as-non-root weakens: extended, "
        "until 2027-01-31 → until 2031-12-31",
    ]
    assert policy == [f"policy: {line}" for line in expected]
    md = out_file.read_text()
    heading = "\n### Policy changes\n\nThis change edits the gate's own policy:\n\n"
    assert md.startswith(COMMENT_MARKER + "\n## Scaling impact\n\n")
    assert heading in md
    assert "".join(f"- {line}\n" for line in expected) in md


def test_an_unchanged_policy_lists_no_policy_change(repo: Path, capsys) -> None:
    (repo / "gate.yaml").write_text(BASE_POLICY)
    _commit_all(repo, "policy")

    assert main(["--repo", str(repo), "--base", "HEAD"]) == 0
    assert capsys.readouterr().out == "no change to any rendered environment\n"


def test_a_looser_latency_objective_is_marked_as_weakening() -> None:
    from tools.validate.diff.policy import config_changes

    before = {"environments": {"prod": {"slo": {"ttft_seconds": 2, "e2e_seconds": 30}}}}
    after = {"environments": {"prod": {"slo": {"ttft_seconds": 5, "e2e_seconds": 20}}}}
    assert config_changes(before, after) == [
        "gate.yaml environments.prod.slo.ttft_seconds: 2 → 5 "
        "(weakens: latency objective loosened, the comment scores against it)",
        "gate.yaml environments.prod.slo.e2e_seconds: 30 → 20",
    ]
