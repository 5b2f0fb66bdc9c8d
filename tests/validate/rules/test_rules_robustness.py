"""No rule crashes on a malformed resource: any field of the repository's rendered overlays replaced by a
value of another shape (a string for a mapping, a list for a number, null, a deep structure) yields
findings or nothing, never an exception. The engine would turn a crash into input/rule-crashed; a check
that crashes checks nothing, so none may."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_fixtures import FIXTURES, policy_rules, resources_from

from tools.validate.catalogue import load_catalogue
from tools.validate.model import Context

RULES = [r for r in policy_rules() if r.id != "gpu/vllm-flags-accepted"]
CATALOGUE = load_catalogue()
DOCS = {env: [d for d in yaml.safe_load_all((FIXTURES / "baseline" / f"{env}.yaml").read_text()) if d]
        for env in ("dev", "prod")}

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.just("8000"), st.just("http"), st.just([]), st.just({}),
    st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers(), st.none()),
                    max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.sampled_from(["dev", "prod"]), data=st.data())
def test_no_rule_crashes_on_a_malformed_field(env: str, data: st.DataObject) -> None:
    docs = copy.deepcopy(DOCS[env])
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(docs) - 1))
        paths = [p for p in _paths(docs[index]) if p]
        path = data.draw(st.sampled_from(paths))
        docs[index] = _replace(docs[index], path, data.draw(ODD_VALUES))
    ctx = Context(f"overlays/{env}", env, resources_from(docs, f"overlays/{env}"), CATALOGUE)
    for rule in RULES:
        list(rule.check(ctx, dict(rule.options)))
