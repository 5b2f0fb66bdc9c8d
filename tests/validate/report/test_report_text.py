# Expected output is kept verbatim, one rendered line per source line.
# ruff: noqa: E501
from __future__ import annotations

from report_samples import make_report

from tools.validate.model import Finding, Report, Severity
from tools.validate.report import RenderOptions, render

EXPECTED = """\
overlay dev
  Deployment/llm/vllm
    info     gpu/awq-on-ampere  base/vllm/deployment.yaml  spec.template.spec.containers[0].args
      NodePool gpu may launch g4dn (Turing); AWQ needs Ampere.
      fix: Allow only g5/g6/p4 instance families in the NodePool.

overlay prod
  (whole overlay)
    error    input/duplicate-key  overlays/prod/kustomization.yaml:7
      duplicate key 'resources'
      fix: Keep one 'resources' list.
  Deployment/llm/vllm
    warning  security/run-as-non-root  base/vllm/deployment.yaml:41  spec.template.spec.containers[0].securityContext
      container `vllm` runs as uid 0 | 100% of pods,
      set runAsNonRoot: true
      fix: Set runAsUser: 1000 in overlays/prod/patch-security.yaml.
  ScaledObject/llm/vllm
    error    scaling/keda-max-within-gpu-limit  overlays/prod/patch-keda.yaml:12  spec.maxReplicaCount
      KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.
      fix: Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit.

suppressed (1)
  dev Deployment/llm/gateway
    warning  security/run-as-non-root  base/gateway/deployment.yaml:30  spec.template.spec.containers[0].securityContext
      container gateway runs as uid 0
      reason: binds port 80 until the Service maps 8080, PLAT-12 (expires 2026-12-31)

FAIL: 2 errors, 1 warning, 1 info (1 suppressed); 14 resources in 2 overlays checked (dev, prod); fail level: warning
"""


def test_text_groups_by_overlay_then_resource(report: Report) -> None:
    assert render(report, "text").splitlines() == EXPECTED.splitlines()
    assert render(report, "text") == EXPECTED


def test_text_has_no_colour_by_default(report: Report) -> None:
    assert "\x1b[" not in render(report, "text")


def test_text_colours_when_asked(report: Report) -> None:
    lines = render(report, "text", RenderOptions(colour=True)).splitlines()
    assert lines[0] == "\x1b[1moverlay dev\x1b[0m"
    assert lines[2].startswith("    \x1b[36minfo   \x1b[0m  gpu/awq-on-ampere  ")
    assert lines[8].startswith("    \x1b[31merror  \x1b[0m  input/duplicate-key  ")
    assert lines[-1] == (
        "\x1b[31mFAIL: 2 errors, 1 warning, 1 info (1 suppressed); 14 resources in 2 overlays checked"
        " (dev, prod); fail level: warning\x1b[0m"
    )


def test_empty_report_is_a_clean_pass(empty_report: Report) -> None:
    assert render(empty_report, "text") == "PASS: no findings; 14 resources in 2 overlays checked (dev, prod)\n"


def test_findings_below_the_fail_level_pass(report: Report) -> None:
    info_only = make_report([f for f in report.findings if f.severity == Severity.INFO], resources=1)
    info_only.overlays = ["dev"]
    assert render(info_only, "text").splitlines()[-1] == (
        "PASS: 0 errors, 0 warnings, 1 info; 1 resource in 1 overlay checked (dev); fail level: warning"
    )


def test_finding_without_any_source(report: Report) -> None:
    finding = Finding(
        rule_id="input/render-failed",
        severity=Severity.ERROR,
        message="kustomize build failed",
        overlay="staging",
    )
    lines = render(make_report([finding], overlays=["staging"]), "text").splitlines()
    assert lines[:4] == [
        "overlay staging",
        "  (whole overlay)",
        "    error    input/render-failed  (no source line)",
        "      kustomize build failed",
    ]
