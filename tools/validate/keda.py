"""KEDA: ScaledObjects and their scale targets (HPAs' too), triggers, their queries and formulas.

PromQL is parsed with `promql_parser`; the KEDA otel add-on's `metricQuery` (`op(metric{l=v,...})`) with a
small `lark` grammar; `scalingModifiers` formulas with Python's `ast` (expr-lang's arithmetic is a subset
of Python's expression syntax).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import promql_parser
from lark import Lark, LarkError, Token

from tools.validate.model import Context, Resource, mapping, sequence


def scale_target(scaled_object: Resource) -> tuple[str, str]:
    ref = mapping(scaled_object.get("spec", "scaleTargetRef"))
    return str(ref.get("kind") or "Deployment"), str(ref.get("name") or "")


_SCALED_OBJECTS_KEY = "keda.scaled_objects_by_target"


def scaled_objects_of(ctx: Context, workload: Resource) -> list[Resource]:
    """The ScaledObjects whose scaleTargetRef is this workload, in rendered order."""
    def index() -> dict[tuple[str, str, str], list[Resource]]:
        by_target: dict[tuple[str, str, str], list[Resource]] = {}
        for so in ctx.of_kind("ScaledObject"):
            by_target.setdefault((so.namespace, *scale_target(so)), []).append(so)
        return by_target

    by_target = ctx.memo(_SCALED_OBJECTS_KEY, index)
    return list(by_target.get((workload.namespace, workload.kind, workload.name), ()))


def target_of(ctx: Context, scaled_object: Resource) -> Resource | None:
    kind, name = scale_target(scaled_object)

    def index() -> dict[tuple[str, str], Resource]:
        by_name: dict[tuple[str, str], Resource] = {}
        for resource in ctx.of_kind(kind):
            by_name.setdefault((resource.name, resource.namespace), resource)
        return by_name

    return ctx.memo(f"keda.by_name.{kind}", index).get((name, scaled_object.namespace))


_HPAS_KEY = "keda.hpas_by_target"


def hpas_of(ctx: Context, workload: Resource) -> list[Resource]:
    """The HorizontalPodAutoscalers whose scaleTargetRef is this workload, in rendered order."""
    def index() -> dict[tuple[str, str, str], list[Resource]]:
        by_target: dict[tuple[str, str, str], list[Resource]] = {}
        for hpa in ctx.of_kind("HorizontalPodAutoscaler"):
            ref = mapping(hpa.get("spec", "scaleTargetRef"))
            kind, name = ref.get("kind"), ref.get("name")
            if isinstance(kind, str) and isinstance(name, str):  # anything else names no workload
                by_target.setdefault((hpa.namespace, kind, name), []).append(hpa)
        return by_target

    by_target = ctx.memo(_HPAS_KEY, index)
    return list(by_target.get((workload.namespace, workload.kind, workload.name), ()))


def triggers(scaled_object: Resource) -> list[tuple[int, Mapping[str, Any]]]:
    listed = sequence(scaled_object.get("spec", "triggers"))
    return [(i, t) for i, t in enumerate(listed) if isinstance(t, dict)]


class QueryError(ValueError):
    pass


# The KEDA otel add-on / kedify-otel `metricQuery`: op(metric{label=value,...}); only `=` matching.
_OTEL_QUERY_GRAMMAR = r"""
    start: OP "(" METRIC labels? ")"
    labels: "{" [label ("," label)*] "}"
    label: NAME "=" VALUE
    OP: "sum" | "min" | "max" | "avg" | "count"
    METRIC: /[a-zA-Z_:][a-zA-Z0-9_:.]*/
    NAME: /[a-zA-Z_][a-zA-Z0-9_.]*/
    VALUE: /[^,}\s]+/
    %ignore /\s+/
"""


@functools.cache
def _otel_query_parser() -> Lark:
    # Built on first use, not at import: most runs parse no otel query at all.
    return Lark(_OTEL_QUERY_GRAMMAR, parser="lalr")


def otel_query_metric(query: str) -> str:
    try:
        tree = _otel_query_parser().parse(query)
    except LarkError as exc:
        raise QueryError(f"metricQuery {query!r} is not op(metric{{label=value,...}}): {exc}") from None
    metric = next(t for t in tree.children if isinstance(t, Token) and t.type == "METRIC")
    return str(metric)


def promql_metrics(query: str) -> list[str]:
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        raise QueryError(f"query {query!r} is not valid PromQL: {exc}") from None
    names: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(str(node.name))

    promql_parser.walk(expr, visit)
    return names


@dataclass(frozen=True)
class TriggerQuery:
    field: str  # "query" | "metricQuery"
    metrics: tuple[str, ...]


def trigger_query(trigger: Mapping[str, Any]) -> TriggerQuery | None:
    """The metric names a trigger's query reads; None for triggers without a metrics query."""
    metadata = mapping(trigger.get("metadata"))
    kind = trigger.get("type")
    if kind == "prometheus" and "query" in metadata:
        return TriggerQuery("query", tuple(promql_metrics(str(metadata["query"]))))
    if kind in ("kedify-otel", "external") and "metricQuery" in metadata:
        return TriggerQuery("metricQuery", (otel_query_metric(str(metadata["metricQuery"])),))
    return None


def trigger_target(trigger: Mapping[str, Any]) -> tuple[str, float] | None:
    """(metadata field, value) of the trigger's per-replica target."""
    metadata = mapping(trigger.get("metadata"))
    for key in ("threshold", "targetValue", "value"):
        if key in metadata:
            try:
                return key, float(metadata[key])
            except (TypeError, ValueError):
                return None
    return None


def measures(trigger: Mapping[str, Any], metric_suffix: str) -> bool:
    """Whether the trigger's query reads the vLLM metric `metric_suffix` (either naming form)."""
    try:
        query = trigger_query(trigger)
    except QueryError:
        return False
    return query is not None and any(
        m.split(":")[-1].removeprefix("vllm_") == metric_suffix for m in query.metrics
    )


# Which Python AST nodes a KEDA formula may use: expr-lang's arithmetic and comparisons on trigger names
# and numbers, parenthesised. Ternaries, calls and attribute access are outside the subset.
_FORMULA_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
)


def formula_names(formula: str) -> list[str]:
    """Trigger names used by a scalingModifiers formula; raises QueryError outside the subset."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise QueryError(f"formula {formula!r} does not parse: {exc.msg}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _FORMULA_NODES):
            raise QueryError(
                f"formula {formula!r} uses {type(node).__name__}, outside the supported subset (trigger "
                "names, numbers, + - * / % **, comparisons, parentheses)"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise QueryError(f"formula {formula!r} has a non-numeric literal {node.value!r}")
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return names
