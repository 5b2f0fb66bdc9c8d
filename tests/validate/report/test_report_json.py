from __future__ import annotations

import json
import re
from pathlib import Path

from tools.validate.model import Report
from tools.validate.report import render

DEPLOYMENT_VLLM = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "llm", "name": "vllm"}

EXPECTED_FINDINGS = [
    {
        "rule": "gpu/awq-on-ampere",
        "severity": "info",
        "message": "NodePool gpu may launch g4dn (Turing); AWQ needs Ampere.",
        "remediation": "Allow only g5/g6/p4 instance families in the NodePool.",
        "overlay": "dev",
        "resource": DEPLOYMENT_VLLM,
        "path": "spec.template.spec.containers[0].args",
        "file": "base/vllm/deployment.yaml",
        "line": None,
        "suppressed": None,
    },
    {
        "rule": "input/duplicate-key",
        "severity": "error",
        "message": "duplicate key 'resources'",
        "remediation": "Keep one 'resources' list.",
        "overlay": "prod",
        "resource": None,
        "path": None,
        "file": "overlays/prod/kustomization.yaml",
        "line": 7,
        "suppressed": None,
    },
    {
        "rule": "security/run-as-non-root",
        "severity": "warning",
        "message": "container `vllm` runs as uid 0 | 100% of pods,\nset runAsNonRoot: true",
        "remediation": "Set runAsUser: 1000 in overlays/prod/patch-security.yaml.",
        "overlay": "prod",
        "resource": DEPLOYMENT_VLLM,
        "path": "spec.template.spec.containers[0].securityContext",
        "file": "base/vllm/deployment.yaml",
        "line": 41,
        "suppressed": None,
    },
    {
        "rule": "scaling/keda-max-within-gpu-limit",
        "severity": "error",
        "message": "KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.",
        "remediation": "Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit.",
        "overlay": "prod",
        "resource": {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "namespace": "llm",
            "name": "vllm",
        },
        "path": "spec.maxReplicaCount",
        "file": "overlays/prod/patch-keda.yaml",
        "line": 12,
        "suppressed": None,
    },
    {
        "rule": "security/run-as-non-root",
        "severity": "warning",
        "message": "container gateway runs as uid 0",
        "remediation": "Set securityContext.runAsNonRoot: true and a numeric runAsUser.",
        "overlay": "dev",
        "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "llm", "name": "gateway"},
        "path": "spec.template.spec.containers[0].securityContext",
        "file": "base/gateway/deployment.yaml",
        "line": 30,
        "suppressed": {
            "reason": "binds port 80 until the Service maps 8080, PLAT-12",
            "expires": "2026-12-31",
        },
    },
]

EXPECTED_RULE_IDS = [
    "scaling/keda-max-within-gpu-limit",
    "security/run-as-non-root",
    "gpu/awq-on-ampere",
    "spot/pdb-present",
    "input/duplicate-key",
]


def test_json_document(report: Report) -> None:
    document = json.loads(render(report, "json"))
    assert document["version"] == 1
    assert document["summary"] == {
        "verdict": "fail",
        "fail_level": "warning",
        "overlays": ["dev", "prod"],
        "resources": 14,
        "by_severity": {"error": 2, "warning": 1, "info": 1},
        "failing": 3,
        "suppressed": 1,
    }
    assert document["findings"] == EXPECTED_FINDINGS
    assert [rule["id"] for rule in document["rules"]] == EXPECTED_RULE_IDS
    assert document["rules"][0] == {
        "id": "scaling/keda-max-within-gpu-limit",
        "family": "scaling",
        "title": "KEDA maxReplicaCount fits the NodePool GPU limit",
        "severity": "error",
        "why": "Replicas beyond the GPUs Karpenter may launch stay Pending and queue requests.",
        "remediation": "Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit.",
        "scope": ["ScaledObject", "NodePool"],
        "registered": True,
    }
    # A rule id the registry does not know is still described, and marked as such.
    assert document["rules"][4] == {
        "id": "input/duplicate-key",
        "family": "input",
        "title": "input/duplicate-key",
        "severity": "error",
        "why": "",
        "remediation": "",
        "scope": [],
        "registered": False,
    }
    assert set(document) == {"version", "summary", "findings", "rules", "notes"}
    assert document["notes"] == []


def test_empty_report_is_a_clean_pass(empty_report: Report) -> None:
    document = json.loads(render(empty_report, "json"))
    assert document["summary"] == {
        "verdict": "pass",
        "fail_level": "warning",
        "overlays": ["dev", "prod"],
        "resources": 14,
        "by_severity": {"error": 0, "warning": 0, "info": 0},
        "failing": 0,
        "suppressed": 0,
    }
    assert document["findings"] == []
    assert [rule["id"] for rule in document["rules"]] == EXPECTED_RULE_IDS[:4]


def test_docs_describe_every_field(report: Report) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "output.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_A-Z]+)` \|", docs, flags=re.MULTILINE))
    document = json.loads(render(report, "json"))
    finding = document["findings"][-1]  # the suppressed one: every nested object present
    fields = {
        *document,
        *document["summary"],
        *finding,
        *finding["resource"],
        *finding["suppressed"],
        *document["rules"][0],
    } - {"version", "summary", "findings", "rules"}
    assert sorted(fields - documented) == []
