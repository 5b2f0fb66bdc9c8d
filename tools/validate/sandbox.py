"""The render's sandbox: what kustomize may read, and how it runs.

The gate runs on every pull request, so everything it renders is untrusted. Before kustomize starts,
`walk` follows the kustomization graph from the overlay and checks every file kustomize will read,
whatever its name:

- each path, symlinks resolved, stays inside the repository; a file outside it is never opened;
- a path that is not a file or directory of the repository is refused: kustomize would fetch it as a
  remote resource (`https://...`, `github.com/org/repo?ref=...`, `git@...`), so the render never
  reaches the network;
- each file is within `Limits.max_bytes`, all of them together within `Limits.max_total_bytes`;
- each file kustomize parses as YAML (JSON is YAML) is parsed first by the gate's bounded loader:
  alias bombs, nesting depth and node counts are refused before kustomize expands them.

The fields of kustomize's `Kustomization` type that name files are declared once, in `PATH_FIELDS`;
every other field kustomize knows is listed in `PLAIN_FIELDS`. A field in neither is refused, since
it could name a file the walk does not know about.

Then `kustomize_environment` and `limit_resources` make the process itself a sandbox: a clean
environment (a temporary empty HOME, no kubeconfig, kuberc switched off, a PATH with nothing on it, no
proxy variables), a memory cap (`RLIMIT_DATA`, which counts a Go program's heap; the default 2 GiB is
twenty times what the repository's largest overlay needs) and an output cap (`RLIMIT_FSIZE` on the
files its output goes to, at the size limit the gate reads it with).

Build options: `gate.yaml` comes with the pull request, so the options it may add to `kustomize
build` are limited to `ALLOWED_CONFIG_BUILD_OPTIONS`, which change how manifests are rendered and
nothing else. Options that run programs, load plugins or lift the load restrictions are accepted only
on the command line (`gate validate --build-option=...`), which the CI workflow owns.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.validate.loader import InputError, Limits, Node, compose_with_lines, load_text, read_text

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_CHART_HOME = "charts"  # helm charts' directory when helmGlobals.chartHome is not set

# What a path names, and what the walk does with it:
#   "node":      a kustomization directory (walked) or a YAML file (checked)   resources, bases
#   "directory": a kustomization directory only                                 components
#   "yaml":      a file kustomize parses as YAML                                patches, crds, ...
#   "file":      a file kustomize reads as bytes (size only)                    generator files, envs
#   "tree":      a directory kustomize (through helm) reads entirely            helm chart home


@dataclass(frozen=True)
class PathField:
    """A field of the Kustomization type that names files.

    `shape`: "strings" (a list of paths), "strings-or-inline" (a list whose multi-line entries are
    inline YAML), "items" (a list of mappings whose `keys` hold paths or lists of paths), "mapping" (a
    mapping whose `keys` hold paths). A generator's `files` entries are `path` or `key=path`.
    """

    name: str
    shape: str
    reads: str
    keys: tuple[str, ...] = ()
    remote_keys: tuple[str, ...] = ()  # keys that name something kustomize would download


PATH_FIELDS: tuple[PathField, ...] = (
    PathField("resources", "strings", "node"),
    PathField("bases", "strings", "node"),
    PathField("components", "strings", "directory"),
    PathField("crds", "strings", "yaml"),
    PathField("configurations", "strings", "yaml"),
    PathField("generators", "strings-or-inline", "node"),
    PathField("transformers", "strings-or-inline", "node"),
    PathField("validators", "strings-or-inline", "node"),
    PathField("patchesStrategicMerge", "strings-or-inline", "yaml"),
    PathField("patches", "items", "yaml", keys=("path",)),
    PathField("patchesJson6902", "items", "yaml", keys=("path",)),
    PathField("replacements", "items", "yaml", keys=("path",)),
    PathField("configMapGenerator", "items", "file", keys=("files", "envs", "env")),
    PathField("secretGenerator", "items", "file", keys=("files", "envs", "env")),
    PathField("openapi", "mapping", "yaml", keys=("path",)),
    PathField("helmGlobals", "mapping", "tree", keys=("chartHome", "configHome")),
    PathField("helmCharts", "items", "yaml", keys=("valuesFile", "additionalValuesFiles"),
              remote_keys=("repo",)),
    PathField("helmChartInflationGenerator", "items", "tree", keys=("chartHome", "values"),
              remote_keys=("chartRepoUrl", "helmBin", "helmHome")),
)

PLUGIN_FIELDS = frozenset({"generators", "transformers", "validators"})

# Fields of the Kustomization type that hold no path (api/types/kustomization.go).
PLAIN_FIELDS = frozenset({
    "apiVersion", "kind", "metadata", "namePrefix", "nameSuffix", "namespace", "commonLabels", "labels",
    "commonAnnotations", "images", "imageTags", "replicas", "vars", "sortOptions", "generatorOptions",
    "buildMetadata",
})

# Build options a repository's gate.yaml may set: they change how manifests render, nothing else.
# Everything else (helm, plugins, exec, mounts, network, load restrictions, output files, kubectl's
# global flags) is accepted only on the command line.
ALLOWED_CONFIG_BUILD_OPTIONS: dict[str, frozenset[str] | None] = {
    "--load-restrictor": frozenset({"LoadRestrictionsRootOnly"}),  # the default, spelt out
    "--helm-api-versions": None,  # meaningful only with --enable-helm, which gate.yaml cannot give
    "--helm-kube-version": None,
}

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_PATH = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?/")


class SandboxError(Exception):
    """Input kustomize must not read; `str()` names the file and the kustomization line naming it."""


@dataclass
class Walk:
    """The files the render reads: YAML files (parsed by the gate) and every other file (size only)."""

    yaml_files: list[Path] = field(default_factory=list)
    other_files: list[Path] = field(default_factory=list)
    total_bytes: int = 0
    directories: list[Path] = field(default_factory=list)  # every kustomization directory walked
    # `generators`, `transformers` and `validators` entries ("file:line: field"): a plugin's config may
    # name files of its own, which the walk does not follow (the render cache skips such builds)
    plugin_configs: list[str] = field(default_factory=list)
    # the documents of each YAML file as the walk parsed them (the environment values are read from them)
    documents: dict[Path, list[Any]] = field(default_factory=dict, repr=False)


def looks_remote(entry: str) -> bool:
    """A reference kustomize would download: a URL of any scheme, `git@host:...`, `host.tld/...`,
    anything with `?ref=`/`//` go-getter syntax."""
    return bool(
        _SCHEME.match(entry)
        or entry.startswith(("git@", "git::", "ssh:", "github.com", "gitlab.com", "bitbucket.org"))
        or "?ref=" in entry
        or "?" in entry
        or _HOST_PATH.match(entry)
    )


def contained(path: Path, repo_root: Path) -> Path | None:
    """`path` with symlinks resolved when it stays inside `repo_root`, else None (nothing is opened)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    root = repo_root.resolve()
    return resolved if resolved == root or root in resolved.parents else None


