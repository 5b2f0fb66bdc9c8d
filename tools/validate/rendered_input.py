"""Manifests that are already rendered (by Helm, by another tool, or by `kubectl get -o yaml`), checked as
they are: a YAML or JSON file, a directory of them, or standard input.

Each input becomes one target of the run, as an overlay would: its resources carry the file they were read
from as their origin, so a finding points at the line of that file (for standard input, the line of the
text read; its origin is `<stdin>`). A `kind: List` document is expanded into its items. Every file goes
through the loader's limits (size, nesting depth, alias expansion), as kustomize's input does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools.validate.loader import InputError, Limits, load_text, read_text
from tools.validate.model import Resource
from tools.validate.render import Rendered

STDIN = "-"
STDIN_NAME = "<stdin>"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class RenderedInput:
    """One rendered target and the texts it was read from (by origin), for finding lines."""

    rendered: Rendered
    texts: dict[str, str]


def display(path: Path, repo_root: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root).as_posix()
    except ValueError:
        return str(path)


def manifest_files(directory: Path) -> list[Path]:
    """The manifest files below a directory of rendered manifests, in a stable order."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
    if not files:
        raise InputError(str(directory), "holds neither a kustomization nor any .yaml, .yml or .json file")
    return files


def load_rendered(name: str, sources: Iterable[tuple[str, str]], limits: Limits) -> RenderedInput:
    """A target named `name` from (origin, text) pairs."""
    resources: list[Resource] = []
    duplicates = []
    texts: dict[str, str] = {}
    for origin, text in sources:
        texts[origin] = text
        loaded = load_text(text, origin, limits)
        duplicates.extend(loaded.duplicates)
        for doc, line in zip(loaded.documents, loaded.lines or [1] * len(loaded.documents), strict=False):
            if not isinstance(doc, dict):
                raise InputError(origin, "a document is not a mapping (a Kubernetes object)", line)
            items = doc.get("items") if doc.get("kind") == "List" else [doc]
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    raise InputError(origin, "an item of a List is not a mapping", line)
                resources.append(Resource(item, name, origin=origin, index=len(resources)))
    return RenderedInput(Rendered(name, resources, duplicates), texts)


def read_target(path: Path, repo_root: Path, limits: Limits) -> RenderedInput:
    """A file, or a directory of files, of rendered manifests."""
    files = manifest_files(path) if path.is_dir() else [path]
    return load_rendered(
        display(path, repo_root),
        ((display(file, repo_root), read_text(file, display(file, repo_root), limits)) for file in files),
        limits,
    )


def read_stdin(text: str, limits: Limits) -> RenderedInput:
    return load_rendered(STDIN_NAME, [(STDIN_NAME, text)], limits)
