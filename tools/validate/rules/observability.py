"""observability rules: alerts and dashboards whose queries can draw something.

A query that names a metric no exporter exports, or a label that metric does not carry, returns an
empty result: the panel stays blank and the alert never fires, silently. These rules parse every
PromQL expression of a PrometheusRule and of every Grafana dashboard ConfigMap (the sidecar's label)
with `promql_parser`, and check each metric and label against the catalogue of exporters
(`tools/validate/data/exporters/`, `vllm_metrics.yaml`, `gateway_metrics.yaml`). Metrics a recording
rule of the same overlay records are known, with any label.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import promql_parser

from tools.validate.catalogue import Catalogue
from tools.validate.model import (
    Context,
    FieldPath,
    QuotedKey,
    Resource,
    Rule,
    Severity,
    Violation,
    mapping,
    sequence,
)

# Series Prometheus itself writes for alerting rules.
PROMETHEUS_SERIES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})
# Grafana's interval variables, replaced by a duration before parsing; any other `$variable` must sit
# inside a quoted label value, where it parses as text.
_INTERVAL_VARIABLE = re.compile(r"\$(?:\{)?__(?:rate_interval|interval|range)(?:_ms|_s)?(?:\})?")
# Functions whose result carries labels their argument does not.
_LABEL_MAKERS = frozenset({"label_replace", "label_join"})


@dataclass(frozen=True)
class Query:
    resource: Resource
    path: FieldPath  # of the field holding the query (a rule's expr, a dashboard's data key)
    where: str  # in words: "alert VllmQueueBacklog", "dashboard llm-scaling, panel 'x', query A"
    expr: str


def _dashboard_label(options: Mapping[str, Any]) -> tuple[str, str]:
    return str(options["dashboard_label"]), str(options["dashboard_label_value"])


def dashboard_configmaps(ctx: Context, options: Mapping[str, Any]) -> Iterator[Resource]:
    label, value = _dashboard_label(options)
    for configmap in ctx.of_kind("ConfigMap"):
        if configmap.labels.get(label) == value:
            yield configmap


def dashboards(ctx: Context, options: Mapping[str, Any]) -> Iterator[tuple[Resource, str, Any]]:
    """(ConfigMap, data key, parsed JSON or the JSONDecodeError) of every dashboard."""
    for configmap in dashboard_configmaps(ctx, options):
        for key, text in sorted((mapping(configmap.get("data"))).items()):
            if not str(key).endswith(".json"):
                continue
            try:
                yield configmap, str(key), json.loads(str(text))
            except json.JSONDecodeError as error:
                yield configmap, str(key), error


def _data_path(key: str) -> FieldPath:
    return ("data", QuotedKey(key))


def _panels(board: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in sequence(board.get("panels")):
        if isinstance(panel, Mapping):
            yield panel
            yield from (p for p in sequence(panel.get("panels")) if isinstance(p, Mapping))  # rows


def _rule_queries(ctx: Context) -> Iterator[tuple[Query, Mapping[str, Any]]]:
    for resource in ctx.of_kind("PrometheusRule"):
        for g, group in enumerate(sequence(resource.get("spec", "groups"))):
            for r, rule in enumerate(sequence(mapping(group).get("rules"))):
                if not isinstance(rule, Mapping) or "expr" not in rule:
                    continue
                name = f"alert {rule['alert']}" if "alert" in rule else f"recording rule {rule.get('record')}"
                path = ("spec", "groups", g, "rules", r, "expr")
                yield Query(resource, path, name, str(rule["expr"])), rule


def queries(ctx: Context, options: Mapping[str, Any]) -> Iterator[Query]:
    """Every PromQL query of the overlay's PrometheusRules and dashboards."""
    for query, _rule in _rule_queries(ctx):
        yield query
    for configmap, key, board in dashboards(ctx, options):
        if not isinstance(board, Mapping):
            continue
        uid = board.get("uid") or key
        for panel in _panels(board):
            for target in sequence(panel.get("targets")):
                if isinstance(target, Mapping) and target.get("expr"):
                    where = f"dashboard {uid}, panel {panel.get('title')!r}, query {target.get('refId', '?')}"
                    yield Query(configmap, _data_path(key), where, str(target["expr"]))


def parse(expr: str) -> Any:
    """The parsed expression (Grafana's interval variables read as 5m); ValueError when it does not parse."""
    return promql_parser.parse(_INTERVAL_VARIABLE.sub("5m", expr))


