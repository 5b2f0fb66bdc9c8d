"""Rendering an overlay into resources, for the simulator and the diff: the gate's own renderer
(`tools.validate.render`, the exact kustomize invocation Argo CD uses), behind one function."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools.validate import render as gate_render
from tools.validate.model import Resource


class RenderError(RuntimeError):
    pass


def _repository_root(directory: Path) -> Path:
    try:
        proc = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return directory
    return Path(proc.stdout.strip()) if proc.returncode == 0 else directory


def render_overlay(
    directory: Path, overlay: str | None = None, repo_root: Path | None = None
) -> list[Resource]:
    if not directory.is_dir() or not gate_render.is_kustomization_dir(directory):
        raise RenderError(f"{directory}: no kustomization.yaml")
    root = repo_root or _repository_root(directory)
    try:
        rendered = gate_render.render(directory, root)
    except gate_render.RenderError as exc:
        raise RenderError(str(exc)) from None
    if overlay is not None:
        for res in rendered.resources:
            res.overlay = overlay
    return rendered.resources
