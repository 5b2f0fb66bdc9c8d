"""Loading rule fixtures: fixtures/<rule-slug>/{fire,pass}.yaml, multi-document YAML of resources.

A document of `kind: Fixture` is not a resource; it carries what the rule run needs besides the resources:

    kind: Fixture
    env: prod                      # Context.env (default prod)
    overlay: overlays/prod         # Context.overlay (default overlays/prod)
    options: {min_warm_replicas: 1}  # merged over the rule's defaults
    expect:                        # fire.yaml only: the exact (Kind/name, path) set the rule yields
    - [ScaledObject/vllm, spec.maxReplicaCount]
    applications: [...]            # Application documents passed as ctx.extras["applications"]
    external: [...]                # gate.yaml `external` declarations, passed as ctx.external
    application_sources: {overlays/prod: null, overlays/gone: does not exist in the repository}
                                   # ctx.extras["application_sources"], as the engine finds them
    environment_values: {accountId: "222222222222", ...}
                                   # the overlay's environment values, as the engine reads them
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.validate.catalogue import Catalogue
from tools.validate.config import External
from tools.validate.environment_values import EXTRAS_KEY as ENVIRONMENT_VALUES_KEY
from tools.validate.model import Context, Resource, Rule, format_path
from tools.validate.rules import aws, gitops, gpu, observability, references, scaling, security, spot

FIXTURES = Path(__file__).parent / "fixtures"


def policy_rules() -> list[Rule]:
    """The rules of the policy families (the schema and input families are tested with their code)."""
    return [
        *scaling.RULES, *spot.RULES, *gpu.RULES, *security.RULES, *gitops.RULES, *references.RULES,
        *observability.RULES, *aws.RULES,
    ]


def slug(rule: Rule) -> str:
    return rule.id.split("/", 1)[1]


@dataclass
class Fixture:
    resources: list[Resource]
    env: str = "prod"
    overlay: str = "overlays/prod"
    options: dict[str, Any] = field(default_factory=dict)
    expect: set[tuple[str, str]] = field(default_factory=set)
    applications: list[Resource] = field(default_factory=list)
    external: list[Resource] = field(default_factory=list)
    application_sources: dict[str, str | None] = field(default_factory=dict)
    environment_values: dict[str, str] | None = None


def resources_from(docs: Iterable[Mapping[str, Any]], overlay: str) -> list[Resource]:
    return [Resource(dict(doc), overlay, index=i) for i, doc in enumerate(docs)]


def load_fixture(path: Path) -> Fixture:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    meta = next((d for d in docs if d.get("kind") == "Fixture"), {})
    overlay = str(meta.get("overlay", "overlays/prod"))
    return Fixture(
        resources=resources_from((d for d in docs if d.get("kind") != "Fixture"), overlay),
        env=str(meta.get("env", "prod")),
        overlay=overlay,
        options=dict(meta.get("options") or {}),
        expect={(str(ref), str(p)) for ref, p in meta.get("expect") or []},
        applications=resources_from(meta.get("applications") or [], "apps"),
        external=[External.model_validate(item).as_resource(overlay) for item in meta.get("external") or []],
        application_sources=dict(meta.get("application_sources") or {}),
        environment_values=(
            {str(k): str(v) for k, v in meta["environment_values"].items()}
            if isinstance(meta.get("environment_values"), dict) else None
        ),
    )


def context_for(fixture: Fixture, catalogue: Catalogue) -> Context:
    extras: dict[str, Any] = {}
    if fixture.applications:
        extras["applications"] = fixture.applications
    if fixture.application_sources:
        extras["application_sources"] = fixture.application_sources
    if fixture.environment_values is not None:
        extras[ENVIRONMENT_VALUES_KEY] = fixture.environment_values
    return Context(
        overlay=fixture.overlay,
        env=fixture.env,
        resources=fixture.resources,
        catalogue=catalogue,
        extras=extras,
        external=fixture.external,
    )


def run_rule(rule: Rule, ctx: Context, options: Mapping[str, Any] | None = None) -> set[tuple[str, str]]:
    merged = {**rule.options, **(options or {})}
    unknown = set(options or {}) - set(rule.options)
    if unknown:
        raise KeyError(f"{rule.id}: fixture sets unknown options {sorted(unknown)}")
    return {
        (f"{v.resource.kind}/{v.resource.name}" if v.resource else "", format_path(v.segments))
        for v in rule.check(ctx, merged)
    }


def run_all(
    rules: Iterable[Rule], ctx: Context, options_for: Mapping[str, Any] | None = None
) -> set[tuple[str, str, str]]:
    """(rule id, Kind/name, path) of every violation; each rule takes its options by name from options_for."""
    out = set()
    for rule in rules:
        options = {k: v for k, v in (options_for or {}).items() if k in rule.options}
        out |= {(rule.id, ref, path) for ref, path in run_rule(rule, ctx, options)}
    return out