def recorded_names(ctx: Context) -> frozenset[str]:
    return frozenset(str(rule["record"]) for _q, rule in _rule_queries(ctx) if rule.get("record"))


def _selector_name(node: Any) -> str | None:
    if node.name:
        return str(node.name)
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__" and str(matcher.op) == "MatchOp.Equal":
            return str(matcher.value)
    return None


@dataclass(frozen=True)
class Selector:
    name: str | None
    labels: tuple[str, ...]  # matched on, __name__ aside


@dataclass(frozen=True)
class Grouping:
    """An aggregation `by (labels)` over the series `names`."""

    labels: tuple[str, ...]
    names: tuple[str | None, ...]
    makes_labels: bool  # label_replace/label_join inside: its labels are not only the series'


@dataclass(frozen=True)
class Analysed:
    query: Query
    error: str | None  # why it does not parse
    selectors: tuple[Selector, ...] = ()
    groupings: tuple[Grouping, ...] = ()


def _selector(node: Any) -> Selector:
    labels = tuple(str(m.name) for m in node.matchers.matchers if m.name != "__name__")
    return Selector(_selector_name(node), labels)


@dataclass
class _OpenGrouping:
    labels: tuple[str, ...] | None  # None: not a `by` aggregation
    names: list[str | None]
    makes_labels: bool = False


def analyse(query: Query) -> Analysed:
    """The query's selectors and `by` groupings, from one walk of its syntax tree (walks cost most)."""
    return Analysed(query, *_analyse_expr(query.expr))


