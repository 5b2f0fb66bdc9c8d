"""The render cache: a cached render equals a fresh one, and any change to what kustomize reads
(or to how it is run) renders afresh."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

import pytest

from tools.validate import render_cache
from tools.validate.cli import main
from tools.validate.render import Rendered, RenderError, RenderOptions, kustomize_command, render

REPOSITORY = Path(__file__).parents[2]
REPOSITORY_TARGETS = (
    "overlays/dev", "overlays/prod", "apps/dev", "apps/prod", "clusters/dev", "clusters/prod",
)

# A repository whose dev overlay reads every kind of input: a resource and a configMapGenerator file
# and env file of a base reached through ../, a patch file, an inline patch's kustomization, a component
# with a patch of its own, a replacement's source.
FILES = {
    "base/kustomization.yaml": """\
resources: [deployment.yaml]
configMapGenerator:
  - name: settings
    files: [config/app.properties]
    envs: [config/extra.env]
""",
    "base/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "nginx:1.27", args: [--port=8080]}
""",
    "base/config/app.properties": "mode=plain\n",
    "base/config/extra.env": "LEVEL=info\n",
    "components/tracing/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
  - path: tracing.yaml
""",
    "components/tracing/tracing.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata: {annotations: {tracing: "off"}}
""",
    "overlays/dev/kustomization.yaml": """\
namespace: dev
resources: [../../base, source.yaml]
components: [../../components/tracing]
patches:
  - path: replicas.yaml
  - target: {kind: Deployment, name: web}
    patch: |-
      - {op: add, path: /metadata/labels, value: {tier: front}}
replacements:
  - source: {kind: ConfigMap, name: image-source, fieldPath: data.image}
    targets:
      - select: {kind: Deployment, name: web}
        fieldPaths:
          - spec.template.spec.containers.[name=web].image
""",
    "overlays/dev/replicas.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
""",
    "overlays/dev/source.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: image-source}
data: {image: "nginx:1.27.1"}
""",
}

# (file, text in it, replacement): one change of each kind of input, each visible in the output
CHANGES = [
    pytest.param("base/deployment.yaml", "--port=8080", "--port=9090", id="resource-through-dotdot"),
    pytest.param("overlays/dev/replicas.yaml", "replicas: 2", "replicas: 3", id="patch-file"),
    pytest.param("overlays/dev/kustomization.yaml", "tier: front", "tier: back", id="inline-patch"),
    pytest.param("components/tracing/tracing.yaml", 'tracing: "off"', 'tracing: "on"', id="component-patch"),
    pytest.param("components/tracing/kustomization.yaml", "- path: tracing.yaml", "[]", id="component"),
    pytest.param("base/config/app.properties", "mode=plain", "mode=fancy", id="configmapgenerator-file"),
    pytest.param("base/config/extra.env", "LEVEL=info", "LEVEL=debug", id="configmapgenerator-env"),
    pytest.param("base/kustomization.yaml", "name: settings", "name: options", id="base-kustomization"),
    pytest.param("overlays/dev/source.yaml", "nginx:1.27.1", "nginx:1.27.2", id="replacement-source"),
]


def write_repository(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def counting_command(tmp_path: Path) -> tuple[tuple[str, ...], Path]:
    """kustomize behind a script that logs each run, so a test can tell a cache hit from a build."""
    log = tmp_path / "kustomize-runs.log"
    script = tmp_path / "counting-kustomize"
    real = " ".join(shlex.quote(part) for part in kustomize_command())
    script.write_text(f'#!/bin/sh\necho run >> {shlex.quote(str(log))}\nexec {real} "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return (str(script),), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def cached_render(directory: Path, root: Path, command: tuple[str, ...], cache: Path,
                  build_options: tuple[str, ...] = ()) -> Rendered:
    options = RenderOptions(command=command, cache_dir=cache, build_options=build_options)
    return render(directory, root, options)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "repo")


@pytest.mark.parametrize(("file", "old", "new"), CHANGES)
def test_a_change_to_any_file_kustomize_reads_renders_afresh(repo: Path, tmp_path: Path,
                                                             file: str, old: str, new: str) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    before = cached_render(overlay, repo, command, cache)
    assert cached_render(overlay, repo, command, cache) == before
    assert runs(log) == 1  # the second render came from the cache

    path = repo / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    after = cached_render(overlay, repo, command, cache)

    assert runs(log) == 2
    assert after != before
    assert after == render(overlay, repo)  # no cache at all
    assert cached_render(overlay, repo, command, cache) == after
    assert runs(log) == 2


