"""spot rules: surviving Spot interruptions and voluntary disruption of GPU nodes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate.gpu import gpu_pool_matches, is_gpu_nodepool, matched_pools
from tools.validate.karpenter import CAPACITY_TYPE, requirement_index
from tools.validate.model import Context, Rule, Severity, Violation, as_int, mapping, sequence
from tools.validate.workloads import (
    PodTemplate,
    any_selecting,
    pod_templates,
    tolerates,
    vllm_commands_of,
    vllm_workloads,
)

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
POOL_SPEC = ("spec", "template", "spec")
K8S_DEFAULT_GRACE_SECONDS = 30


def check_on_demand_fallback(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    if not options["require_on_demand_fallback"]:
        return
    for template, _command in vllm_workloads(ctx):
        matches = gpu_pool_matches(ctx, template)
        capacity = [match.pool_class.requirements.get(CAPACITY_TYPE) for match in matches]
        if not matches or any(constraint is None for constraint in capacity):
            continue  # no capacity-type requirement: Karpenter launches on-demand
        if any(constraint is not None and constraint.admits("on-demand") for constraint in capacity):
            continue
        pools = matched_pools(matches)
        first = pools[0]
        index = requirement_index(first, CAPACITY_TYPE)
        yield Violation(
            first,
            ("spec", "template", "spec", "requirements", index),
            f"no NodePool {template.resource.kind}/{template.resource.name} can land on admits on-demand "
            f"capacity ({', '.join(p.name for p in pools)}): when Spot GPUs run out, replicas stay Pending",
        )


def _prestop_seconds(container: Mapping[str, Any]) -> int:
    pre_stop = mapping(mapping(container.get("lifecycle")).get("preStop"))
    if isinstance(pre_stop.get("sleep"), dict):
        return as_int(pre_stop["sleep"].get("seconds"), 0) or 0
    command = (mapping(pre_stop.get("exec"))).get("command") or []
    for i, token in enumerate(command):
        words = str(token).split()
        for j, word in enumerate(words):
            if word == "sleep":
                following = (
                    words[j + 1] if j + 1 < len(words) else (command[i + 1] if i + 1 < len(command) else "")
                )
                return as_int(following, 0) or 0
    return 0


def check_grace_period(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    notice = int(options["spot_notice_seconds"])
    for template in pod_templates(ctx):
        commands = {c.container_index: c for c in vllm_commands_of(ctx, template.resource)}
        drain = 0
        for index, container in template.containers():
            seconds = _prestop_seconds(container)
            command = commands.get(index)
            if command is not None:
                seconds += command.int_value("--shutdown-timeout") or 0
            drain = max(drain, seconds)
        if not commands and drain == 0:
            continue
        grace = template.spec.get("terminationGracePeriodSeconds")
        path = template.at("terminationGracePeriodSeconds") if grace is not None else template.at()
        grace = as_int(grace, K8S_DEFAULT_GRACE_SECONDS) or 0
        for command in commands.values():
            if command.value("--shutdown-timeout") is None:
                container = template.spec["containers"][command.container_index]
                yield Violation(
                    template.resource,
                    (*command.container_path, "args") if container.get("args") else command.container_path,
                    "vLLM has no --shutdown-timeout: on SIGTERM it aborts in-flight requests at once",
                )
        if grace < drain:
            yield Violation(
                template.resource,
                path,
                f"terminationGracePeriodSeconds {grace} is shorter than preStop + --shutdown-timeout = "
                f"{drain} s: "
                "the kubelet kills vLLM mid-drain",
            )
        elif grace >= notice and template.gpus_per_pod() > 0:
            yield Violation(
                template.resource,
                path,
                f"terminationGracePeriodSeconds {grace} is not below the {notice} s Spot interruption "
                "notice: "
                "the node is reclaimed before the drain ends",
            )


def _vllm_gpu_templates(ctx: Context) -> Iterator[PodTemplate]:
    seen = set()
    for template, _ in vllm_workloads(ctx):
        key = (template.resource.kind, template.resource.namespace, template.resource.name)
        if template.gpus_per_pod() > 0 and key not in seen:
            seen.add(key)
            yield template


def check_do_not_disrupt(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in _vllm_gpu_templates(ctx):
        if str(template.annotations.get(DO_NOT_DISRUPT, "")).lower() != "true":
            meta = template.metadata_path
            has_annotations = template.resource.get(*meta, "annotations") is not None
            path = (*meta, "annotations") if has_annotations else meta
            yield Violation(
                template.resource,
                path,
                f"pod template lacks {DO_NOT_DISRUPT}: 'true': consolidation and drift evict a serving GPU "
                "pod, which then takes a cold start to come back",
            )


def check_consolidation_policy(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    allowed = ("WhenEmpty", "WhenEmptyOrUnderutilized")
    for pool in ctx.of_kind("NodePool"):
        policy = pool.get("spec", "disruption", "consolidationPolicy")
        if policy is not None and policy not in allowed:
            hint = (
                " (the v1beta1 name; v1 calls it WhenEmptyOrUnderutilized)"
                if policy == "WhenUnderutilized"
                else ""
            )
            yield Violation(
                pool,
                ("spec", "disruption", "consolidationPolicy"),
                f"consolidationPolicy {policy!r} is not a Karpenter v1 policy{hint}",
            )


def check_disruption_budgets(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for pool in ctx.of_kind("NodePool"):
        if not is_gpu_nodepool(pool, ctx.catalogue):
            continue
        if not pool.get("spec", "disruption", "budgets"):
            path = "spec.disruption" if pool.get("spec", "disruption") is not None else "spec"
            yield Violation(
                pool,
                path,
                "GPU NodePool has no disruption budgets: by default Karpenter may disrupt 10 % of its nodes "
                "at once, at any hour",
            )


def check_pdb_allows_drain(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for pdb in ctx.of_kind("PodDisruptionBudget"):
        max_unavailable = pdb.get("spec", "maxUnavailable")
        min_available = pdb.get("spec", "minAvailable")
        if max_unavailable is not None and str(max_unavailable).strip() in ("0", "0%"):
            yield Violation(
                pdb,
                ("spec", "maxUnavailable"),
                "maxUnavailable 0 blocks every voluntary eviction: Karpenter can never drain or consolidate "
                "these nodes, and expiry waits forever",
            )
        elif min_available is not None and str(min_available).strip() == "100%":
            yield Violation(pdb, ("spec", "minAvailable"),
                            "minAvailable 100% blocks every voluntary eviction")


def check_expire_after(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for pool in ctx.of_kind("NodePool"):
        if not is_gpu_nodepool(pool, ctx.catalogue):
            continue
        value = pool.get("spec", "template", "spec", "expireAfter")
        if value is None:
            has_spec = pool.get("spec", "template", "spec") is not None
            yield Violation(
                pool,
                ("spec", "template", "spec") if has_spec else ("spec",),
                "expireAfter is not set: the node lifetime is left to Karpenter's default (720h) instead of "
                "a reviewed value",
            )
        elif str(value) == "Never":
            yield Violation(
                pool,
                ("spec", "template", "spec", "expireAfter"),
                "expireAfter Never: GPU nodes are never replaced, so AMI and driver patches never reach them",
            )


def _blocks_eviction(ctx: Context, template: PodTemplate) -> str | None:
    """What keeps a drain from evicting these pods: the do-not-disrupt annotation or a PDB."""
    if str(template.annotations.get(DO_NOT_DISRUPT, "")).lower() == "true":
        return f"the {DO_NOT_DISRUPT} annotation"
    if any_selecting(ctx, "PodDisruptionBudget", template):
        return "a PodDisruptionBudget"
    return None


def check_expiry_drain_bounded(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    reported: set[int] = set()
    for template in pod_templates(ctx):
        blocker = _blocks_eviction(ctx, template)
        if blocker is None:
            continue
        tolerations = sequence(template.spec.get("tolerations"))
        landing = [
            match for match in gpu_pool_matches(ctx, template)
            if all(tolerates(tolerations, taint) for taint in match.pool_class.taints
                   if taint.get("effect") in ("NoSchedule", "NoExecute"))
        ]
        for pool in matched_pools(landing):
            spec = mapping(pool.get("spec", "template", "spec"))
            if id(pool) in reported or str(spec.get("expireAfter", "720h")) == "Never":
                continue
            if spec.get("terminationGracePeriod") is not None:
                continue
            reported.add(id(pool))
            yield Violation(
                pool,
                (*POOL_SPEC, "expireAfter") if "expireAfter" in spec else POOL_SPEC,
                f"nodes expire (expireAfter {spec.get('expireAfter', '720h, the default')}) but the NodePool "
                f"sets no terminationGracePeriod, and {template.resource.kind}/{template.resource.name} is "
                f"protected from eviction by {blocker}: an expired node drains for ever, and drift never "
                "replaces a node running such a pod",
            )


RULES: list[Rule] = [
    Rule(
        id="spot/on-demand-fallback",
        family="spot",
        title="vLLM can fall back to on-demand GPU capacity",
        severity=Severity.ERROR,
        why=(
            "Spot GPU capacity runs out and is reclaimed with a 2-minute notice, as long as a cold start. "
            "Where availability matters (prod), a NodePool the vLLM pods can land on must admit on-demand."
        ),
        remediation="Add on-demand to karpenter.sh/capacity-type, or add a lower-weight on-demand NodePool.",
        scope=("NodePool", "Deployment"),
        check=check_on_demand_fallback,
        options={"require_on_demand_fallback": False},
        example="- key: karpenter.sh/capacity-type\n  operator: In\n  values: [spot]",
        use_instead="- key: karpenter.sh/capacity-type\n  operator: In\n  values: [spot, on-demand]",
    ),
    Rule(
        id="spot/termination-grace-covers-drain",
        family="spot",
        title=(
            "terminationGracePeriodSeconds covers preStop + vLLM's --shutdown-timeout, within the Spot notice"
        ),
        severity=Severity.ERROR,
        why=(
            "On SIGTERM vLLM stops admitting and waits --shutdown-timeout seconds for in-flight requests "
            "(default 0: it aborts them). The grace period must cover the preStop sleep plus that wait, and "
            "stay below the 120 s Spot notice or the node disappears mid-drain."
        ),
        remediation="Set --shutdown-timeout; terminationGracePeriodSeconds >= preStop + timeout, < 120.",
        scope=("Deployment",),
        check=check_grace_period,
        options={"spot_notice_seconds": 120},
        example="terminationGracePeriodSeconds: 30\n# preStop sleep 10, --shutdown-timeout 60",
        use_instead="terminationGracePeriodSeconds: 90",
    ),
    Rule(
        id="spot/do-not-disrupt-vllm",
        family="spot",
        title="vLLM pods carry karpenter.sh/do-not-disrupt",
        severity=Severity.WARNING,
        why=(
            "Consolidation, drift and expiry evict pods voluntarily; a serving vLLM pod then costs a cold "
            "start. The annotation blocks voluntary disruption (not Spot interruption)."
        ),
        remediation='Annotate the pod template with karpenter.sh/do-not-disrupt: "true".',
        scope=("Deployment",),
        check=check_do_not_disrupt,
        example="template:\n  metadata:\n    labels: {app: vllm}",
        use_instead='template:\n  metadata:\n    annotations:\n      karpenter.sh/do-not-disrupt: "true"',
    ),
    Rule(
        id="spot/consolidation-policy-v1",
        family="spot",
        title="NodePool consolidationPolicy uses a Karpenter v1 name",
        severity=Severity.ERROR,
        why=(
            "Karpenter v1 knows WhenEmpty and WhenEmptyOrUnderutilized; WhenUnderutilized is the v1beta1 "
            "name."
        ),
        remediation="Use WhenEmptyOrUnderutilized (or WhenEmpty for GPU pools).",
        scope=("NodePool",),
        check=check_consolidation_policy,
        example="disruption:\n  consolidationPolicy: WhenUnderutilized",
        use_instead="disruption:\n  consolidationPolicy: WhenEmpty",
    ),
    Rule(
        id="spot/disruption-budgets",
        family="spot",
        title="GPU NodePools set disruption budgets",
        severity=Severity.WARNING,
        why=(
            "Without budgets Karpenter may disrupt 10 % of a NodePool's nodes at once at any time; GPU "
            "capacity should be disrupted one node at a time, outside peak hours."
        ),
        remediation='Add spec.disruption.budgets (e.g. nodes: "1", and nodes: "0" during a schedule).',
        scope=("NodePool",),
        check=check_disruption_budgets,
        example="disruption:\n  consolidationPolicy: WhenEmpty",
        use_instead='disruption:\n  consolidationPolicy: WhenEmpty\n  budgets:\n  - nodes: "1"',
    ),
    Rule(
        id="spot/pdb-allows-drain",
        family="spot",
        title="PodDisruptionBudgets leave room for an eviction",
        severity=Severity.ERROR,
        why=(
            "A PDB with maxUnavailable 0 (or minAvailable 100%) blocks every drain: Karpenter cannot "
            "consolidate, expire or replace drifted nodes, and node upgrades hang."
        ),
        remediation="Use maxUnavailable: 1 (and keep warm replicas so one can go).",
        scope=("PodDisruptionBudget",),
        check=check_pdb_allows_drain,
        example="kind: PodDisruptionBudget\nspec:\n  maxUnavailable: 0",
        use_instead="kind: PodDisruptionBudget\nspec:\n  maxUnavailable: 1",
    ),
    Rule(
        id="spot/expire-after-set",
        family="spot",
        title="GPU NodePools set a finite expireAfter",
        severity=Severity.WARNING,
        why="Expiry rotates nodes onto patched AMIs and drivers; `Never` keeps GPU nodes unpatched, and an "
        "unset value hides the rotation period from review.",
        remediation="Set spec.template.spec.expireAfter (e.g. 720h) and keep budgets that pace the rotation.",
        scope=("NodePool",),
        check=check_expire_after,
        example="template:\n  spec:\n    expireAfter: Never",
        use_instead="template:\n  spec:\n    expireAfter: 720h",
    ),
    Rule(
        id="spot/expiry-drain-bounded",
        family="spot",
        title="NodePools whose nodes expire bound the drain with terminationGracePeriod",
        severity=Severity.ERROR,
        why=(
            "Karpenter v1's expireAfter is forceful, but the drain still waits for pods that block eviction "
            "(karpenter.sh/do-not-disrupt, PodDisruptionBudgets) until the NodePool's "
            "terminationGracePeriod. Without one, an expired node stays tainted and draining for ever, and "
            "drift never replaces a node that runs such a pod."
        ),
        remediation=(
            "Set spec.template.spec.terminationGracePeriod on the NodePool (long enough for a replacement "
            "replica to start, e.g. 30m)."
        ),
        scope=("NodePool",),
        check=check_expiry_drain_bounded,
        example="spec:\n  template:\n    spec:\n      expireAfter: 720h",
        use_instead=(
            "spec:\n  template:\n    spec:\n      expireAfter: 720h\n      terminationGracePeriod: 30m"
        ),
    ),
]
