"""Deterministic generated repositories for the policy gate's benchmark (`bench.gate_bench`).

A generated repository is a copy of this repository's manifests (base/, overlays/, apps/, clusters/,
gate.yaml) plus a kustomization tree `generated/` holding N copies of the prod overlay:

    generated/kustomization.yaml          resources: [c0000, c0001, ...]
    generated/c0000/kustomization.yaml    resources: [../../overlays/prod], nameSuffix: -c0000,
                                          NodePools point at the copy's EC2NodeClass,
                                          copies after the first drop the (shared) Namespaces

so `kustomize build generated` renders N x 21 + 2 resources (Deployments, ScaledObjects, NodePools,
EC2NodeClasses, ... with distinct names; namespaced resources share the prod namespaces, as many
model deployments in one cluster would) and the gate's render stage is measured too. The same tree
rendered by plain `kustomize build` is the multi-document file handed to Checkov.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.validate.render import kustomize_command

COPIED = ("base", "overlays", "apps", "clusters")
TEMPLATE_OVERLAY = "overlays/prod"
GENERATED_DIR = "generated"
# A 10,000-resource render with kustomize's origin annotations is larger than the default 20 MiB
# per-file limit; the generated repository's gate.yaml raises it (the only change to the config).
GENERATED_MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Corpus:
    """What one benchmark row set runs on: kustomization targets and their plain rendered output."""

    name: str
    repo_root: Path
    targets: tuple[Path, ...]
    rendered_dir: Path  # one plain `kustomize build` output file per target, for Checkov
    resource_count: int
    env: str | None  # forced environment (generated trees are checked as prod)


def kustomize_plain(target: Path) -> str:
    """`kustomize build TARGET` without build metadata: the manifests Argo CD would apply."""
    completed = subprocess.run(
        [*kustomize_command(), str(target)], capture_output=True, check=True, timeout=600
    )
    return completed.stdout.decode("utf-8")


def count_documents(text: str) -> int:
    return sum(1 for doc in yaml.safe_load_all(text) if isinstance(doc, dict))


def write_rendered(targets: tuple[Path, ...], out_dir: Path) -> int:
    """Render each target into OUT_DIR/<n>-<name>.yaml; returns the number of resources."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for number, target in enumerate(targets):
        text = kustomize_plain(target)
        total += count_documents(text)
        (out_dir / f"{number:02d}-{target.parent.name}-{target.name}.yaml").write_text(text, encoding="utf-8")
    return total


def repository_corpus(repo_root: Path, targets: list[Path], work: Path) -> Corpus:
    rendered_dir = work / "repo-rendered"
    count = write_rendered(tuple(targets), rendered_dir)
    return Corpus("repo", repo_root, tuple(targets), rendered_dir, count, None)


def _prod_shape(repo_root: Path) -> tuple[int, int, str]:
    """(resources per copy after the first, Namespaces, EC2NodeClass name) of the prod overlay."""
    rendered = kustomize_plain(repo_root / TEMPLATE_OVERLAY)
    docs = [d for d in yaml.safe_load_all(rendered) if isinstance(d, dict)]
    namespaces = sum(1 for d in docs if d.get("kind") == "Namespace")
    node_classes = [d["metadata"]["name"] for d in docs if d.get("kind") == "EC2NodeClass"]
    if len(node_classes) != 1:
        raise ValueError(f"{TEMPLATE_OVERLAY} should render one EC2NodeClass, found {len(node_classes)}")
    return len(docs) - namespaces, namespaces, node_classes[0]


def _copy_kustomization(suffix: str, node_class: str, drop_namespaces: bool) -> dict[str, Any]:
    patches: list[dict[str, Any]] = [
        {
            "target": {"group": "karpenter.sh", "kind": "NodePool"},
            "patch": yaml.safe_dump(
                [{"op": "replace", "path": "/spec/template/spec/nodeClassRef/name",
                  "value": node_class + suffix}]
            ),
        }
    ]
    if drop_namespaces:
        patches.append(
            {
                "target": {"kind": "Namespace"},
                "patch": "$patch: delete\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: any\n",
            }
        )
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "nameSuffix": suffix,
        "resources": [f"../../{TEMPLATE_OVERLAY}"],
        "patches": patches,
    }


def generate_repository(source_root: Path, dest: Path, min_resources: int) -> Corpus:
    """A repository at DEST whose `generated/` tree renders at least MIN_RESOURCES resources."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in COPIED:
        shutil.copytree(source_root / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((source_root / "gate.yaml").read_text(encoding="utf-8"))
    config.setdefault("limits", {})["max_file_bytes"] = GENERATED_MAX_FILE_BYTES
    (dest / "gate.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    per_copy, namespaces, node_class = _prod_shape(dest)
    copies = max(1, math.ceil((min_resources - namespaces) / per_copy))
    tree = dest / GENERATED_DIR
    names = [f"c{number:04d}" for number in range(copies)]
    for number, name in enumerate(names):
        (tree / name).mkdir(parents=True)
        spec = _copy_kustomization(f"-{name}", node_class, drop_namespaces=number > 0)
        text = yaml.safe_dump(spec, sort_keys=False)
        (tree / name / "kustomization.yaml").write_text(text, encoding="utf-8")
    top = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": names}
    (tree / "kustomization.yaml").write_text(yaml.safe_dump(top, sort_keys=False), encoding="utf-8")

    rendered_dir = dest.parent / f"{dest.name}-rendered"
    if rendered_dir.exists():
        shutil.rmtree(rendered_dir)
    count = write_rendered((tree,), rendered_dir)
    expected = copies * per_copy + namespaces
    if count != expected:
        raise ValueError(f"{tree} rendered {count} resources, expected {expected}")
    return Corpus(f"generated-{min_resources}", dest, (tree,), rendered_dir, count, "prod")
