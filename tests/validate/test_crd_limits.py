"""`--crd` files are read with the gate's bounded loader: hostile CRD input is exit 2 with a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.validate.cli import main

# Nine levels of ten aliases each: 10**9 nodes if expanded.
ALIAS_BOMB = "\n".join(
    ["apiVersion: apiextensions.k8s.io/v1", "kind: CustomResourceDefinition", "a0: &a0 [lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
) + "\n"


def validate_with_crd(tree: Path, crd: Path) -> int:
    return main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree), "--crd", str(crd)])


def test_an_alias_bomb_crd_is_refused(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crd = tmp_path / "bomb.yaml"
    crd.write_text(ALIAS_BOMB, encoding="utf-8")

    assert validate_with_crd(tree, crd) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"gate: cannot load schemas: {crd}:8: aliases expand to more than 100000 nodes (alias bomb?)\n"
    )


def test_a_50_mb_crd_file_is_refused_unread(tree: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    crd = tmp_path / "huge.yaml"
    with crd.open("wb") as handle:  # sparse: 50 MB on paper, nothing on disk
        handle.truncate(50 * 1024 * 1024)

    assert validate_with_crd(tree, crd) == 2
    assert capsys.readouterr().err == (
        f"gate: cannot load schemas: {crd}: file is 52428800 bytes, over the 20971520-byte limit\n"
    )


def test_the_limits_of_gate_yaml_apply_to_crd_files(tree: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "gate.yaml").write_text("limits:\n  max_file_bytes: 64\n", encoding="utf-8")
    crd = tmp_path / "crd.yaml"
    crd.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n" + "#" * 100 + "\n")

    assert validate_with_crd(tree, crd) == 2
    assert capsys.readouterr().err == (
        f"gate: cannot load schemas: {crd}: file is 168 bytes, over the 64-byte limit\n"
    )
