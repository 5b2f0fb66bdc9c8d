"""Three ordinary pull requests on this repository whose scaling comment once led to the wrong decision.
For each, the comment alone must now show the real consequence:

1. KEDA target 25 → 10 in prod: "a bit faster" on the spike, but over a day it costs more and each pod runs
   about 10 of its 32 slots.
2. --max-num-seqs 32 → 64 in prod: time in the system over a day does not change, and the gate's own
   validation fails it (the KV cache of 64 sequences at --max-model-len does not fit an A10G).
3. prod narrowed to Spot only: cheaper, and under Spot stress users lose; the gate's on-demand-fallback
   rule fails it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.validate.diff.command import COMMENT_MARKER, main

REPOSITORY = Path(__file__).resolve().parents[3]
TREES = ("base", "overlays", "apps", "clusters", "gate.yaml")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def _pull_request(tmp: Path, edit) -> str:
    repo = tmp / "repo"
    repo.mkdir()
    for name in TREES:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, repo / name)
        else:
            shutil.copy2(source, repo / name)
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "base")
    edit(repo)
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "head")
    out = tmp / "comment.md"
    assert main(["--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--output", str(out)]) == 0
    return out.read_text()


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def _row(comment: str, scenario: str, label: str) -> tuple[str, str, str]:
    section = comment.split(f"**{scenario}**:", 1)[1].split("\n\n**", 1)[0]
    match = re.search(rf"^\| {re.escape(label)}[^|]* \| ([^|]+) \| ([^|]+) \| ([^|]*) \|$", section, re.M)
    assert match, (scenario, label, section)
    before, after, change = match.groups()
    return before.strip(), after.strip(), change.strip()


def _verdict(comment: str) -> str:
    lines = comment.splitlines()
    assert lines[:2] == [COMMENT_MARKER, "## Scaling impact"]
    return lines[3]


@pytest.fixture(scope="module")
def keda_target_10(tmp_path_factory) -> str:
    def edit(repo: Path) -> None:
        with (repo / "overlays" / "prod" / "keda-warm-replicas.yaml").open("a") as patch:
            patch.write(
                "  advanced:\n    scalingModifiers:\n"
                '      formula: "running + (waiting * 10) + (unserved * 25)"\n'
                '      target: "10"\n      activationTarget: "0"\n      metricType: AverageValue\n'
            )

    return _pull_request(tmp_path_factory.mktemp("keda"), edit)


@pytest.fixture(scope="module")
def max_num_seqs_64(tmp_path_factory) -> str:
    def edit(repo: Path) -> None:
        (repo / "overlays" / "prod" / "vllm-batch.yaml").write_text(
            "- op: test\n  path: /spec/template/spec/containers/0/args/10\n  value: --max-num-seqs\n"
            '- op: replace\n  path: /spec/template/spec/containers/0/args/11\n  value: "64"\n'
        )
        _replace(
            repo / "overlays" / "prod" / "kustomization.yaml",
            "  - path: disruption-budgets.yaml",
            "  - path: vllm-batch.yaml\n    target:\n      kind: Deployment\n      name: vllm\n"
            "  - path: disruption-budgets.yaml",
        )

    return _pull_request(tmp_path_factory.mktemp("seqs"), edit)


@pytest.fixture(scope="module")
def spot_only(tmp_path_factory) -> str:
    def edit(repo: Path) -> None:
        capacity = repo / "overlays" / "prod" / "nodepool-capacity.yaml"
        _replace(capacity, "value: [spot, on-demand]", "value: [spot]")

    return _pull_request(tmp_path_factory.mktemp("spot"), edit)


def test_keda_target_10_costs_more_over_a_day_and_leaves_pods_a_third_full(keda_target_10: str) -> None:
    verdict = _verdict(keda_target_10)
    assert verdict.startswith("**prod**: worse: cost +")
    assert "(day)" in verdict.split("better:")[0]
    before, after, _ = _row(keda_target_10, "day", "GPU-hours")
    assert float(after) > float(before) * 1.15, (before, after)
    assert "with no queue, a replica is added once the running requests pass 10 per pod: at the target " \
           "each pod runs about 10 of its 32 slots" in keda_target_10
    assert "the formula reaches maxReplicaCount 10 at 10 waiting requests across the fleet" in keda_target_10
    # One scenario alone would mislead: all three are there.
    assert all(f"**{name}**:" in keda_target_10 for name in ("spike", "day", "spot-stress"))


def test_max_num_seqs_64_fails_the_gate_and_does_not_shorten_a_day(max_num_seqs_64: str) -> None:
    verdict = _verdict(max_num_seqs_64)
    assert verdict.startswith("**prod**: **the gate fails the head revision** (2 finding(s), listed below)")
    assert (
        "- **error** `gpu/model-fits-gpu-memory` Deployment/inference/vllm "
        "(overlays/prod/vllm-batch.yaml:6): mistral-7b-awq needs 36.1 GiB "
        "(weights 4.1 GiB + KV cache 64 seqs x 4096 tokens x 128 KiB) but a a10g"
    ) in max_num_seqs_64
    assert _row(max_num_seqs_64, "day", "end-to-end latency p95") == ("3.4 s", "3.4 s", "0")
    # Requests move from the queue into a slower batch: every token takes longer.
    before, after, _ = _row(max_num_seqs_64, "spike", "inter-token latency p95")
    assert float(after.split()[0]) > float(before.split()[0])
    assert "a full batch of 64 decodes at 20.3 ms per token" in max_num_seqs_64
    assert "--max-num-seqs 64 fits at the workload's lengths, but only 32 requests of --max-model-len fit" \
        in max_num_seqs_64


def test_spot_only_shows_the_spot_risk_and_fails_the_gate(spot_only: str) -> None:
    verdict = _verdict(spot_only)
    assert verdict.startswith("**prod**: **the gate fails the head revision** (1 finding(s), listed below)")
    worse = verdict.split("worse: ", 1)[1].split(" — better:")[0]
    assert worse.startswith("SLO attainment -") and "(spot-stress)" in worse
    assert "- **error** `spot/on-demand-fallback` NodePool/gpu-inference" in spot_only
    before, after, _ = _row(spot_only, "spot-stress", "SLO attainment")
    assert float(after.split()[0]) < float(before.split()[0]) - 10
    assert "NodePool gpu-inference launches Spot only: when Spot is short no node launches" in spot_only
    # Not "no impact": the rows differ where Spot matters.
    assert _row(spot_only, "spot-stress", "failed")[2] not in ("", "0")
