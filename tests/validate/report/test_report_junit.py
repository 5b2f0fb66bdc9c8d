from __future__ import annotations

import xml.etree.ElementTree as ET

from report_samples import make_report

from tools.validate.model import Finding, Report, Severity, SourceLocation
from tools.validate.report import render


def _cases(root: ET.Element) -> list[tuple[str, str, str, str | None, str | None]]:
    """(suite, classname, name, outcome, message) per testcase, in document order."""
    rows = []
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            outcome = next((child for child in case if child.tag in {"failure", "skipped", "error"}), None)
            rows.append(
                (
                    suite.get("name", ""),
                    case.get("classname", ""),
                    case.get("name", ""),
                    None if outcome is None else outcome.tag,
                    None if outcome is None else outcome.get("message"),
                )
            )
    return rows


def test_junit_testcases(report: Report) -> None:
    root = ET.fromstring(render(report, "junit"))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "gate",
        "tests": "10",
        "failures": "3",
        "errors": "0",
        "skipped": "1",
    }
    assert _cases(root) == [
        (
            "dev",
            "dev.security",
            "security/run-as-non-root Deployment/llm/gateway",
            "skipped",
            "suppressed: binds port 80 until the Service maps 8080, PLAT-12 (expires 2026-12-31)",
        ),
        ("dev", "dev.gpu", "gpu/awq-on-ampere Deployment/llm/vllm", None, None),
        ("dev", "dev.scaling", "scaling/keda-max-within-gpu-limit", None, None),
        ("dev", "dev.spot", "spot/pdb-present", None, None),
        ("dev", "dev.input", "input/duplicate-key", None, None),
        ("prod", "prod.input", "input/duplicate-key (whole overlay)", "failure", "duplicate key 'resources'"),
        (
            "prod",
            "prod.security",
            "security/run-as-non-root Deployment/llm/vllm",
            "failure",
            "container `vllm` runs as uid 0 | 100% of pods,\nset runAsNonRoot: true",
        ),
        (
            "prod",
            "prod.scaling",
            "scaling/keda-max-within-gpu-limit ScaledObject/llm/vllm",
            "failure",
            "KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.",
        ),
        ("prod", "prod.gpu", "gpu/awq-on-ampere", None, None),
        ("prod", "prod.spot", "spot/pdb-present", None, None),
    ]
    suites = {s.get("name"): {k: s.get(k) for k in ("tests", "failures", "skipped")} for s in root}
    assert suites == {
        "dev": {"tests": "5", "failures": "0", "skipped": "1"},
        "prod": {"tests": "5", "failures": "3", "skipped": "0"},
    }


def test_failure_body_and_source(report: Report) -> None:
    root = ET.fromstring(render(report, "junit"))
    case = root.find("./testsuite[@name='prod']/testcase[@classname='prod.scaling']")
    assert case is not None
    assert (case.get("file"), case.get("line")) == ("overlays/prod/patch-keda.yaml", "12")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "error"
    assert failure.text == (
        "error overlays/prod/patch-keda.yaml:12 ScaledObject/llm/vllm spec.maxReplicaCount\n"
        "KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.\n"
        "fix: Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit."
    )
    # Below the fail level: the testcase passes and says why in its output.
    info = root.find("./testsuite[@name='dev']/testcase[@classname='dev.gpu']")
    assert info is not None
    assert info.findtext("system-out") == (
        "info base/vllm/deployment.yaml Deployment/llm/vllm spec.template.spec.containers[0].args\n"
        "NodePool gpu may launch g4dn (Turing); AWQ needs Ampere.\n"
        "fix: Allow only g5/g6/p4 instance families in the NodePool."
    )


def test_markup_and_control_characters_stay_well_formed() -> None:
    findings = [
        Finding(
            rule_id="schema/unknown-field",
            severity=Severity.ERROR,
            message='field "<spec>" & \x00\x1b[31m]]> is unknown',
            overlay="a&b",
            location=SourceLocation("overlays/a&b/k<1>.yaml", 2),
        ),
        Finding(
            rule_id="schema/unknown-field",
            severity=Severity.ERROR,
            message="second one",
            overlay="a&b",
            location=SourceLocation("overlays/a&b/k<1>.yaml", 9),
        ),
    ]
    root = ET.fromstring(render(make_report(findings, overlays=["a&b"]), "junit"))
    assert _cases(root) == [
        (
            "a&b",
            "a&b.schema",
            "schema/unknown-field (whole overlay)",
            "failure",
            '2 findings: field "<spec>" & \ufffd\ufffd[31m]]> is unknown',
        ),
        *[("a&b", f"a&b.{family}", rule, None, None) for family, rule in [
            ("scaling", "scaling/keda-max-within-gpu-limit"),
            ("security", "security/run-as-non-root"),
            ("gpu", "gpu/awq-on-ampere"),
            ("spot", "spot/pdb-present"),
        ]],
    ]


def test_empty_report_is_a_clean_pass(empty_report: Report) -> None:
    root = ET.fromstring(render(empty_report, "junit"))
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "8",
        "failures": "0",
        "errors": "0",
        "skipped": "0",
    }
    assert [(suite, name, outcome) for suite, _, name, outcome, _ in _cases(root)] == [
        (overlay, rule, None)
        for overlay in ("dev", "prod")
        for rule in (
            "scaling/keda-max-within-gpu-limit",
            "security/run-as-non-root",
            "gpu/awq-on-ampere",
            "spot/pdb-present",
        )
    ]
