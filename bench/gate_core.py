"""Benchmark of the gate's core: kustomize render (with origin annotations), YAML load of rendered
output, and the engine (every rule of the registry, source lines, suppressions) on a synthetic overlay
of Deployments spread over files of 50, with an overlay patch on one of them.

    python -m bench.gate_core [--render-count 300] [--load-count 2000]

kustomize's own time grows faster than linearly with the number of resources in one overlay (about
a minute of CPU for 2,000 Deployments), so the render and the engine run on `--render-count`
resources; the YAML load runs on `--load-count`. Each stage prints seconds and resources per second;
CPU seconds are measured (the process's, plus
kustomize's for the render), so the figures hold on a shared machine.

Last results (2026-11-28, `python -m bench.gate_core`, shared 2-core machine at a load average of
~16, five runs; CPU time is inflated by the contention, so these are pessimistic; the number of
findings of "all rules" grows with the rule set):

    kustomize build, plain (as Argo CD)     300 resources    1.06-1.34 s  225-282 resources/s
    gate render (kustomize + origins)       300 resources    1.75-2.13 s  141-171 resources/s
    YAML load (rendered text)              2000 resources    0.42-0.70 s  2,839-4,722 resources/s
    engine, all rules (600-900 findings)    300 resources    0.18-0.31 s  960-1,707 resources/s
    engine, + one finding each              300 resources    0.31-0.37 s  803-960 resources/s

kustomize dominates (its origin annotations add ~35 %); the gate's own work (load + every rule,
schema checks included, + a source line for each finding) is ~1 ms per resource here. For
comparison, `yaml.load_all(..., Loader=yaml.CSafeLoader)` on the same 2,000 resources takes about
twice the loader's time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tools.validate.config import GateConfig
from tools.validate.engine import RunOptions, build_catalogue, build_schemas, check
from tools.validate.loader import load_text
from tools.validate.model import Context, Rule, Severity, Violation
from tools.validate.render import RenderOptions, kustomize_command, render
from tools.validate.rules import default_registry
from tools.validate.rules.base import Registry
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
    for deployment in ctx.of_kind("Deployment"):
        yield Violation(deployment, "spec.template.spec.containers[0].image", "pinned by tag, not digest")


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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.gate_core")
    parser.add_argument("--render-count", type=int, default=300)
    parser.add_argument("--load-count", type=int, default=2000)
    args = parser.parse_args(argv)
    count, load_count = args.render_count, args.load_count
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        build_tree(root, count)

        started = _children_cpu() + time.process_time()
        rendered = render(root / "overlays" / "bench", root, RenderOptions(timeout=600))
        render_seconds = _children_cpu() + time.process_time() - started

        started = _children_cpu()
        plain = [*kustomize_command(), str(root / "overlays" / "bench")]
        subprocess.run(plain, capture_output=True, check=True)
        plain_seconds = _children_cpu() - started

        text = "".join(DEPLOYMENT.format(i=i) for i in range(load_count))
        started = time.process_time()
        load_text(text, "bench")
        load_seconds = time.process_time() - started

        today = dt.date(2026, 1, 1)
        clean = RunOptions(repo_root=root, config=GateConfig(), registry=default_registry(), today=today)
        schemas, catalogue = build_schemas(clean), build_catalogue(clean)
        check(rendered, "bench", clean, mapper=SourceMapper(root), schemas=schemas, catalogue=catalogue,
              today=today)  # warm-up: compiles each kind's schema once, as a run does on its first overlay
        started = time.process_time()
        none_found = check(rendered, "bench", clean, mapper=SourceMapper(root), schemas=schemas,
                           catalogue=catalogue, today=today)
        clean_seconds = time.process_time() - started

        rule = Rule(id="gitops/bench-image", family="gitops", title="bench", severity=Severity.WARNING,
                    why="bench", remediation="bench", scope=("Deployment",), check=every_container_image)
        registry = Registry([rule, *default_registry()])
        noisy = RunOptions(repo_root=root, config=GateConfig(), registry=registry, today=today)
        started = time.process_time()
        findings = check(rendered, "bench", noisy, mapper=SourceMapper(root), schemas=schemas,
                         catalogue=catalogue, today=today)
        noisy_seconds = time.process_time() - started

    assert len(rendered.resources) == count
    assert len([f for f in findings if f.rule_id == rule.id]) == count
    assert all(f.location is not None for f in findings if f.resource is not None)
    print(f"resources: {count}")
    for stage, resources, seconds in (
        ("kustomize build, plain (as Argo CD)", count, plain_seconds),
        ("gate render (kustomize + origins)", count, render_seconds),
        ("YAML load (rendered text)", load_count, load_seconds),
        (f"engine, all rules ({len(none_found)} findings)", count, clean_seconds),
        (f"engine, + one finding each ({len(findings)})", count, noisy_seconds),
    ):
        print(f"{stage:36} {resources:6} resources {seconds:7.2f} s {resources / seconds:9.0f} resources/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