def relative(path: Path, repo_root: Path) -> str:
    try:
        return path.relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class _Walker:
    def __init__(self, repo_root: Path, limits: Limits) -> None:
        self.repo_root = repo_root.resolve()
        self.limits = limits
        self.result = Walk()
        self.seen_dirs: set[Path] = set()
        self.seen_files: set[Path] = set()

    def kustomization(self, directory: Path) -> None:
        if directory in self.seen_dirs:
            return
        self.seen_dirs.add(directory)
        self.result.directories.append(directory)
        found = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()]
        if not found:
            where = relative(directory, self.repo_root)
            raise SandboxError(f"{where}: no kustomization.yaml in this directory")
        file = found[0]
        here = relative(file, self.repo_root)
        if contained(file, self.repo_root) is None:
            raise SandboxError(f"{here}: a symlink that resolves outside the repository")
        text = self.yaml(file.resolve(), here)
        try:
            nodes = compose_with_lines(text, here, self.limits)
            duplicates = load_text(text, here, self.limits).duplicates
        except InputError as exc:
            raise SandboxError(str(exc)) from None
        # kustomize and the gate must read the same kustomization: no second value for a key, no
        # second document for one parser to take and the other to drop
        if duplicates:
            raise SandboxError(f"{here}:{duplicates[0].line}: duplicate key {duplicates[0].key!r}")
        if len(nodes) > 1:
            raise SandboxError(f"{here}:{nodes[1].line}: a kustomization must be one YAML document")
        if not nodes:
            return
        spec = nodes[0]
        if not isinstance(spec.value, dict):
            raise SandboxError(f"{here}:{spec.line}: a kustomization must be a mapping")
        by_name = {f.name: f for f in PATH_FIELDS}
        for key, value in spec.value.items():
            if key in PLAIN_FIELDS:
                continue
            if key not in by_name:
                line = value.key_line or value.line
                raise SandboxError(
                    f"{here}:{line}: unknown kustomization field {key!r}: the gate cannot tell whether it "
                    "names a file, so it does not render it"
                )
            if key in PLUGIN_FIELDS and value.value:
                self.result.plugin_configs.append(f"{here}:{value.key_line or value.line}: {key}")
            for entry, line, reads in _entries(by_name[key], value, here):
                self.reference(directory, entry, reads, f"{here}:{line}: {key}: {entry!r}")
        helm_globals = spec.value.get("helmGlobals")
        has_home = helm_globals is not None and isinstance(helm_globals.value, dict) and (
            "chartHome" in helm_globals.value
        )
        if "helmCharts" in spec.value and not has_home and (directory / DEFAULT_CHART_HOME).exists():
            line = spec.value["helmCharts"].key_line
            where = f"{here}:{line}: helmCharts: the default chart home {DEFAULT_CHART_HOME!r}"
            self.reference(directory, DEFAULT_CHART_HOME, "tree", where)

    def reference(self, directory: Path, entry: str, reads: str, where: str) -> None:
        if os.path.isabs(entry) or entry.startswith("~"):
            raise SandboxError(f"{where}: an absolute path; the gate renders only files of the repository")
        candidate = directory / entry
        # kustomize tries a reference as a local path first and downloads it when there is none
        if not os.path.lexists(candidate):
            if looks_remote(entry):
                raise SandboxError(
                    f"{where}: a remote reference: the gate downloads nothing, it renders the repository"
                )
            raise SandboxError(f"{where}: no such file or directory in the repository")
        target = contained(candidate, self.repo_root)
        if target is None:
            raise SandboxError(f"{where}: resolves outside the repository")
        if target.is_dir():
            if reads in ("node", "directory"):
                self.kustomization(target)
            elif reads == "tree":
                self.tree(target, where)
            else:
                raise SandboxError(f"{where}: a directory where kustomize expects a file")
        elif target.is_file():
            if reads == "directory":
                raise SandboxError(f"{where}: a file where kustomize expects a kustomization directory")
            if reads in ("file", "tree"):
                self.file(target, relative(target, self.repo_root))
            else:
                self.yaml(target, relative(target, self.repo_root))
        else:
            raise SandboxError(f"{where}: not a regular file or directory of the repository")

    def tree(self, directory: Path, where: str) -> None:
        for current, dirs, files in os.walk(directory, followlinks=False):
            for name in sorted(files) + sorted(d for d in dirs if Path(current, d).is_symlink()):
                path = Path(current, name)
                target = contained(path, self.repo_root)
                if target is None:
                    inner = relative(path, self.repo_root)
                    raise SandboxError(f"{where}: {inner}: a symlink that resolves outside the repository")
                if target.is_file():
                    self.file(target, relative(target, self.repo_root))

    def file(self, path: Path, source: str) -> None:
        if path in self.seen_files:
            return
        self.seen_files.add(path)
        size = path.stat().st_size
        if size > self.limits.max_bytes:
            raise SandboxError(f"{source}: file is {size} bytes, over the {self.limits.max_bytes}-byte limit")
        self._count(size, source)
        self.result.other_files.append(path)

    def yaml(self, path: Path, source: str) -> str:
        try:
            text = read_text(path, source, self.limits)
            if path not in self.seen_files:
                self.result.documents[path] = load_text(text, source, self.limits).documents
        except InputError as exc:
            raise SandboxError(str(exc)) from None
        if path not in self.seen_files:
            self.seen_files.add(path)
            self._count(len(text), source)
            self.result.yaml_files.append(path)
        return text

    def _count(self, size: int, source: str) -> None:
        self.result.total_bytes += size
        if self.result.total_bytes > self.limits.max_total_bytes:
            limit = self.limits.max_total_bytes
            raise SandboxError(f"{source}: the files this render reads add up to more than {limit} bytes")


