"""Every rule against its own fixtures: fire.yaml yields exactly the expected (Kind/name, path) set,
pass.yaml yields nothing. A meta-test keeps every rule documented and covered."""

from __future__ import annotations

import pytest
from rules_fixtures import FIXTURES, context_for, load_fixture, policy_rules, run_rule, slug

from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.model import Rule
from tools.validate.rules import default_registry
from tools.validate.rules.base import FAMILIES
from tools.validate.vllm_args import find_vllm_python

RULES = policy_rules()
# This rule needs the vLLM environment; without it, it reports nothing (tested separately below).
NEEDS_VLLM = {"gpu/vllm-flags-accepted"}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_at_least_thirty_rules_across_the_policy_families() -> None:
    families = {rule.family for rule in RULES}
    assert len(RULES) >= 30
    assert families == {"scaling", "spot", "gpu", "security", "gitops", "references", "observability", "aws"}
    assert families <= set(FAMILIES)
    registry = default_registry()
    assert all(registry.get(rule.id) is rule for rule in RULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_is_documented_and_has_fixtures(rule: Rule) -> None:
    for field in ("title", "why", "remediation", "example", "use_instead"):
        assert str(getattr(rule, field)).strip(), f"{rule.id} has no {field}"
    assert rule.scope, f"{rule.id} declares no scope"
    for which in ("fire", "pass"):
        assert (FIXTURES / slug(rule) / f"{which}.yaml").is_file(), (
            f"{rule.id}: no fixtures/{slug(rule)}/{which}.yaml"
        )


def test_every_fixture_directory_belongs_to_a_rule() -> None:
    slugs = {slug(rule) for rule in RULES}
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} - slugs - {"baseline"} == set()


@pytest.mark.parametrize("rule", [r for r in RULES if r.id not in NEEDS_VLLM], ids=lambda r: r.id)
def test_rule_fires_exactly_where_expected(rule: Rule, catalogue: Catalogue) -> None:
    fixture = load_fixture(FIXTURES / slug(rule) / "fire.yaml")
    assert fixture.expect, f"{rule.id}: fire.yaml declares no expected violations"
    assert run_rule(rule, context_for(fixture, catalogue), fixture.options) == fixture.expect


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_passes_its_clean_fixture(rule: Rule, catalogue: Catalogue) -> None:
    fixture = load_fixture(FIXTURES / slug(rule) / "pass.yaml")
    assert fixture.resources, f"{rule.id}: pass.yaml has no resources"
    assert run_rule(rule, context_for(fixture, catalogue), fixture.options) == set()


def test_vllm_flags_rule_fires_with_the_real_parser(catalogue: Catalogue) -> None:
    if find_vllm_python() is None:
        pytest.skip("the vLLM environment is not installed (scripts/setup installs it; or set VLLM_PYTHON)")
    rule = default_registry().get("gpu/vllm-flags-accepted")
    fixture = load_fixture(FIXTURES / slug(rule) / "fire.yaml")
    assert run_rule(rule, context_for(fixture, catalogue), fixture.options) == fixture.expect


def test_vllm_flags_rule_reports_nothing_and_says_so_without_vllm(
    catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("VLLM_PYTHON", "/nonexistent/vllm/bin/python")
    rule = default_registry().get("gpu/vllm-flags-accepted")
    fixture = load_fixture(FIXTURES / slug(rule) / "fire.yaml")
    ctx = context_for(fixture, catalogue)
    assert run_rule(rule, ctx, fixture.options) == set()
    assert run_rule(rule, ctx, fixture.options) == set()
    notes = ctx.extras["notes"]
    assert len(notes) == 1 and "vLLM environment is not installed" in notes[0]


@pytest.mark.parametrize(
    ("rule_id", "key", "segments"),
    [
        ("gitops/sync-wave-order", "argocd.argoproj.io/sync-wave",
         ("metadata", "annotations", "argocd.argoproj.io/sync-wave")),
        ("gpu/node-selector-satisfiable", "karpenter.k8s.aws/instance-gpu-name",
         ("spec", "template", "spec", "nodeSelector", "karpenter.k8s.aws/instance-gpu-name")),
        ("references/in-cluster-url-resolves", "settings.yaml", ("data", "settings.yaml")),
    ],
)
def test_a_key_with_dots_is_one_segment_of_the_path(rule_id: str, key: str, segments: tuple[str, ...],
                                                     catalogue: Catalogue) -> None:
    rule = default_registry().get(rule_id)
    fixture = load_fixture(FIXTURES / slug(rule) / "fire.yaml")
    paths = [v.segments for v in rule.check(context_for(fixture, catalogue), rule.options)]
    assert segments in paths
    assert all(part != key.split(".")[0] for path in paths for part in path)  # never split at its dots
