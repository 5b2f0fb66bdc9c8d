"""The engine: rules run on rendered overlays, findings located and suppressed, crashes reported."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tools.validate.config import GateConfig, load_config
from tools.validate.engine import RunOptions, discover_targets, run
from tools.validate.model import (
    Context,
    Finding,
    Rule,
    Severity,
    SourceLocation,
    Suppression,
    Violation,
    format_path,
)
from tools.validate.rules import meta
from tools.validate.rules.base import Registry

TREE = Path(__file__).parent / "fixtures" / "tree"
TODAY = dt.date(2026, 6, 1)


def every_resource(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for resource in ctx.resources:
        yield Violation(resource, "metadata.name", f"{resource.ref()} exists")


def replicas_set(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for resource in ctx.of_kind("Deployment"):
        if resource.get("spec", "replicas", default=0) > options["max_replicas"]:
            yield Violation(resource, "spec.replicas", f"replicas above {options['max_replicas']}")


def crashes(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    yield from ()
    raise KeyError("spec")


def fixture_rule(rule_id: str, check: Any, **kwargs: Any) -> Rule:
    defaults: dict[str, Any] = {
        "title": rule_id, "severity": Severity.WARNING, "why": "why", "remediation": "fix it", "scope": (),
    }
    defaults.update(kwargs)
    return Rule(id=rule_id, family=rule_id.split("/")[0], check=check, **defaults)


EVERY = fixture_rule("gitops/fixture-every-resource", every_resource)
REPLICAS = fixture_rule(
    "scaling/fixture-replicas", replicas_set, scope=("Deployment",), options={"max_replicas": 1}
)
NEVER_IN_SCOPE = fixture_rule("gpu/fixture-nodepool", crashes, scope=("NodePool",))


def load_config_text(content: dict[str, Any], registry: Registry) -> GateConfig:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "gate.yaml"
        path.write_text(json.dumps(content))  # JSON is YAML
        return load_config(path, registry, "gate.yaml")


def options(registry: Registry, **kwargs: Any) -> RunOptions:
    settings: dict[str, Any] = {"config": GateConfig(), "today": TODAY, **kwargs}
    return RunOptions(repo_root=TREE, registry=registry, **settings)


def key(finding: Finding) -> tuple[str, str, str, SourceLocation | None, Suppression | None]:
    ref = finding.resource.ref() if finding.resource else ""
    return finding.rule_id, ref, format_path(finding.path), finding.location, finding.suppression


def test_findings_carry_severity_location_and_remediation() -> None:
    registry = Registry([REPLICAS, NEVER_IN_SCOPE, *meta.RULES])

    report = run([TREE / "overlays" / "dev"], options(registry))

    assert report.overlays == ["overlays/dev"]
    assert report.resource_count == 3
    (finding,) = report.findings
    assert key(finding) == (
        "scaling/fixture-replicas", "Deployment/dev/dev-web", "spec.replicas",
        SourceLocation("overlays/dev/scale.yaml", 6), None,
    )
    assert (finding.severity, finding.remediation) == (Severity.WARNING, "fix it")
    assert finding.overlay == "overlays/dev"
    assert report.failing() == [finding]


def test_environment_options_and_severity_come_from_the_config() -> None:
    registry = Registry([REPLICAS, *meta.RULES])

    def findings(dev_rules: dict[str, Any]) -> list[Finding]:
        config = load_config_text(
            {"rules": {"scaling/fixture-replicas": {"severity": "error"}},
             "environments": {
                 "dev": {"paths": ["overlays/dev"], "rules": {"scaling/fixture-replicas": dev_rules}}
             }},
            registry,
        )
        return run([TREE / "overlays" / "dev"], options(registry, config=config)).findings

    assert findings({"max_replicas": 2}) == []
    assert [(f.rule_id, f.severity) for f in findings({})] == [("scaling/fixture-replicas", Severity.ERROR)]
    assert findings({"enabled": False}) == []


def test_suppressions_with_reason_apply_and_others_are_findings() -> None:
    registry = Registry([EVERY, *meta.RULES])

    report = run([TREE / "overlays" / "suppressed"], options(registry))

    annotation = 'metadata.annotations["gate.eks-llm-inference.io/suppress"]'
    assert sorted(key(f) for f in report.findings) == sorted([
        ("gitops/fixture-every-resource", "Deployment/web", "metadata.name",
         SourceLocation("base/web/deployment.yaml", 5),
         Suppression("gitops/fixture-every-resource", "the fixture flags every resource", "2099-12-31")),
        ("gitops/fixture-every-resource", "Service/web", "metadata.name",
         SourceLocation("base/web/service.yaml", 11), None),
        ("gitops/fixture-every-resource", "ConfigMap/web-config", "metadata.name",
         SourceLocation("base/web/service.yaml", 4), None),
        ("gitops/suppression-needs-reason", "Service/web", annotation,
         SourceLocation("overlays/suppressed/suppressions.yaml", 16), None),
        ("gitops/suppression-expired", "ConfigMap/web-config", annotation,
         SourceLocation("overlays/suppressed/suppressions.yaml", 24), None),
        ("gitops/suppression-unknown-rule", "ConfigMap/web-config", annotation,
         SourceLocation("overlays/suppressed/suppressions.yaml", 24), None),
    ])
    messages = {f.rule_id: f.message for f in report.findings if f.rule_id.startswith("gitops/suppression")}
    assert messages == {
        "gitops/suppression-needs-reason":
            "suppression of gitops/fixture-every-resource has no reason: say why it is acceptable",
        "gitops/suppression-expired": "suppression of gitops/fixture-every-resource expired on 2024-12-31",
        "gitops/suppression-unknown-rule": "suppression #2 names unknown rule 'gitops/no-such-rule'",
    }
    assert all(not f.suppressed for f in report.failing())


def test_a_suppression_applies_until_the_end_of_its_expiry_day() -> None:
    registry = Registry([EVERY, *meta.RULES])

    on_the_day = run([TREE / "overlays" / "suppressed"], options(registry, today=dt.date(2024, 12, 31)))
    day_after = run([TREE / "overlays" / "suppressed"], options(registry, today=dt.date(2025, 1, 1)))

    def config_map_suppressed(findings: list[Finding]) -> bool:
        (finding,) = [
            f for f in findings if f.rule_id == EVERY.id and f.resource and f.resource.kind == "ConfigMap"
        ]
        return finding.suppressed

    assert config_map_suppressed(on_the_day.findings)
    assert not config_map_suppressed(day_after.findings)
    assert "gitops/suppression-expired" not in {f.rule_id for f in on_the_day.findings}


def test_a_crashing_check_is_a_finding_not_a_traceback() -> None:
    crashing = fixture_rule("security/fixture-crash", crashes)
    registry = Registry([crashing, REPLICAS, *meta.RULES])

    report = run([TREE / "overlays" / "dev"], options(registry, raise_on_crash=False))

    crashed = [f for f in report.findings if f.rule_id == "input/rule-crashed"]
    assert [(f.overlay, f.severity, f.extra["rule"]) for f in crashed] == [
        ("overlays/dev", Severity.ERROR, "security/fixture-crash")
    ]
    assert crashed[0].message == (
        "the check of security/fixture-crash crashed on overlays/dev: KeyError: 'spec'"
    )
    # the other rules still ran
    assert "scaling/fixture-replicas" in {f.rule_id for f in report.findings}


def test_crashes_raise_under_the_test_setting() -> None:
    crashing = fixture_rule("security/fixture-crash", crashes)

    with pytest.raises(KeyError):
        run([TREE / "overlays" / "dev"], options(Registry([crashing, *meta.RULES])))


def test_discovery_takes_entry_points_not_building_blocks(tmp_path: Path) -> None:
    def kustomization(directory: str, body: str) -> None:
        path = tmp_path / directory
        path.mkdir(parents=True, exist_ok=True)
        (path / "kustomization.yaml").write_text(body)

    kustomization("overlays/dev", "resources: [../../base/web]\n")
    kustomization("overlays/prod", "resources: [../../base/web]\n")
    kustomization("apps/base", "resources: [../repository]\n")
    kustomization("apps/repository", "resources: []\n")
    kustomization("apps/dev", "resources: [../base]\ncomponents: [../environment]\n")
    kustomization("apps/environment", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n")
    kustomization("apps/root", "resources: [../repository]\n")
    kustomization("clusters/dev", "resources: [../../apps/root]\n")
    (tmp_path / "overlays" / "notes").mkdir()

    found = [p.relative_to(tmp_path).as_posix() for p in discover_targets(tmp_path)]

    assert found == ["overlays/dev", "overlays/prod", "apps/dev", "clusters/dev"]
