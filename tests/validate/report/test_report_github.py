from __future__ import annotations

from report_samples import make_report

from tools.validate.model import Finding, Report, Severity, SourceLocation
from tools.validate.report import render
from tools.validate.report.github import escape_data, escape_property

EXPECTED = [
    "::notice file=base/vllm/deployment.yaml,title=gpu/awq-on-ampere::[dev] Deployment/llm/vllm"
    " spec.template.spec.containers[0].args: NodePool gpu may launch g4dn (Turing); AWQ needs Ampere."
    "%0Afix: Allow only g5/g6/p4 instance families in the NodePool.",
    "::error file=overlays/prod/kustomization.yaml,line=7,title=input/duplicate-key::[prod] (whole overlay):"
    " duplicate key 'resources'%0Afix: Keep one 'resources' list.",
    "::warning file=base/vllm/deployment.yaml,line=41,title=security/run-as-non-root::[prod]"
    " Deployment/llm/vllm spec.template.spec.containers[0].securityContext: container `vllm` runs as uid 0"
    " | 100%25 of pods,%0Aset runAsNonRoot: true"
    "%0Afix: Set runAsUser: 1000 in overlays/prod/patch-security.yaml.",
    "::error file=overlays/prod/patch-keda.yaml,line=12,title=scaling/keda-max-within-gpu-limit::[prod]"
    " ScaledObject/llm/vllm spec.maxReplicaCount:"
    " KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs."
    "%0Afix: Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit.",
    "::notice file=base/gateway/deployment.yaml,line=30,title=security/run-as-non-root (suppressed)::[dev]"
    " Deployment/llm/gateway spec.template.spec.containers[0].securityContext:"
    " container gateway runs as uid 0"
    "%0Asuppressed: binds port 80 until the Service maps 8080, PLAT-12 (expires 2026-12-31)",
    "FAIL: 2 errors, 1 warning, 1 info (1 suppressed); 14 resources in 2 overlays checked (dev, prod);"
    " fail level: warning",
]


def test_github_workflow_commands(report: Report) -> None:
    assert render(report, "github").splitlines() == EXPECTED


def test_escaping_follows_the_runner() -> None:
    assert escape_data("100%\r\nnext: a, b") == "100%25%0D%0Anext: a, b"
    assert escape_property("100%\r\nnext: a, b") == "100%25%0D%0Anext%3A a%2C b"


def test_properties_escape_colon_and_comma() -> None:
    finding = Finding(
        rule_id="schema/unknown-field",
        severity=Severity.ERROR,
        message="unknown field: spec.foo, at 50%",
        overlay="dev",
        location=SourceLocation("overlays/dev/odd,name:1.yaml", 3),
    )
    line = render(make_report([finding], overlays=["dev"]), "github").splitlines()[0]
    assert line == (
        "::error file=overlays/dev/odd%2Cname%3A1.yaml,line=3,title=schema/unknown-field::"
        "[dev] (whole overlay): unknown field: spec.foo, at 50%25"
    )


def test_empty_report_is_a_clean_pass(empty_report: Report) -> None:
    clean = "PASS: no findings; 14 resources in 2 overlays checked (dev, prod)\n"
    assert render(empty_report, "github") == clean
