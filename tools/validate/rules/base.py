"""The rule families and the registry that lists every rule; the rule type itself (`Rule`: data, its
documentation beside it, and a check function) lives with the data model in `tools.validate.model`.

A check receives the whole rendered overlay (`Context`) and the rule's options (defaults merged
with the environment's config) and yields `Violation`s; the engine turns them into findings with
the source file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tools.validate.model import Rule

FAMILIES = (
    "scaling", "spot", "gpu", "security", "gitops", "references", "observability", "aws", "schema", "input",
)


class UnknownRuleError(KeyError):
    pass


class Registry:
    """An explicit list of rules; looking up an id that is not registered raises."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules: dict[str, Rule] = {}
        for rule in rules:
            if rule.family not in FAMILIES:
                raise ValueError(f"rule {rule.id}: unknown family {rule.family!r}")
            if rule.id in self._rules:
                raise ValueError(f"rule {rule.id} registered twice")
            self._rules[rule.id] = rule

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def get(self, rule_id: str) -> Rule:
        try:
            return self._rules[rule_id]
        except KeyError:
            raise UnknownRuleError(f"unknown rule id {rule_id!r}") from None
