"""How a rule is declared: as data, with its documentation beside it, and a check function.

A check receives the whole rendered overlay (`Context`) and the rule's options (defaults merged
with the environment's config) and yields `Violation`s; the engine turns them into findings with
the source file and line.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from tools.validate.model import Resource, Severity

T = TypeVar("T")

FAMILIES = (
    "scaling", "spot", "gpu", "security", "gitops", "references", "observability", "aws", "schema", "input",
)


@dataclass(frozen=True)
class Violation:
    resource: Resource | None
    path: str
    message: str


@dataclass
class Context:
    """Everything a check may look at: one overlay's rendered resources and the environment."""

    overlay: str
    env: str | None
    resources: Sequence[Resource]
    catalogue: Any = None  # tools.validate.catalogue.Catalogue, loaded once per run
    schemas: Any = None  # tools.validate.schema.SchemaValidator, built once per run
    extras: dict[str, Any] = field(default_factory=dict)
    # Objects the overlay references that something else creates (gate.yaml `external`).
    external: Sequence[Resource] = ()
    _by_kind: dict[str, list[tuple[int, Resource]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """`build()` once per overlay, kept in `extras` under `key`: derived data several rules ask for
        (indexes, parsed commands). What it returns is shared: callers read it and never change it."""
        if key not in self.extras:
            self.extras[key] = build()
        return cast(T, self.extras[key])

    def of_kind(self, *kinds: str) -> Iterator[Resource]:
        """The resources of these kinds, in rendered order.

        Rules ask for kinds once per workload, so the kinds are indexed on first use (a scan per call
        made the policy stage quadratic in the overlay's size); `resources` must not change afterwards.
        """
        if self._by_kind is None:
            by_kind: dict[str, list[tuple[int, Resource]]] = {}
            for position, resource in enumerate(self.resources):
                by_kind.setdefault(resource.kind, []).append((position, resource))
            self._by_kind = by_kind
        if len(kinds) == 1:
            return (resource for _, resource in self._by_kind.get(kinds[0], ()))
        lists = [self._by_kind.get(kind, []) for kind in dict.fromkeys(kinds)]
        return (resource for _, resource in heapq.merge(*lists, key=lambda item: item[0]))


Check = Callable[[Context, Mapping[str, Any]], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    title: str
    severity: Severity
    why: str
    remediation: str
    scope: tuple[str, ...]
    check: Check
    options: Mapping[str, Any] = field(default_factory=dict)
    example: str = ""
    use_instead: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"rule {self.id}: unknown family {self.family!r}")
        if not self.id.startswith(f"{self.family}/"):
            raise ValueError(f"rule {self.id}: id must start with its family, '{self.family}/'")


class UnknownRuleError(KeyError):
    pass


class Registry:
    """An explicit list of rules; looking up an id that is not registered raises."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules: dict[str, Rule] = {}
        for rule in rules:
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
