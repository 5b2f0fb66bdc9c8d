"""The repository's own overlays, rendered as Argo CD renders them, pass every rule under gate.yaml's
options, with the Applications of apps/<env> in sight of the cross-resource gitops rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_fixtures import policy_rules, run_rule

from tools.validate.catalogue import load_catalogue
from tools.validate.config import load_config
from tools.validate.environment_values import EXTRAS_KEY as ENVIRONMENT_VALUES_KEY
from tools.validate.environment_values import environment_values
from tools.validate.model import Context
from tools.validate.render import render
from tools.validate.rules import default_registry

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_repository_overlays_pass_every_rule(env: str) -> None:
    registry = default_registry()
    config = load_config(REPO / "gate.yaml", registry)
    catalogue = load_catalogue()
    apps = render(REPO / "apps" / env, REPO).resources
    found = set()
    for target in (f"overlays/{env}", f"apps/{env}", f"clusters/{env}"):
        rendered = render(REPO / target, REPO)
        external = [item.as_resource(rendered.overlay) for item in config.external_for(env)]
        values = environment_values(REPO / target, REPO, config.limits)
        extras = {"applications": apps, ENVIRONMENT_VALUES_KEY: values}
        ctx = Context(rendered.overlay, env, rendered.resources, catalogue, extras=extras, external=external)
        for rule in policy_rules():
            options = {k: v for k, v in config.options_for(rule, env).items() if k in rule.options}
            found |= {(rule.id, target, *hit) for hit in run_rule(rule, ctx, options)}
    assert found == set()
