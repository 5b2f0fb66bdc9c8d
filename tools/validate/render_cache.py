"""kustomize's output, kept between runs and keyed by everything the build reads.

A pre-commit hook re-renders overlays that have not changed; kustomize is most of the gate's time.
An entry is kustomize's output, byte for byte, so a cached render is exactly what kustomize (and so
Argo CD) would print for the same input. The key is a SHA-256 over:

- the build command: each argument, and for the binary its resolved path, size, modification time and
  inode (a new kubectl or kustomize, even at the same path, is a new key);
- the build options, and the wrapper kustomization the gate writes (which names the overlay's path);
- every kustomization directory the build walks, with the kustomization file names present in it
  (kustomize refuses a directory holding two);
- every file the build reads (`sandbox.walk`: resources, patches, components, generator files, files
  reached through `../`, symlinks resolved): its path and the SHA-256 of its content.

Only builds whose every input the walk knows are cached: build options gate.yaml may give
(`sandbox.ALLOWED_CONFIG_BUILD_OPTIONS`; options that run helm, plugins or functions read files and
programs the walk cannot see), and kustomizations without `generators`, `transformers` or
`validators` (a plugin's config may name files of its own). Failed builds are never cached.

Beside each output, the resources the gate made of it (parsed, origins resolved, patch sources found)
are kept as JSON under `derived_key`, which adds the gate's own code and the parsing limits: a warm
run reads them instead of parsing again. Resources holding values JSON cannot carry exactly (YAML
timestamps, binary, non-string keys) are not kept this way; their output still is.

Entries are written atomically (a temporary file renamed into place), so concurrent runs never read a
partial entry; each entry carries the digest of its body, and an entry that does not match it is
ignored and rendered again. The directory: `$GATE_CACHE_DIR`, else
`$XDG_CACHE_HOME/eks-llm-inference/gate/renders` (`~/.cache/...`); `gate validate --no-render-cache`
bypasses it. The oldest entries beyond `MAX_ENTRIES` are removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.validate import sandbox

FORMAT = "gate-render-cache/1"
CACHE_DIR_ENV = "GATE_CACHE_DIR"
DERIVING_MODULES = (
    "tools.validate.render", "tools.validate.sandbox", "tools.validate.loader", "tools.validate.model",
    "tools.validate.render_cache",
)
MAX_ENTRIES = 256  # renders; each has its output and, usually, its resources
OUTPUT = ".out"  # kustomize's output, byte for byte
RESOURCES = ".json"  # the resources the gate made of it (origins, patches): see `derived_key`
_HEADER_PREFIX = f"# {FORMAT} sha256="


def default_directory() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "eks-llm-inference" / "gate" / "renders"


def cacheable(build_options: Sequence[str], walk: sandbox.Walk) -> bool:
    """Whether every input of this build is known to the key (see the module's docstring)."""
    return sandbox.config_build_option_problem(list(build_options)) is None and not walk.plugin_configs


def key(command: Sequence[str], build_options: Sequence[str], wrapper_text: str, walk: sandbox.Walk) -> str:
    digest = hashlib.sha256()

    def add(*parts: str | int) -> None:
        for part in parts:
            data = str(part).encode("utf-8", "surrogateescape")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    add(FORMAT, "command", len(command))
    for argument in command:
        add(argument)
        if os.path.isabs(argument) and os.path.isfile(argument):
            stat = os.stat(argument)
            add(os.path.realpath(argument), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    add("options", len(build_options), *build_options)
    add("wrapper", wrapper_text)
    directories = sorted({str(d) for d in walk.directories})
    add("directories", len(directories))
    for directory in directories:
        present = [n for n in sandbox.KUSTOMIZATION_FILES if os.path.lexists(os.path.join(directory, n))]
        add(directory, len(present), *present)
    files = sorted({str(f) for f in (*walk.yaml_files, *walk.other_files)})
    add("files", len(files))
    for file in files:
        with open(file, "rb") as handle:
            add(file, hashlib.sha256(handle.read()).hexdigest())
    return digest.hexdigest()


def derived_key(entry_key: str, *context: str | int) -> str:
    """The key of what the gate derives from a cached output (the resources, their origins and patch
    sources): the output's key, the gate's own code that derives them, and `context` (the repository's
    path, the parsing limits). A changed gate never reads what an older one derived."""
    digest = hashlib.sha256(f"{FORMAT}\0{entry_key}\0{_code_digest()}".encode())
    for part in context:
        digest.update(b"\0" + str(part).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for name in DERIVING_MODULES:
        module = sys.modules.get(name) or importlib.import_module(name)
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def load(directory: Path, entry_key: str, suffix: str = OUTPUT) -> bytes | None:
    """The cached entry for `entry_key`, or None (absent, unreadable, or not matching its digest)."""
    path = _entry_path(directory, entry_key, suffix)
    try:
        with path.open("rb") as handle:
            header = handle.readline()
            body = handle.read()
    except OSError:
        return None
    expected = _HEADER_PREFIX.encode("ascii") + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n"
    if header != expected:
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)  # recently used entries outlive the pruning
    return body


def store(directory: Path, entry_key: str, output: bytes, suffix: str = OUTPUT) -> None:
    """Write the entry atomically; a cache that cannot be written is skipped, never an error."""
    path = _entry_path(directory, entry_key, suffix)
    header = f"{_HEADER_PREFIX}{hashlib.sha256(output).hexdigest()}\n".encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(header)
            out.write(output)
        os.replace(temporary, path)
    except OSError:
        _remove(Path(temporary))
        return
    _prune(directory)


def _entry_path(directory: Path, entry_key: str, suffix: str) -> Path:
    return directory / entry_key[:2] / f"{entry_key}{suffix}"


def _prune(directory: Path) -> None:
    try:
        entries = [p for p in directory.glob("??/*") if not p.name.startswith(".tmp-")]
    except OSError:
        return
    if len(entries) <= MAX_ENTRIES * 2:
        return
    by_age: list[tuple[float, Path]] = []
    for entry in entries:
        try:
            by_age.append((entry.stat().st_mtime, entry))
        except OSError:
            continue  # removed by a concurrent run
    for _, entry in sorted(by_age)[: len(by_age) - MAX_ENTRIES * 2]:
        _remove(entry)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # removed by a concurrent run
        path.unlink()