def _entries(spec: PathField, value: Node, here: str) -> Iterator[tuple[str, int, str]]:
    """(path, line, reads) of every path a field names."""
    if spec.shape in ("strings", "strings-or-inline"):
        for item in _list(value, spec.name, here):
            if not isinstance(item.value, str):
                if spec.shape == "strings-or-inline" and isinstance(item.value, dict):
                    continue  # an inline mapping (a patch or a transformer config): no path
                raise SandboxError(f"{here}:{item.line}: {spec.name}: expected a path")
            if spec.shape == "strings-or-inline" and "\n" in item.value.strip():
                continue  # inline YAML
            yield item.value, item.line, spec.reads
        return
    containers = _list(value, spec.name, here) if spec.shape == "items" else [value]
    for container in containers:
        if not isinstance(container.value, dict):
            raise SandboxError(f"{here}:{container.line}: {spec.name}: expected a mapping")
        for key in spec.remote_keys:
            if key in container.value and container.value[key].value not in (None, ""):
                node = container.value[key]
                raise SandboxError(
                    f"{here}:{node.line}: {spec.name}.{key}: names something to download or run; the gate "
                    "renders only files of the repository"
                )
        for key in spec.keys:
            node = container.value.get(key)
            if node is None or node.value is None:
                continue
            items = node.value if isinstance(node.value, list) else [node]
            for item in items:
                if not isinstance(item.value, str):
                    raise SandboxError(f"{here}:{item.line}: {spec.name}.{key}: expected a path")
                path = item.value
                if key == "files" and "=" in path:
                    path = path.split("=", 1)[1]  # `key=path`
                yield path, item.line, spec.reads


