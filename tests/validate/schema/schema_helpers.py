"""Shared helpers of the schema tests: example documents, edits by path, the upstream CRDs."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.validate.model import Resource, format_path

EXAMPLES = Path(__file__).parent / "examples"
REPO_ROOT = Path(__file__).resolve().parents[3]


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


def edited(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with `path` (`spec.a[0].b`) set to `value`."""
    result = copy.deepcopy(doc)
    tokens = [int(t) if t.isdigit() else t for t in re.findall(r"[^.\[\]]+", path)]
    node: Any = result
    for token in tokens[:-1]:
        node = node[token]
    node[tokens[-1]] = value
    return result


def renamed(doc: dict[str, Any], path: str, new_key: str) -> dict[str, Any]:
    """A copy of `doc` with the key at `path` renamed (a typo), keeping its value."""
    result = copy.deepcopy(doc)
    tokens = [int(t) if t.isdigit() else t for t in re.findall(r"[^.\[\]]+", path)]
    node: Any = result
    for token in tokens[:-1]:
        node = node[token]
    node[new_key] = node.pop(tokens[-1])
    return result


def resource(doc: dict[str, Any]) -> Resource:
    return Resource(doc=doc, overlay="test")


def found(violations: list[Any]) -> list[tuple[str, str]]:
    return sorted((v.rule_id, format_path(v.segments)) for v in violations)


def upstream_crds() -> Path:
    """The upstream CRDs kept beside the checkout (CI has shared/ next to the clone).

    GATE_UPSTREAM_CRDS points elsewhere, for a checkout that does not sit next to shared/.
    """
    location = Path(os.environ.get("GATE_UPSTREAM_CRDS") or REPO_ROOT.parent / "shared" / "crds")
    if not (location / "karpenter.sh_nodepools.yaml").is_file():
        pytest.skip("upstream CRDs not available beside the checkout")
    return location
