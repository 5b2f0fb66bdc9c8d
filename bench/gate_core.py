"""Benchmark of the gate's core: kustomize render, YAML load, and the engine (rules, source lines,
suppressions) on a synthetic overlay of N Deployments spread over files, with an overlay patch.

    python bench/gate_core.py [N]        (default 2000)

Prints seconds and resources per second for each stage, on one core (the engine is single-threaded;
kustomize is a separate process).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tools.validate.config import GateConfig
from tools.validate.engine import RunOptions, check
from tools.validate.loader import load_text
from tools.validate.model import Severity
from tools.validate.render import RenderOptions, render
from tools.validate.rules import default_registry
from tools.validate.rules.base import Context, Registry, Rule, Violation
from tools.validate.sources import SourceMapper

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  labels: {{app: web-{i}, tier: bench}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web-{i}}}
  template:
    metadata:
      labels: {{app: web-{i}}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          args: [--port=8080, --workers=2]
          ports: [{{containerPort: 8080, protocol: TCP}}]
          resources:
            requests: {{cpu: 500m, memory: 512Mi}}
            limits: {{cpu: "1", memory: 1Gi}}
          securityContext: {{runAsNonRoot: true, readOnlyRootFilesystem: true}}
---
"""


def every_container_image(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    """A rule that finds something on every resource, so every finding needs a source line."""
    for resource in ctx.of_kind("Deployment"):
        yield Violation(resource, "spec.template.spec.containers[0].image", "pinned by tag, not digest")


def build_tree(root: Path, count: int) -> None:
    base = root / "base" / "web"
    base.mkdir(parents=True)
    files = []
    per_file = 50
    for start in range(0, count, per_file):
        name = f"deployments-{start // per_file:03}.yaml"
        text = "".join(DEPLOYMENT.format(i=i) for i in range(start, min(count, start + per_file)))
        (base / name).write_text(text)
        files.append(name)
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(f"  - {f}\n" for f in files))
    overlay = root / "overlays" / "bench"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "namespace: bench\nresources: [../../base/web]\npatches:\n  - path: replicas.yaml\n"
        "    target: {kind: Deployment, name: web-0}\n"
    )
    (overlay / "replicas.yaml").write_text("- op: replace\n  path: /spec/replicas\n  value: 3\n")


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 2000
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        build_tree(root, count)

        started = time.perf_counter()
        rendered = render(root / "overlays" / "bench", root, RenderOptions(timeout=600))
        render_seconds = time.perf_counter() - started

        text = "".join(DEPLOYMENT.format(i=i) for i in range(count))
        started = time.perf_counter()
        load_text(text, "bench")
        load_seconds = time.perf_counter() - started

        today = dt.date(2026, 1, 1)
        clean = RunOptions(repo_root=root, config=GateConfig(), registry=default_registry(), today=today)
        started = time.perf_counter()
        none_found = check(rendered, "bench", clean, mapper=SourceMapper(root), schemas=None, catalogue=None,
                           today=today)
        clean_seconds = time.perf_counter() - started

        rule = Rule(id="gitops/bench-image", family="gitops", title="bench", severity=Severity.WARNING,
                    why="bench", remediation="bench", scope=("Deployment",), check=every_container_image)
        registry = Registry([rule, *default_registry()])
        noisy = RunOptions(repo_root=root, config=GateConfig(), registry=registry, today=today)
        started = time.perf_counter()
        findings = check(rendered, "bench", noisy, mapper=SourceMapper(root), schemas=None, catalogue=None,
                         today=today)
        noisy_seconds = time.perf_counter() - started

    assert len(rendered.resources) == count and len(findings) == count and none_found == []
    assert all(f.location is not None for f in findings)
    print(f"resources: {count}")
    for stage, seconds in (
        ("kustomize render + origins", render_seconds),
        ("YAML load (rendered text)", load_seconds),
        ("engine, no findings", clean_seconds),
        ("engine, a located finding on each", noisy_seconds),
    ):
        print(f"{stage:36} {seconds:7.2f} s {count / seconds:9.0f} resources/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
