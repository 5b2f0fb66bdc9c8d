"""Smoke test of the end-to-end benchmark (`bench.gate_vs_checkov`): a tree of two copies of the prod
overlay, one repeat, one run on the whole repository, without Checkov (its own virtualenv and
seconds of start-up belong to the full run, see bench/README.md). No timing target is asserted: only
that the tree is what the gate and kustomize see, and that every row is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import gate_vs_checkov
from tools.validate.loader import load_file


def test_the_tree_is_one_kustomization_listing_every_copy(tmp_path: Path) -> None:
    tree = gate_vs_checkov.build_tree(tmp_path, 86)

    overlay = tree.root / gate_vs_checkov.OVERLAY
    copies = sorted(p.name for p in overlay.glob("copy-*.yaml"))
    (spec,) = load_file(overlay / "kustomization.yaml").documents
    assert spec["resources"] == copies
    assert len(copies) == 2
    # two copies of prod's 43 resources (its Namespaces dropped) and the 2 Namespaces once
    assert tree.resources == 88
    assert (tree.root / "gate.yaml").is_file()


def test_a_quick_run_reports_the_repository_and_the_tree(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sizes", "86", "--repeats", "1", "--repository-runs", "1", "--no-checkov",
            "--work-dir", str(tmp_path)]

    assert gate_vs_checkov.main(argv) == 0

    out = capsys.readouterr().out
    figure = r"\d+\.\d{3}"
    for run in (r"cold \(render cache empty\)", r"warm \(render cache filled\)"):
        figures = rf" \| {figure}" * 4
        assert re.search(rf"^\| {run}{figures} \| 1 \|$", out, re.MULTILINE)
    two = r"\d+\.\d\d"
    row = rf"^\| 88 \| {two} \| {two} \| {two} \| {two} \| - \| {two} \| - \| - \| - \| 1 \|$"
    assert len(re.findall(row, out, re.MULTILINE)) == 2  # wall and CPU
    assert list((tmp_path / "cache-86").glob("*/*"))  # the warm run had a cache to read
