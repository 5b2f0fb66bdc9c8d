"""Shared fixtures of the gate's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.validate.engine import STRICT_ENV

FIXTURES = Path(__file__).parent / "fixtures"
TREE = FIXTURES / "tree"


@pytest.fixture(autouse=True)
def _rule_crashes_fail_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # A check that raises must fail the test with its traceback, not become an input/rule-crashed finding.
    monkeypatch.setenv(STRICT_ENV, "1")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the fixture repository (base/web, overlays/{dev,broken,replaced,suppressed})."""
    target = tmp_path / "repo"
    shutil.copytree(TREE, target)
    return target
