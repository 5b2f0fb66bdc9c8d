"""Deterministic generated corpora for the policy gate's benchmark (`bench.gate_bench`).

A generated corpus is one multi-document file (one overlay) of N copies of the prod overlay as
rendered, or with `per_copy` the same copies in one file (one overlay) each. The overlay is built
once by kustomize as a copy (nameSuffix `-c<placeholder>`, its NodePool pointing at the copy's
EC2NodeClass, its Namespaces dropped), and the placeholder is then replaced by c0000, c0001, ... so
every copy has distinct names and consistent references (scaleTargetRef, nodeClassRef,
serviceAccountName, role bindings) exactly as kustomize writes them; prod's two Namespaces come
once, first. N x 21 + 2 resources: Deployments, ScaledObjects, NodePools, EC2NodeClasses, ...

Why not a kustomization tree of N copies: kustomize's time grows faster than linearly with the
resources of one build (measured here: 58 s of CPU for one kustomization holding 2,000 rendered
resources, 74 s for a tree of 96 overlay copies, against ~0.3 s for one prod overlay), so such a
tree measures kustomize, not the gate; a real repository keeps one overlay per deployed unit, and
the render stage is measured on this repository's own overlays.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.validate.render import kustomize_command

TEMPLATE_OVERLAY = "overlays/prod"
PLACEHOLDER = "zzcopyzz"


@dataclass(frozen=True)
class Corpus:
    """What one set of benchmark rows runs on.

    `targets` are kustomization directories the gate renders (empty for a generated corpus, which
    starts from `rendered_dir`); `rendered_dir` holds the plain `kustomize build` output, one file per
    target, that Checkov scans.
    """

    name: str
    repo_root: Path
    targets: tuple[Path, ...]
    rendered_dir: Path
    resource_count: int
    env: str | None  # forced environment (generated corpora are checked as prod)


def kustomize_plain(target: Path) -> str:
    """`kustomize build TARGET` without build metadata: the manifests Argo CD would apply."""
    completed = subprocess.run(
        [*kustomize_command(), str(target)], capture_output=True, check=True, timeout=600
    )
    return completed.stdout.decode("utf-8")


def _fast_documents(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def count_documents(text: str) -> int:
    return sum(1 for doc in _fast_documents(text) if isinstance(doc, dict))


def repository_corpus(repo_root: Path, targets: list[Path], work: Path, name: str) -> Corpus:
    rendered_dir = work / f"{name}-rendered"
    rendered_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for number, target in enumerate(targets):
        text = kustomize_plain(target)
        total += count_documents(text)
        file_name = f"{number:02d}-{target.parent.name}-{target.name}.yaml"
        (rendered_dir / file_name).write_text(text, encoding="utf-8")
    return Corpus(name, repo_root, tuple(targets), rendered_dir, total, None)


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in _fast_documents(text) if isinstance(d, dict)]


def _copy_kustomization(overlay: Path, node_class: str) -> dict[str, Any]:
    suffix = f"-{PLACEHOLDER}"
    node_class_patch = [
        {"op": "replace", "path": "/spec/template/spec/nodeClassRef/name", "value": node_class + suffix}
    ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "nameSuffix": suffix,
        "resources": [str(overlay)],
        "patches": [
            {
                "target": {"group": "karpenter.sh", "kind": "NodePool"},
                "patch": yaml.safe_dump(node_class_patch),
            },
            {
                "target": {"kind": "Namespace"},
                "patch": "$patch: delete\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: any\n",
            },
        ],
    }


def generate_rendered(repo_root: Path, work: Path, min_resources: int, per_copy: bool = False) -> Corpus:
    """A corpus of at least MIN_RESOURCES resources in WORK/generated-N[-per-copy]-rendered/.

    One overlay (one file, `resources.yaml`) holding every copy: the worst case for rules that relate
    resources across the overlay (each copy's pods may land on each copy's NodePool). With `per_copy`,
    the same resources as one overlay per copy (`copy-NNNN.yaml`, the Namespaces in the first), the
    shape of a repository with one overlay per deployed unit.
    """
    prod = _documents(kustomize_plain(repo_root / TEMPLATE_OVERLAY))
    namespaces = [d for d in prod if d.get("kind") == "Namespace"]
    node_classes = [d["metadata"]["name"] for d in prod if d.get("kind") == "EC2NodeClass"]
    if len(node_classes) != 1:
        raise ValueError(f"{TEMPLATE_OVERLAY} should render one EC2NodeClass, found {len(node_classes)}")
    copy_dir = work / "copy-template"
    copy_dir.mkdir(parents=True, exist_ok=True)
    overlay = Path(os.path.relpath((repo_root / TEMPLATE_OVERLAY).resolve(), copy_dir.resolve()))
    spec = _copy_kustomization(overlay, node_classes[0])
    (copy_dir / "kustomization.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    template = kustomize_plain(copy_dir).rstrip("\n")
    per_copy_count = count_documents(template)
    copies = max(1, math.ceil((min_resources - len(namespaces)) / per_copy_count))
    parts = [template.replace(PLACEHOLDER, f"c{number:04d}") for number in range(copies)]
    parts[0] = yaml.safe_dump_all(namespaces, sort_keys=False).rstrip("\n") + "\n---\n" + parts[0]
    name = f"generated-{min_resources}" + ("-per-copy" if per_copy else "")
    rendered_dir = work / f"{name}-rendered"
    rendered_dir.mkdir(parents=True, exist_ok=True)
    files = (
        {f"copy-{number:04d}.yaml": part + "\n" for number, part in enumerate(parts)}
        if per_copy
        else {"resources.yaml": "\n---\n".join(parts) + "\n"}
    )
    count = 0
    for file_name, text in files.items():
        (rendered_dir / file_name).write_text(text, encoding="utf-8")
        count += count_documents(text)
    if count != copies * per_copy_count + len(namespaces):
        raise ValueError(f"generated {count} resources, expected {copies * per_copy_count + len(namespaces)}")
    return Corpus(name, repo_root, (), rendered_dir, count, "prod")