@functools.lru_cache(maxsize=4096)
def _analyse_expr(expr_text: str) -> tuple[str | None, tuple[Selector, ...], tuple[Grouping, ...]]:
    """`analyse` of one expression text, kept: the same expressions recur in every copy of a rule file or
    dashboard, and what it returns is immutable."""
    try:
        expr = parse(expr_text)
    except ValueError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "syntax error"
        return detail, (), ()
    selectors: list[Selector] = []
    groupings: list[Grouping] = []
    open_groupings: list[_OpenGrouping] = []

    def enter(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            selector = _selector(node)
            selectors.append(selector)
            for grouping in open_groupings:
                grouping.names.append(selector.name)
        elif isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            by = modifier is not None and str(modifier.type) == "AggModifierType.By"
            open_groupings.append(_OpenGrouping(tuple(map(str, modifier.labels)) if by else None, []))
        elif isinstance(node, promql_parser.Call) and node.func.name in _LABEL_MAKERS:
            for grouping in open_groupings:
                grouping.makes_labels = True

    def leave(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            closed = open_groupings.pop()
            if closed.labels is not None:
                groupings.append(Grouping(closed.labels, tuple(closed.names), closed.makes_labels))

    promql_parser.walk(expr, enter, leave)
    return None, tuple(selectors), tuple(groupings)


def _analysed(ctx: Context, options: Mapping[str, Any]) -> list[Analysed]:
    """Every query of the overlay, parsed and analysed once per overlay (three rules read it)."""
    label, value = _dashboard_label(options)
    key = f"observability.analysed.{label}={value}"
    return ctx.memo(key, lambda: [analyse(query) for query in queries(ctx, options)])


def _nearest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" (did you mean `{close[0]}`?)" if close else ""


def check_promql_parses(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for analysed in _analysed(ctx, options):
        if analysed.error is not None:
            query = analysed.query
            yield Violation(query.resource, query.path, f"{query.where}: not valid PromQL: {analysed.error}")


def check_metric_exported(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue: Catalogue = ctx.catalogue
    recorded = recorded_names(ctx)
    for analysed in _analysed(ctx, options):
        query = analysed.query
        for name in dict.fromkeys(s.name for s in analysed.selectors if s.name):
            if name in recorded or name in PROMETHEUS_SERIES or catalogue.series(name) is not None:
                continue
            known = sorted({metric for e in catalogue.exporters.values() for metric in e.metrics} | recorded)
            yield Violation(
                query.resource,
                query.path,
                f"{query.where}: `{name}` is not a metric any catalogued exporter exports"
                f"{_nearest(name, known)}",
            )


def _labels_of(catalogue: Catalogue, name: str | None, recorded: frozenset[str]) -> frozenset[str] | None:
    """The labels series `name` may carry; None when any label may be there (or the name is unknown)."""
    if name is None or name in recorded or name in PROMETHEUS_SERIES:
        return None
    match = catalogue.series(name)
    if match is None or match.labels is None:
        return None
    return match.labels | catalogue.scrape_labels


def check_label_exported(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue: Catalogue = ctx.catalogue
    recorded = recorded_names(ctx)
    for analysed in _analysed(ctx, options):
        query = analysed.query
        reported: set[tuple[str, str]] = set()
        for selector in analysed.selectors:
            labels = _labels_of(catalogue, selector.name, recorded)
            if labels is None:
                continue
            for label in selector.labels:
                if label in labels or (str(selector.name), label) in reported:
                    continue
                reported.add((str(selector.name), label))
                yield Violation(
                    query.resource,
                    query.path,
                    f"{query.where}: `{selector.name}` has no label `{label}`"
                    f"{_nearest(label, sorted(labels))}; it carries {', '.join(sorted(labels))}",
                )
        for grouping in analysed.groupings:
            label_sets = [_labels_of(catalogue, name, recorded) for name in grouping.names]
            if grouping.makes_labels or not grouping.names or any(labels is None for labels in label_sets):
                continue
            available = frozenset().union(*(labels for labels in label_sets if labels is not None))
            for label in grouping.labels:
                if label in available or ("by", label) in reported:
                    continue
                reported.add(("by", label))
                metrics = ", ".join(f"`{name}`" for name in dict.fromkeys(grouping.names))
                yield Violation(
                    query.resource,
                    query.path,
                    f"{query.where}: grouped by `{label}`, a label {metrics} does not carry"
                    f"{_nearest(label, sorted(available))}",
                )


def _datasource_variables(board: Mapping[str, Any]) -> set[str]:
    variables = (mapping(board.get("templating"))).get("list") or ()
    return {
        str(v.get("name"))
        for v in variables
        if isinstance(v, Mapping) and v.get("type") == "datasource" and v.get("query") == "prometheus"
    }


def _uses_variable(datasource: Any, names: set[str]) -> bool:
    uid = datasource.get("uid") if isinstance(datasource, Mapping) else datasource
    return isinstance(uid, str) and uid in {f"${n}" for n in names} | {f"${{{n}}}" for n in names}


def check_dashboard_valid(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for configmap, key, board in dashboards(ctx, options):
        path = _data_path(key)
        if isinstance(board, json.JSONDecodeError):
            yield Violation(configmap, path, f"{key} is not valid JSON: {board.msg} at line {board.lineno}, "
                                             f"column {board.colno}")
            continue
        if not isinstance(board, Mapping):
            yield Violation(configmap, path, f"{key} is not a dashboard (a JSON object)")
            continue
        missing = [field for field in ("uid", "title", "panels") if not board.get(field)]
        if missing:
            yield Violation(configmap, path, f"{key} has no {', '.join(missing)}")
        variables = _datasource_variables(board)
        if not variables:
            yield Violation(
                configmap, path,
                f"{key} has no Prometheus datasource variable (templating.list entry of type datasource, "
                "query prometheus): its panels are bound to one Grafana's datasource uid",
            )
            continue
        for panel in _panels(board):
            targets = [t for t in sequence(panel.get("targets")) if isinstance(t, Mapping)]
            if not targets:
                continue
            sources = [panel.get("datasource"), *(t.get("datasource") for t in targets if "datasource" in t)]
            if not all(_uses_variable(source, variables) for source in sources):
                yield Violation(
                    configmap, path,
                    f"{key}: panel {panel.get('title')!r} names a datasource other than "
                    f"${{{sorted(variables)[0]}}}",
                )


def check_alert_severity_and_runbook(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    severities = [str(s) for s in options["severities"]]
    for resource in ctx.of_kind("PrometheusRule"):
        for g, group in enumerate(sequence(resource.get("spec", "groups"))):
            for r, rule in enumerate(sequence(mapping(group).get("rules"))):
                if not isinstance(rule, Mapping) or "alert" not in rule:
                    continue
                at = f"spec.groups[{g}].rules[{r}]"
                severity = (mapping(rule.get("labels"))).get("severity")
                if severity not in severities:
                    found = "no severity label" if severity is None else f"severity {severity!r}"
                    yield Violation(
                        resource, f"{at}.labels" if rule.get("labels") else at,
                        f"alert {rule['alert']} has {found}, not one of {', '.join(severities)}: "
                        "Alertmanager routes on it",
                    )
                if not (mapping(rule.get("annotations"))).get("runbook_url"):
                    yield Violation(
                        resource, f"{at}.annotations" if rule.get("annotations") else at,
                        f"alert {rule['alert']} has no runbook_url annotation: whoever is paged has no "
                        "next step",
                    )


_DASHBOARD_OPTIONS = {"dashboard_label": "grafana_dashboard", "dashboard_label_value": "1"}

RULES = [
    Rule(
        id="observability/promql-parses",
        family="observability",
        title="Every alert, recording rule and dashboard query is valid PromQL",
        severity=Severity.ERROR,
        why=(
            "Prometheus refuses a rule file with one bad expression (the operator drops the whole "
            "PrometheusRule), and Grafana shows a broken query as an error only to whoever opens the panel."
        ),
        remediation="Fix the expression; Grafana's $__rate_interval or $__interval may stand for a duration.",
        scope=("PrometheusRule", "ConfigMap"),
        check=check_promql_parses,
        options=_DASHBOARD_OPTIONS,
        example="expr: sum(rate(vllm:num_preemptions_total[5m])",
        use_instead="expr: sum(rate(vllm:num_preemptions_total[5m]))",
    ),
    Rule(
        id="observability/metric-exported",
        family="observability",
        title="Queries read metrics an exporter of the pipeline exports",
        severity=Severity.ERROR,
        why=(
            "A metric nobody exports returns an empty result, not an error: the panel stays blank and the "
            "alert never fires. Renames are common (vLLM's gpu_cache_usage_perc became kv_cache_usage_perc; "
            "counters gain _total). The catalogue lists each exporter's metrics per version, with sources."
        ),
        remediation="Use the name the exporter exports (tools/validate/data/exporters/), or record the "
        "metric in a recording rule of the same overlay.",
        scope=("PrometheusRule", "ConfigMap"),
        check=check_metric_exported,
        options=_DASHBOARD_OPTIONS,
        example="expr: avg(vllm:gpu_cache_usage_perc) > 0.9",
        use_instead="expr: avg(vllm:kv_cache_usage_perc) > 0.9",
    ),
    Rule(
        id="observability/label-exported",
        family="observability",
        title="Label matchers and groupings name labels the metric carries",
        severity=Severity.ERROR,
        why=(
            "A matcher on a label the series does not carry selects nothing (or everything, for `!=`), and "
            "a grouping by it collapses every series into one: the query looks right and answers wrong. "
            "Labels are the exporter's plus those Prometheus adds to every target (job, instance, namespace, "
            "pod, ...)."
        ),
        remediation="Match and group on a label the exporter sets (the message lists them).",
        scope=("PrometheusRule", "ConfigMap"),
        check=check_label_exported,
        options=_DASHBOARD_OPTIONS,
        example='expr: sum by (model) (vllm:num_requests_waiting{model="mistral-7b-instruct"})',
        use_instead='expr: sum by (model_name) (vllm:num_requests_waiting{model_name="mistral-7b-instruct"})',
    ),
    Rule(
        id="observability/dashboard-valid",
        family="observability",
        title="Dashboards are valid JSON bound to a Prometheus datasource variable",
        severity=Severity.ERROR,
        why=(
            "Grafana's sidecar skips a ConfigMap whose JSON does not parse, without a word in the UI; a "
            "panel bound to one Grafana's datasource uid shows 'datasource not found' everywhere else."
        ),
        remediation="Fix the JSON; add a templating variable of type datasource (query prometheus) and set "
        "every panel's and target's datasource uid to ${datasource}.",
        scope=("ConfigMap",),
        check=check_dashboard_valid,
        options=_DASHBOARD_OPTIONS,
        example='"datasource": {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}',
        use_instead='"datasource": {"type": "prometheus", "uid": "${datasource}"}',
    ),
    Rule(
        id="observability/alert-severity-and-runbook",
        family="observability",
        title="Every alert has a severity label and a runbook_url annotation",
        severity=Severity.ERROR,
        why=(
            "Alertmanager routes on `severity` (page or ticket); an alert without it goes to the default "
            "receiver. Whoever it reaches needs the runbook, or the first minutes go to finding it."
        ),
        remediation="Add labels.severity (critical, warning or info) and annotations.runbook_url pointing "
        "at a section of docs/runbooks.md.",
        scope=("PrometheusRule",),
        check=check_alert_severity_and_runbook,
        options={"severities": ["critical", "warning", "info"]},
        example="- alert: VllmQueueBacklog\n  expr: llm:vllm_requests_waiting:sum > 20",
        use_instead=(
            "- alert: VllmQueueBacklog\n  expr: llm:vllm_requests_waiting:sum > 20\n  labels:\n"
            "    severity: warning\n  annotations:\n    runbook_url: https://.../docs/runbooks.md#vllm-queue-backlog"
        ),
    ),
]