def test_the_repository_renders_the_same_from_the_cache(tmp_path: Path) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    for target in REPOSITORY_TARGETS:
        fresh = render(REPOSITORY / target, REPOSITORY)
        first = cached_render(REPOSITORY / target, REPOSITORY, command, cache)
        second = cached_render(REPOSITORY / target, REPOSITORY, command, cache)
        assert first == fresh, target
        assert second == fresh, target
        assert [r.doc for r in second.resources] == [r.doc for r in fresh.resources]
        origins = [(r.origin, r.patches) for r in fresh.resources]
        assert [(r.origin, r.patches) for r in second.resources] == origins
    assert runs(log) == len(REPOSITORY_TARGETS)


def test_kustomize_output_alone_serves_when_the_derived_resources_are_gone(repo: Path,
                                                                          tmp_path: Path) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    first = cached_render(overlay, repo, command, cache)
    for entry in cache.glob(f"*/*{render_cache.RESOURCES}"):
        entry.unlink()

    assert cached_render(overlay, repo, command, cache) == first
    assert runs(log) == 1


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty"])
def test_damaged_entries_are_ignored(repo: Path, tmp_path: Path, damage: str) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    first = cached_render(overlay, repo, command, cache)
    entries = sorted(cache.glob("*/*"))
    assert {e.suffix for e in entries} == {render_cache.OUTPUT, render_cache.RESOURCES}
    for entry in entries:
        data = entry.read_bytes()
        if damage == "truncate":
            entry.write_bytes(data[: len(data) // 2])
        elif damage == "garble":
            entry.write_bytes(data.replace(b"web", b"bad"))
        else:
            entry.write_bytes(b"")

    assert cached_render(overlay, repo, command, cache) == first
    assert runs(log) == 2
    assert cached_render(overlay, repo, command, cache) == first  # rewritten whole
    assert runs(log) == 2


def test_derived_resources_of_another_shape_are_ignored(repo: Path, tmp_path: Path) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    first = cached_render(overlay, repo, command, cache)
    body = b'{"resources": [{"doc": 1}]}'
    header = f"# {render_cache.FORMAT} sha256={hashlib.sha256(body).hexdigest()}\n".encode()
    for entry in cache.glob(f"*/*{render_cache.RESOURCES}"):
        entry.write_bytes(header + body)

    assert cached_render(overlay, repo, command, cache) == first
    assert runs(log) == 1  # kustomize's output was still good


def test_a_different_kustomize_or_build_options_render_afresh(repo: Path, tmp_path: Path) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    cached_render(overlay, repo, command, cache)
    stat = os.stat(command[0])
    os.utime(command[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a new binary
    cached_render(overlay, repo, command, cache)
    assert runs(log) == 2
    cached_render(overlay, repo, command, cache, ("--load-restrictor", "LoadRestrictionsRootOnly"))
    assert runs(log) == 3
    cached_render(overlay, repo, command, cache, ("--load-restrictor", "LoadRestrictionsRootOnly"))
    assert runs(log) == 3


def test_a_second_kustomization_file_in_a_walked_directory_is_a_change(repo: Path, tmp_path: Path) -> None:
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    cached_render(overlay, repo, command, cache)
    (repo / "base" / "kustomization.yml").write_text((repo / "base" / "kustomization.yaml").read_text())

    with pytest.raises(RenderError, match=r"(?i)multiple|found"):
        cached_render(overlay, repo, command, cache)
    assert runs(log) == 2


@pytest.mark.parametrize(
    ("field", "build_options"),
    [("generators", ()), ("options", ("--enable-helm",))],
)
def test_builds_with_inputs_the_walk_cannot_see_are_not_cached(repo: Path, tmp_path: Path, field: str,
                                                               build_options: tuple[str, ...]) -> None:
    if field == "generators":
        (repo / "overlays/dev/generator.yaml").write_text(
            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata: {name: generated}\nliterals: [a=b]\n"
        )
        kustomization = repo / "overlays/dev/kustomization.yaml"
        kustomization.write_text(kustomization.read_text() + "generators: [generator.yaml]\n")
    command, log = counting_command(tmp_path)
    cache = tmp_path / "cache"
    overlay = repo / "overlays" / "dev"
    first = cached_render(overlay, repo, command, cache, build_options)
    second = cached_render(overlay, repo, command, cache, build_options)

    assert first == second
    assert runs(log) == 2
    assert not cache.exists() or not any(cache.rglob("*.*"))


def test_gate_validate_fills_the_cache_and_no_render_cache_bypasses_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cli-cache"
    monkeypatch.setenv(render_cache.CACHE_DIR_ENV, str(cache))
    overlay = str(repo / "overlays" / "dev")
    out = tmp_path / "out.json"
    argv = ["validate", overlay, "--repo-root", str(repo), "--format", f"json={out}"]

    main([*argv, "--no-render-cache"])
    assert not cache.exists()
    uncached = out.read_text()
    main(argv)
    assert {e.suffix for e in cache.glob("*/*")} == {render_cache.OUTPUT, render_cache.RESOURCES}
    main(argv)
    assert out.read_text() == uncached
