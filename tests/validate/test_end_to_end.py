"""Breaking changes reported at the line that made them, end to end.

Each case copies the repository's manifests, applies one realistic pull-request edit as a text edit
of the YAML, runs `gate validate <entry point> --format json=...` and asserts the exact finding(s):
rule id, resource, file and line, and exit code 1. Only the entry point a case needs is passed
(the engine adds that environment's Argo CD Applications on its own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.validate.conftest import edit, finding_key
from tools.validate.cli import main

AMPERE_AND_NEWER = "values: [a10g, l4, l40s, a100, h100]"
WITH_T4 = "values: [a10g, l4, l40s, a100, h100, t4]"
SCALED_OBJECT = "ScaledObject/inference/vllm"
VLLM = "Deployment/inference/vllm"
NODEPOOL = "NodePool/gpu-inference"
KEDA_PROD = "overlays/prod/keda-warm-replicas.yaml"
ENVIRONMENT_PROD = "overlays/prod/environment/environment.yaml"


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Case:
    id: str
    edits: tuple[Edit, ...]
    target: str
    findings: tuple[tuple[str, str, str, int], ...]  # (rule, resource, file, line)


CASES = [
    Case(
        "prod-max-replicas-beyond-gpu-limit",
        (Edit(KEDA_PROD, "maxReplicaCount: 10", "maxReplicaCount: 16"),),
        "overlays/prod",
        (("scaling/max-replicas-fit-nodepool-limits", SCALED_OBJECT, KEDA_PROD, 10),),
    ),
    Case(
        # Adding t4 to the NodePool alone changes nothing for vLLM, whose affinity still excludes it
        # (test below); a PR that lets the model run on T4 edits both.
        "t4-admitted-for-awq-marlin",
        (
            Edit("base/karpenter/nodepool.yaml", AMPERE_AND_NEWER, WITH_T4),
            Edit("base/vllm/deployment.yaml", AMPERE_AND_NEWER, WITH_T4),
        ),
        "overlays/prod",
        (("gpu/quantization-supported-by-nodepool-gpus", NODEPOOL, "base/karpenter/nodepool.yaml", 29),),
    ),
    Case(
        "grace-period-shorter-than-drain",
        (Edit("base/vllm/deployment.yaml", "terminationGracePeriodSeconds: 100",
              "terminationGracePeriodSeconds: 60"),),
        "overlays/prod",
        (("spot/termination-grace-covers-drain", VLLM, "base/vllm/deployment.yaml", 39),),
    ),
    Case(
        "running-target-above-max-num-seqs",
        (Edit("base/keda/scaledobject.yaml", 'targetValue: "25"', 'targetValue: "40"'),),
        "overlays/prod",
        (("scaling/running-target-below-max-num-seqs", SCALED_OBJECT, "base/keda/scaledobject.yaml", 73),),
    ),
    Case(
        "formula-names-a-renamed-trigger",
        (Edit("base/keda/scaledobject.yaml", "name: waiting", "name: queued"),),
        "overlays/prod",
        (("scaling/formula-valid", SCALED_OBJECT, "base/keda/scaledobject.yaml", 62),),
    ),
    Case(
        "query-of-a-removed-vllm-metric",
        (Edit("base/keda/scaledobject.yaml", "metricQuery: sum(vllm_num_requests_waiting)",
              "metricQuery: sum(vllm_gpu_cache_usage_perc)"),),
        "overlays/prod",
        (("scaling/trigger-metric-exported", SCALED_OBJECT, "base/keda/scaledobject.yaml", 78),),
    ),
    Case(
        "query-of-a-metric-the-gateway-does-not-export",
        (Edit("base/keda/scaledobject.yaml", "sum(gateway_upstream_unavailable_total)",
              "sum(gateway_upstream_down_total)"),),
        "overlays/dev",
        (("scaling/trigger-metric-exported", SCALED_OBJECT, "base/keda/scaledobject.yaml", 88),),
    ),
    Case(
        "prod-spot-only",
        (Edit("overlays/prod/nodepool-capacity.yaml", "value: [spot, on-demand]", "value: [spot]"),),
        "overlays/prod",
        (("spot/on-demand-fallback", NODEPOOL, "base/karpenter/nodepool.yaml", 16),),
    ),
    Case(
        "v1beta1-consolidation-policy",
        (Edit("overlays/prod/disruption-budgets.yaml", "consolidationPolicy: WhenEmpty",
              "consolidationPolicy: WhenUnderutilized"),),
        "overlays/prod",
        (
            ("schema/invalid-value", NODEPOOL, "overlays/prod/disruption-budgets.yaml", 9),
            ("spot/consolidation-policy-v1", NODEPOOL, "overlays/prod/disruption-budgets.yaml", 9),
        ),
    ),
    Case(
        "vllm-image-latest",
        (Edit("base/vllm/deployment.yaml", "vllm/vllm-openai:v0.32.0", "vllm/vllm-openai:latest"),),
        "overlays/prod",
        # The image's registry part is a replacement from the environment values (accountId), and the
        # source mapper points a field written by a replacement at the replacement's source.
        (("security/image-pinned", VLLM, ENVIRONMENT_PROD, 12),),
    ),
    Case(
        "prod-follows-head",
        (Edit(ENVIRONMENT_PROD, "gitRevision: v0.1.0", "gitRevision: HEAD"),),
        "apps/prod",
        (("gitops/revision-pinned", "Application/argocd/inference", ENVIRONMENT_PROD, 25),),
    ),
]


def validate(root: Path, out: Path, *targets: str) -> tuple[int, list[tuple[object, ...]]]:
    code = main(
        ["validate", *(str(root / t) for t in targets), "--repo-root", str(root), "--format", f"json={out}"]
    )
    return code, [finding_key(f) for f in json.loads(out.read_text(encoding="utf-8"))["findings"]]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_breaking_edit_is_reported_at_its_line(case: Case, repo_copy: Path, tmp_path: Path) -> None:
    for change in case.edits:
        edit(repo_copy, change.file, change.old, change.new)
    code, findings = validate(repo_copy, tmp_path / "out.json", case.target)
    assert findings == list(case.findings)
    assert code == 1


def test_t4_in_the_nodepool_alone_is_kept_off_by_vllms_affinity(repo_copy: Path, tmp_path: Path) -> None:
    edit(repo_copy, "base/karpenter/nodepool.yaml", AMPERE_AND_NEWER, WITH_T4)
    code, findings = validate(repo_copy, tmp_path / "out.json", "overlays/prod")
    assert (code, findings) == (0, [])


def test_the_repository_as_committed_passes(repo_copy: Path, tmp_path: Path) -> None:
    code, findings = validate(repo_copy, tmp_path / "out.json", "overlays/dev", "overlays/prod")
    assert (code, findings) == (0, [])