def _list(value: Node, name: str, here: str) -> list[Node]:
    if value.value is None:
        return []
    if not isinstance(value.value, list):
        raise SandboxError(f"{here}:{value.line}: {name}: expected a list")
    return value.value


def walk(directory: Path, repo_root: Path, limits: Limits) -> Walk:
    """Check everything the build of `directory` reads; raise `SandboxError` on the first problem."""
    walker = _Walker(repo_root, limits)
    target = contained(directory, repo_root)
    if target is None:
        raise SandboxError(f"{directory.as_posix()}: resolves outside the repository")
    walker.kustomization(target)
    return walker.result


def config_build_option_problem(options: list[str]) -> tuple[int, str] | None:
    """The index and text of the first option gate.yaml may not give, with why; None when all are allowed."""
    index = 0
    while index < len(options):
        option = options[index]
        name, has_value, value = option.partition("=")
        if name not in ALLOWED_CONFIG_BUILD_OPTIONS:
            return index, f"{option!r} is not allowed in gate.yaml"
        allowed = ALLOWED_CONFIG_BUILD_OPTIONS[name]
        if not has_value:
            if index + 1 >= len(options):
                return index, f"{option!r} needs a value"
            index += 1
            value = options[index]
        if allowed is not None and value not in allowed:
            return index, f"{name} {value!r} is not allowed in gate.yaml"
        index += 1
    return None


def kustomize_environment(home: Path) -> dict[str, str]:
    """A clean environment: an empty HOME, no kubeconfig, kuberc off, nothing on PATH, no proxies."""
    return {
        "HOME": str(home),
        "PATH": str(home / "bin"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
        "KUBECTL_KUBERC": "false",
        "KUBERC": "off",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def limit_resources(memory_bytes: int, file_bytes: int) -> Callable[[], None]:
    """A `preexec_fn` capping the child's data segment (a Go program's heap) at `memory_bytes` and
    every file it writes (its output) at `file_bytes`."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def config_line(nodes: list[Node], *path: str | int) -> int | None:
    """The line of a value in a config file composed with lines."""
    node: Any = nodes[0] if nodes else None
    for part in path:
        if node is None:
            return None
        if isinstance(part, int) and isinstance(node.value, list) and part < len(node.value):
            node = node.value[part]
        elif isinstance(part, str) and isinstance(node.value, dict):
            node = node.value.get(part)
        else:
            return None
    return node.line if node is not None else None
