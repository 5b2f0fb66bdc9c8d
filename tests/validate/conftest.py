"""Shared fixtures of the gate's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.validate.engine import STRICT_ENV
from tools.validate.render_cache import CACHE_DIR_ENV

FIXTURES = Path(__file__).parent / "fixtures"
TREE = FIXTURES / "tree"


@pytest.fixture(autouse=True)
def _rule_crashes_fail_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # A check that raises must fail the test with its traceback, not become an input/rule-crashed finding.
    monkeypatch.setenv(STRICT_ENV, "1")


@pytest.fixture(autouse=True)
def _render_cache_of_its_own(monkeypatch: pytest.MonkeyPatch,
                             tmp_path_factory: pytest.TempPathFactory) -> None:
    # `gate validate` keeps kustomize's outputs between runs; each test starts from an empty cache.
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("render-cache")))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the fixture repository (base/web, overlays/{dev,broken,replaced,suppressed})."""
    target = tmp_path / "repo"
    shutil.copytree(TREE, target)
    return target


REPOSITORY = Path(__file__).parents[2]
REPOSITORY_PARTS = ("base", "overlays", "apps", "clusters", "gate.yaml")


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A writable copy of this repository's manifests and gate.yaml, for pull-request-like edits."""
    target = tmp_path / "repo"
    target.mkdir()
    for part in REPOSITORY_PARTS:
        source = REPOSITORY / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


def edit(root: Path, file: str, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in `file` (a test fails loudly if the text moved)."""
    path = root / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{file}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def finding_key(finding: dict[str, object]) -> tuple[object, ...]:
    """(rule, Kind/namespace/name, file, line) of a finding of the `json` format."""
    resource = finding["resource"]
    ref = None
    if isinstance(resource, dict):
        parts = (resource["kind"], resource["namespace"], resource["name"])
        ref = "/".join(str(part) for part in parts if part)
    return finding["rule"], ref, finding["file"], finding["line"]
