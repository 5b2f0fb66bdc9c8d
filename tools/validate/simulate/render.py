"""Rendering an overlay into resources, for the simulator and the diff.

The one place that shells out to kustomize (kubectl's built-in, next to the running interpreter or on
PATH); swap it for the gate's own renderer when that lands.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tools.validate.model import Resource

RENDER_TIMEOUT_SECONDS = 120


class RenderError(RuntimeError):
    pass


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RenderError("kubectl not found (install the project: scripts/setup)")
    return found


def render_overlay(directory: Path, overlay: str | None = None) -> list[Resource]:
    if not (directory / "kustomization.yaml").is_file() and not (directory / "kustomization.yml").is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    try:
        proc = subprocess.run(
            [kubectl(), "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(f"{directory}: kustomize took longer than {RENDER_TIMEOUT_SECONDS} s") from None
    if proc.returncode != 0:
        raise RenderError(f"{directory}: kustomize failed: {proc.stderr.strip()}")
    try:
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    except yaml.YAMLError as exc:
        raise RenderError(f"{directory}: rendered output is not YAML ({exc})") from None
    name = overlay or directory.name
    return [Resource(doc=d, overlay=name, index=i) for i, d in enumerate(docs) if isinstance(d, dict)]
