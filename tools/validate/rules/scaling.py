"""scaling rules: KEDA ScaledObjects against the vLLM Deployment and the NodePools that carry it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from tools.validate.catalogue import SERIES_SUFFIXES
from tools.validate.gpu import gpu_pool_matches, matched_pools
from tools.validate.keda import (
    QueryError,
    formula_names,
    hpas_of,
    measures,
    scaled_objects_of,
    target_of,
    trigger_query,
    trigger_target,
    triggers,
)
from tools.validate.model import Context, FieldPath, Rule, Severity, Violation, as_int
from tools.validate.telemetry import exported_name, otel_renames
from tools.validate.workloads import (
    GPU_RESOURCE,
    any_selecting,
    pod_template,
    pod_templates,
    vllm_commands_of,
    vllm_workloads,
)

KEDA_DEFAULT_MAX_REPLICAS = 100
KEDA_DEFAULT_POLLING_SECONDS = 30
SCALING_MODIFIERS = ("spec", "advanced", "scalingModifiers")
BEHAVIOR = ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior")


def _path(*parts: str) -> FieldPath:
    return parts


def _nearest(resource: Any, *parts: str) -> FieldPath:
    """`parts` as a path when it exists in the resource, else its nearest existing parent ("" for the "
    "root)."""
    for end in range(len(parts), 0, -1):
        if resource.get(*parts[:end]) is not None:
            return _path(*parts[:end])
    return ()


def _scaled_workloads(ctx: Context) -> Iterator[tuple[Any, Any, Any]]:
    """(ScaledObject, target resource, its pod template) for every ScaledObject whose target is rendered."""
    for so in ctx.of_kind("ScaledObject"):
        target = target_of(ctx, so)
        template = pod_template(target) if target is not None else None
        if template is not None:
            yield so, target, template


# ------------------------------------------------------------------------------------------------


def check_max_replicas_fit(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so, target, template in _scaled_workloads(ctx):
        matches = gpu_pool_matches(ctx, template)
        if not matches:
            continue
        max_replicas = as_int(so.get("spec", "maxReplicaCount"), KEDA_DEFAULT_MAX_REPLICAS)
        path = "spec.maxReplicaCount" if so.get("spec", "maxReplicaCount") is not None else "spec"
        per_pod = {GPU_RESOURCE: Decimal(template.gpus_per_pod())}
        per_pod["cpu"] = template.requests("cpu")
        per_pod["memory"] = template.requests("memory")
        for resource_name, amount in per_pod.items():
            # The pools of one class have the same limits: each class adds its limit once per pool.
            limits = [(match.pool_class.limit(resource_name), len(match.members)) for match in matches]
            if amount <= 0 or any(limit is None for limit, _ in limits):
                continue  # some pool has no limit on it: unbounded
            capacity = sum((limit * count for limit, count in limits if limit is not None), Decimal(0))
            needed = amount * max_replicas
            if needed > capacity:
                names = ", ".join(p.name for p in matched_pools(matches))
                yield Violation(
                    so,
                    path,
                    f"maxReplicaCount {max_replicas} x {_fmt(amount, resource_name)} {resource_name} per pod "
                    f"of {target.kind}/{target.name} = {_fmt(needed, resource_name)}, more than the "
                    f"{_fmt(capacity, resource_name)} the NodePool limits allow ({names}): the last replicas "
                    "stay Pending",
                )


def _fmt(value: Decimal, resource_name: str) -> str:
    if resource_name == "memory":
        return f"{value / (1024**3):.1f}Gi"
    return f"{value.normalize():f}"


def check_running_target(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so, target, _template in _scaled_workloads(ctx):
        seqs = [c.int_value("--max-num-seqs") for c in vllm_commands_of(ctx, target)]
        max_num_seqs = min((s for s in seqs if s is not None), default=None)
        if not seqs:
            continue
        if max_num_seqs is None:
            max_num_seqs = int(options["vllm_default_max_num_seqs"])
        running_triggers = []
        for i, trigger in triggers(so):
            if not measures(trigger, "num_requests_running"):
                continue
            running_triggers.append(str(trigger.get("name") or ""))
            metric_type = trigger.get("metricType") or "AverageValue"
            found = trigger_target(trigger)
            if found is None or metric_type != "AverageValue":
                continue
            field, value = found
            if value >= max_num_seqs:
                yield Violation(
                    so,
                    ("spec", "triggers", i, "metadata", field),
                    f"per-pod target {value:g} of the running-requests trigger is not below vLLM's "
                    f"--max-num-seqs {max_num_seqs} ({target.kind}/{target.name}): pods saturate and "
                    "requests "
                    "queue before KEDA adds a replica",
                )
        formula = so.get(*SCALING_MODIFIERS, "formula")
        modifier_target = so.get(*SCALING_MODIFIERS, "target")
        if not formula or modifier_target is None:
            continue
        try:
            names = formula_names(str(formula))
        except QueryError:
            continue
        metric_type = so.get(*SCALING_MODIFIERS, "metricType") or "AverageValue"
        if metric_type != "AverageValue" or not set(names) & {n for n in running_triggers if n}:
            continue
        try:
            value = float(modifier_target)
        except (TypeError, ValueError):
            continue
        if value >= max_num_seqs:
            yield Violation(
                so,
                ("spec", "advanced", "scalingModifiers", "target"),
                f"formula target {value:g} (in running requests per pod) is not below vLLM's --max-num-seqs "
                f"{max_num_seqs} ({target.kind}/{target.name})",
            )


def check_formula(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so in ctx.of_kind("ScaledObject"):
        modifiers = so.get(*SCALING_MODIFIERS)
        if not isinstance(modifiers, dict):
            continue
        base = _path(*SCALING_MODIFIERS)
        for required in ("formula", "target"):
            if modifiers.get(required) in (None, ""):
                yield Violation(so, base, f"scalingModifiers needs `{required}`")
        formula = modifiers.get("formula")
        if not formula:
            continue
        try:
            names = formula_names(str(formula))
        except QueryError as exc:
            yield Violation(so, (*base, "formula"), str(exc))
            continue
        named = {str(t.get("name")) for _, t in triggers(so) if t.get("name")}
        for name in names:
            if name not in named:
                yield Violation(
                    so,
                    (*base, "formula"),
                    f"formula uses `{name}`, which is not the name of any trigger "
                    f"(named triggers: {', '.join(sorted(named)) or 'none'})",
                )


def check_trigger_metrics(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    renames = otel_renames(ctx)
    known = [*catalogue.metrics_current, *catalogue.metrics_deprecated, *catalogue.metrics_removed]
    # What the OTel collector delivers (to kedify-otel / the otel add-on): vLLM's names after its renames.
    via_collector = {exported_name(m, renames): m for m in known}
    # Prometheus scrapes vLLM itself; a collector exporting to it adds the renamed series.
    via_prometheus = {**via_collector, **{m: m for m in known}}
    for so in ctx.of_kind("ScaledObject"):
        for i, trigger in triggers(so):
            try:
                query = trigger_query(trigger)
            except QueryError as exc:
                field = "query" if trigger.get("type") == "prometheus" else "metricQuery"
                yield Violation(so, ("spec", "triggers", i, "metadata", field), str(exc))
                continue
            if query is None:
                continue
            path = ("spec", "triggers", i, "metadata", query.field)
            exported_from = via_prometheus if trigger.get("type") == "prometheus" else via_collector
            for metric in query.metrics:
                if metric.startswith("gateway_"):
                    if not _gateway_exports(catalogue, metric):
                        yield Violation(so, path, f"`{metric}` is not a metric the gateway exports "
                                        "(gateway/metrics.py)")
                    continue
                if not (metric.startswith("vllm:") or metric.startswith("vllm_")):
                    continue
                status = _metric_status(catalogue, metric, exported_from)
                if status is None:
                    hint = (
                        " (the `vllm_` form exists only where an OpenTelemetryCollector transform renames "
                        "`vllm:` to `vllm_`, and none in this overlay does)"
                        if metric.startswith("vllm_") and not renames
                        else ""
                    )
                    yield Violation(so, path, f"`{metric}` is not a metric vLLM exports{hint}")
                elif status.state in ("deprecated", "removed"):
                    instead = f"; use {status.replacement}" if status.replacement else ""
                    yield Violation(
                        so,
                        path,
                        f"`{metric}` ({status.name}) was {status.state} in vLLM {status.since}{instead}",
                    )


def _gateway_exports(catalogue: Any, metric: str) -> bool:
    names = catalogue.gateway_metrics
    return metric in names or any(
        metric.endswith(suffix) and metric[: -len(suffix)] in names for suffix in SERIES_SUFFIXES
    )


def _metric_status(catalogue: Any, metric: str, exported_from: Mapping[str, str]) -> Any:
    for suffix in ("", *SERIES_SUFFIXES):
        base = metric[: -len(suffix)] if suffix and metric.endswith(suffix) else metric
        if suffix and not metric.endswith(suffix):
            continue
        if base in exported_from:
            return catalogue.metric_status(exported_from[base])
    return None


def check_min_warm_replicas(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    wanted = int(options["min_warm_replicas"])
    vllm_targets = {(t.resource.kind, t.resource.namespace, t.resource.name) for t, _ in vllm_workloads(ctx)}
    for so, target, _template in _scaled_workloads(ctx):
        if (target.kind, target.namespace, target.name) not in vllm_targets:
            continue
        current = as_int(so.get("spec", "minReplicaCount"), 0)
        if current < wanted:
            yield Violation(
                so,
                _nearest(so, "spec", "minReplicaCount"),
                f"minReplicaCount {current} is below {wanted} for this environment: the first request "
                "after idle waits a full GPU cold start (node launch + image pull + model load)",
            )


def check_startup_probe(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    cold_start = int(options["cold_start_seconds"])
    for template, command in vllm_workloads(ctx):
        container = template.spec["containers"][command.container_index]
        base = (*command.container_path, "startupProbe")
        probe = container.get("startupProbe")
        if not isinstance(probe, dict):
            yield Violation(
                template.resource,
                command.container_path,
                f"the vLLM container has no startupProbe: liveness checks start before the model is "
                f"loaded (~{cold_start} s) and kill it in a restart loop",
            )
            continue
        delay = as_int(probe.get("initialDelaySeconds"), 0)
        period = as_int(probe.get("periodSeconds"), 10)
        failures = as_int(probe.get("failureThreshold"), 3)
        allowed = delay + period * failures
        if allowed < cold_start:
            field = "failureThreshold" if "failureThreshold" in probe else ""
            yield Violation(
                template.resource,
                (*base, field) if field else base,
                f"startupProbe allows {allowed} s (initialDelaySeconds {delay} + failureThreshold {failures} "
                "x "
                f"periodSeconds {period}), less than the {cold_start} s cold start",
            )


def check_scale_down_stabilization(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    cold_start = int(options["cold_start_seconds"])
    for so in ctx.of_kind("ScaledObject"):
        window = as_int(so.get(*BEHAVIOR, "scaleDown", "stabilizationWindowSeconds"))
        if window is not None and window <= cold_start:
            yield Violation(
                so,
                _path(*BEHAVIOR, "scaleDown", "stabilizationWindowSeconds"),
                f"scale-down stabilization {window} s is not longer than the {cold_start} s cold start: a "
                "short lull removes a replica that takes a full cold start to bring back",
            )


def check_scale_up_policy(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    max_window = int(options["max_scale_up_stabilization_seconds"])
    for so in ctx.of_kind("ScaledObject"):
        scale_up = so.get(*BEHAVIOR, "scaleUp")
        if not isinstance(scale_up, dict) or not scale_up.get("policies"):
            yield Violation(
                so,
                _nearest(so, *BEHAVIOR, "scaleUp"),
                "no scale-up policy: the HPA default (double or +4 pods per 15 s) is slower than a queue "
                "burst",
            )
            continue
        window = as_int(scale_up.get("stabilizationWindowSeconds"))
        if window is not None and window > max_window:
            yield Violation(
                so,
                _path(*BEHAVIOR, "scaleUp", "stabilizationWindowSeconds"),
                f"scale-up stabilization window {window} s delays every scale-up (at most {max_window} s)",
            )


def check_fallback(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so in ctx.of_kind("ScaledObject"):
        fallback = so.get("spec", "fallback")
        if not isinstance(fallback, dict):
            yield Violation(
                so,
                ("spec",),
                "no fallback: when the metrics source fails, KEDA keeps the current replica count blindly",
            )
            continue
        replicas = as_int(fallback.get("replicas"))
        if replicas is None or replicas < 1:
            yield Violation(
                so, _nearest(so, "spec", "fallback", "replicas"), "fallback.replicas must be >= 1"
            )


def check_single_autoscaler(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        workload = template.resource
        scalers = scaled_objects_of(ctx, workload)
        for extra in scalers[1:]:
            yield Violation(
                extra,
                ("spec", "scaleTargetRef"),
                f"{workload.kind}/{workload.name} is already scaled by ScaledObject/{scalers[0].name}: two "
                "HPAs fight over its replicas",
            )
        if not scalers:
            continue
        for hpa in hpas_of(ctx, workload):
            yield Violation(
                hpa,
                ("spec", "scaleTargetRef"),
                f"{workload.kind}/{workload.name} is scaled by ScaledObject/{scalers[0].name}, whose HPA "
                "this one fights",
            )


# ------------------------------------------------------------------------------------------------


def check_polling_interval(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    limit = int(options["max_polling_interval_seconds"])
    for so in ctx.of_kind("ScaledObject"):
        interval = so.get("spec", "pollingInterval")
        effective = as_int(interval, KEDA_DEFAULT_POLLING_SECONDS)
        if effective > limit:
            yield Violation(
                so,
                ("spec", "pollingInterval") if interval is not None else ("spec",),
                f"KEDA polls every {effective} s{' (the default)' if interval is None else ''}: a queue "
                f"burst waits that long before any scaling (at most {limit} s)",
            )


def check_pdb_for_scaled(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so, target, template in _scaled_workloads(ctx):
        if any_selecting(ctx, "PodDisruptionBudget", template):
            continue
        labels = (*template.metadata_path, "labels")
        yield Violation(
            target,
            labels if target.get(*labels) is not None else (),
            f"no PodDisruptionBudget selects the pods ScaledObject/{so.name} scales: a node drain may evict "
            "every replica at once",
        )


# Trigger types that read the scaled pods themselves (KEDA refuses them alone with minReplicaCount 0).
POD_RESOURCE_TRIGGERS = ("cpu", "memory")


def _needs_model_pods(trigger: Mapping[str, Any]) -> bool:
    """Whether a trigger's metric exists only while model pods run: resource triggers, and queries that
    read vLLM metrics alone (vLLM exports them; at zero replicas there is no series at all)."""
    if str(trigger.get("type")) in POD_RESOURCE_TRIGGERS:
        return True
    try:
        query = trigger_query(trigger)
    except QueryError:
        return False  # reported by scaling/trigger-metric-exported
    if query is None or not query.metrics:
        return False
    return all(m.startswith(("vllm:", "vllm_")) for m in query.metrics)


def check_wake_from_zero(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for so in ctx.of_kind("ScaledObject"):
        if as_int(so.get("spec", "minReplicaCount"), 0) != 0:
            continue
        found = list(triggers(so))
        formula = so.get(*SCALING_MODIFIERS, "formula")
        if formula:
            try:
                used = set(formula_names(str(formula)))
            except QueryError:
                continue  # reported by scaling/formula-valid
            found = [(i, t) for i, t in found if str(t.get("name")) in used]
        if not found or any(not _needs_model_pods(t) for _, t in found):
            continue
        names = ", ".join(str(t.get("name") or t.get("type")) for _, t in found)
        yield Violation(
            so,
            _nearest(so, "spec", "minReplicaCount"),
            f"minReplicaCount is 0 but every trigger that drives the scale ({names}) reads metrics only the "
            "model pods export: at zero replicas those series do not exist, so nothing ever wakes the "
            "Deployment again",
        )


RULES: list[Rule] = [
    Rule(
        id="scaling/max-replicas-fit-nodepool-limits",
        family="scaling",
        title="KEDA maxReplicaCount fits the limits of the NodePools that carry the pods",
        severity=Severity.ERROR,
        why=(
            "Karpenter stops launching nodes once a NodePool's spec.limits are reached. When maxReplicaCount "
            "x the GPUs (or CPU, memory) each pod requests exceeds the limits of every NodePool the pod can "
            "land on, KEDA asks for replicas that stay Pending exactly when load peaks."
        ),
        remediation="Lower maxReplicaCount, or raise NodePool limits to maxReplicaCount x per-pod requests.",
        scope=("ScaledObject", "Deployment", "NodePool"),
        check=check_max_replicas_fit,
        example=(
            "kind: ScaledObject\nspec:\n  maxReplicaCount: 10  # 10 x 1 GPU\n---\nkind: NodePool\nspec:\n  "
            "limits:\n    nvidia.com/gpu: 4"
        ),
        use_instead="kind: ScaledObject\nspec:\n  maxReplicaCount: 4",
    ),
    Rule(
        id="scaling/running-target-below-max-num-seqs",
        family="scaling",
        title="The per-pod running-requests target is below vLLM's --max-num-seqs",
        severity=Severity.ERROR,
        why=(
            "vLLM runs at most --max-num-seqs requests per pod; the rest wait in its queue. A target of "
            "running requests per pod at or above that cap is never exceeded, so KEDA scales only after the "
            "queue grows."
        ),
        remediation="Set the trigger threshold (and the formula target) below --max-num-seqs: 25 for 32.",
        scope=("ScaledObject", "Deployment"),
        check=check_running_target,
        options={"vllm_default_max_num_seqs": 256},
        example=(
            "triggers:\n- name: running\n  type: prometheus\n  metadata:\n    query: "
            "sum(vllm:num_requests_running)\n    threshold: '32'  # --max-num-seqs 32"
        ),
        use_instead="    threshold: '25'",
    ),
    Rule(
        id="scaling/formula-valid",
        family="scaling",
        title="scalingModifiers.formula parses and uses only named triggers",
        severity=Severity.ERROR,
        why=(
            "KEDA evaluates the formula with expr-lang over trigger names; a typo or an unnamed trigger "
            "makes the ScaledObject fail and scaling stops. The gate parses the subset of expr-lang made of "
            "trigger names, numbers, + - * / % **, comparisons and parentheses (with Python's ast); other "
            "syntax is reported as outside that subset."
        ),
        remediation="Name every trigger and use exactly those names in the formula; set `target` too.",
        scope=("ScaledObject",),
        check=check_formula,
        example=(
            "advanced:\n  scalingModifiers:\n    formula: running + (waitng * 10)\n    target: "
            "'25'\ntriggers:\n- name: running\n- name: waiting"
        ),
        use_instead="    formula: running + (waiting * 10)",
    ),
    Rule(
        id="scaling/trigger-metric-exported",
        family="scaling",
        title="Trigger queries read metrics vLLM (or the gateway) exports, in the form the pipeline delivers",
        severity=Severity.ERROR,
        why=(
            "vLLM exports `vllm:`-prefixed metrics; the `vllm_` form exists only after an OpenTelemetry "
            "collector transform renames it. A query on a metric that does not exist (or was removed, like "
            "vllm:gpu_cache_usage_perc) returns nothing and KEDA never scales. The gateway's own metrics "
            "(`gateway_`, gateway/metrics.py) are the other source: the only one at zero vLLM replicas."
        ),
        remediation="Query a current vLLM or gateway metric, in the name the collector (or Prometheus) "
        "actually stores.",
        scope=("ScaledObject", "OpenTelemetryCollector"),
        check=check_trigger_metrics,
        example="metadata:\n  query: sum(vllm:gpu_cache_usage_perc)",
        use_instead="metadata:\n  query: sum(vllm:kv_cache_usage_perc)",
    ),
    Rule(
        id="scaling/min-warm-replicas",
        family="scaling",
        title="The vLLM ScaledObject keeps the environment's minimum of warm replicas",
        severity=Severity.ERROR,
        why=(
            "A GPU replica takes about two minutes from zero (node launch, image pull, model load). "
            "Production keeps warm replicas so the first request after idle is not a cold start; dev may "
            "scale to zero."
        ),
        remediation="Set minReplicaCount to at least the environment's min_warm_replicas.",
        scope=("ScaledObject",),
        check=check_min_warm_replicas,
        options={"min_warm_replicas": 0},
        example="spec:\n  minReplicaCount: 0  # prod",
        use_instead="spec:\n  minReplicaCount: 1",
    ),
    Rule(
        id="scaling/startup-probe-covers-cold-start",
        family="scaling",
        title="The vLLM startup probe allows the model's cold start",
        severity=Severity.ERROR,
        why=(
            "Loading the model takes ~90-120 s. If initialDelaySeconds + failureThreshold x periodSeconds is "
            "shorter, the kubelet kills the container before it serves, in a restart loop."
        ),
        remediation="Add a startupProbe on /health with failureThreshold x periodSeconds >= the cold start.",
        scope=("Deployment",),
        check=check_startup_probe,
        options={"cold_start_seconds": 120},
        example=(
            "startupProbe:\n  httpGet: {path: /health, port: 8000}\n  periodSeconds: 10\n  failureThreshold: "
            "6"
        ),
        use_instead=(
            "startupProbe:\n  httpGet: {path: /health, port: 8000}\n  periodSeconds: 10\n  failureThreshold: "
            "30"
        ),
    ),
    Rule(
        id="scaling/scale-down-slower-than-cold-start",
        family="scaling",
        title="Scale-down stabilization exceeds the cold start",
        severity=Severity.WARNING,
        why=(
            "Removing a replica during a short lull costs a full cold start (~2 min) to get it back; the "
            "scale-down stabilization window should be longer than that."
        ),
        remediation="Set behavior.scaleDown.stabilizationWindowSeconds above cold_start_seconds (e.g. 300).",
        scope=("ScaledObject",),
        check=check_scale_down_stabilization,
        options={"cold_start_seconds": 120},
        example="behavior:\n  scaleDown:\n    stabilizationWindowSeconds: 60",
        use_instead="behavior:\n  scaleDown:\n    stabilizationWindowSeconds: 300",
    ),
    Rule(
        id="scaling/scale-up-policy",
        family="scaling",
        title="Scale-up has an explicit fast policy and no stabilization delay",
        severity=Severity.WARNING,
        why=(
            "A queue burst needs replicas at once; each added replica already waits a cold start. The HPA "
            "default policy only doubles per 15 s, and a scale-up stabilization window delays every step."
        ),
        remediation="Set behavior.scaleUp.stabilizationWindowSeconds: 0 and a Percent policy (900 % / 15 s).",
        scope=("ScaledObject",),
        check=check_scale_up_policy,
        options={"max_scale_up_stabilization_seconds": 0},
        example="behavior:\n  scaleUp:\n    stabilizationWindowSeconds: 120",
        use_instead=(
            "behavior:\n  scaleUp:\n    stabilizationWindowSeconds: 0\n    policies:\n    - "
            "{type: Percent, value: 900, periodSeconds: 15}"
        ),
    ),
    Rule(
        id="scaling/fallback-configured",
        family="scaling",
        title="ScaledObjects declare a fallback replica count",
        severity=Severity.WARNING,
        why=(
            "When the metrics source is down, a ScaledObject without `fallback` keeps whatever replica count "
            "it had; with fallback it holds a known safe capacity."
        ),
        remediation="Add spec.fallback {failureThreshold: 3, replicas: N}.",
        scope=("ScaledObject",),
        check=check_fallback,
        example="spec:\n  maxReplicaCount: 4\n  triggers: [...]",
        use_instead="spec:\n  fallback:\n    failureThreshold: 3\n    replicas: 2",
    ),
    Rule(
        id="scaling/single-autoscaler",
        family="scaling",
        title="A workload is scaled by exactly one autoscaler",
        severity=Severity.ERROR,
        why=(
            "Each ScaledObject creates an HPA; two HPAs (or a ScaledObject and a plain HPA) on one "
            "Deployment overwrite each other's replica count every sync period."
        ),
        remediation="Keep one ScaledObject per workload and remove other HPAs targeting it.",
        scope=("ScaledObject", "HorizontalPodAutoscaler", "Deployment"),
        check=check_single_autoscaler,
        example="kind: HorizontalPodAutoscaler\nspec:\n  scaleTargetRef: {kind: Deployment, name: vllm}",
        use_instead="# scale vllm only through its ScaledObject",
    ),
    Rule(
        id="scaling/polling-interval",
        family="scaling",
        title="KEDA polls the queue often enough",
        severity=Severity.WARNING,
        why="KEDA reads the triggers every pollingInterval (default 30 s); a burst is invisible until the "
        "next poll, on top of a two-minute cold start.",
        remediation="Set spec.pollingInterval to a few seconds (e.g. 5).",
        scope=("ScaledObject",),
        check=check_polling_interval,
        options={"max_polling_interval_seconds": 15},
        example="spec:\n  pollingInterval: 60",
        use_instead="spec:\n  pollingInterval: 5",
    ),
    Rule(
        id="scaling/pdb-for-scaled-workload",
        family="scaling",
        title="KEDA-scaled workloads have a PodDisruptionBudget",
        severity=Severity.WARNING,
        why="Without a PDB a node drain or consolidation may evict every replica at once; each takes a cold "
        "start to return.",
        remediation="Add a PodDisruptionBudget selecting the pods, with maxUnavailable: 1.",
        scope=("ScaledObject", "Deployment", "PodDisruptionBudget"),
        check=check_pdb_for_scaled,
        example="# ScaledObject vllm scales Deployment vllm; no PDB selects app: vllm",
        use_instead=(
            "kind: PodDisruptionBudget\nspec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: vllm}}"
        ),
    ),
    Rule(
        id="scaling/wake-from-zero",
        family="scaling",
        title="A ScaledObject that may reach zero replicas has a trigger whose metric exists at zero",
        severity=Severity.ERROR,
        why=(
            "vLLM's queue metrics come from the vLLM pods. At zero replicas there is no series at all, so a "
            "formula of running and waiting requests stays at 0 for ever: KEDA never activates and every "
            "request fails. Something outside the model pods (the gateway's unserved or held requests) "
            "must be in the formula."
        ),
        remediation=(
            "Add a trigger on a metric the gateway exports (requests it could not serve or holds) and use it "
            "in the formula, or keep minReplicaCount at 1 or more."
        ),
        scope=("ScaledObject",),
        check=check_wake_from_zero,
        example="minReplicaCount: 0\nadvanced:\n  scalingModifiers:\n    formula: running + (waiting * 10)",
        use_instead="    formula: running + (waiting * 10) + (unserved * 25)  # unserved: a gateway metric",
    ),
]
