"""Plain consequences of one environment's configuration, derived from the manifests and the hardware
profile, for the reviewer: what the autoscaling formula means in requests, how full a pod runs, how fast
a full batch decodes, what the KV cache holds, how Spot is handled and how long a new replica takes.

Each consequence has a key, so that the comment can show the head's sentence beside the base's when
the change alters it.
"""

from __future__ import annotations

import math

from tools.validate.catalogue import Catalogue
from tools.validate.simulate.coldstart import cold_start_parts
from tools.validate.simulate.engine import ServiceModel
from tools.validate.simulate.hardware import HardwareProfile
from tools.validate.simulate.keda import evaluate_formula
from tools.validate.simulate.kvcache import budget_for
from tools.validate.simulate.manifests import Cluster, admitted_instances, pools_for


def _coefficient(formula: str, names: list[str], name: str) -> float:
    zero = dict.fromkeys(names, 0.0)
    return evaluate_formula(formula, {**zero, name: 1.0}) - evaluate_formula(formula, zero)


def consequences(
    cluster: Cluster, hardware: HardwareProfile, catalogue: Catalogue, compile_cache_warm: bool
) -> dict[str, str]:
    dep = cluster.deployment
    slots = dep.max_num_seqs
    out: dict[str, str] = {}
    scaling = cluster.scaling
    if scaling is not None:
        names = [t.name for t in scaling.triggers]
        mods = scaling.modifiers
        if mods is not None and mods.metric_type == "AverageValue":
            signals = {t.name: t.signal for t in scaling.triggers}
            by_signal = {signals[n]: _coefficient(mods.formula, names, n) for n in names}
            waiting = by_signal.get("waiting", 0.0)
            running = by_signal.get("running", 0.0)
            if waiting > 0:
                at_max = scaling.max_replicas * mods.target / waiting
                out["formula-max"] = (
                    f"the formula reaches maxReplicaCount {scaling.max_replicas} at {at_max:g} waiting "
                    f"requests across the fleet (target {mods.target:g} per replica)"
                )
            if running > 0:
                per_pod = mods.target / running
                out["pod-fill"] = (
                    f"with no queue, a replica is added once the running requests pass {per_pod:g} per pod: "
                    f"at the target each pod runs about {min(per_pod, slots):.0f} of its {slots} slots"
                )
        else:
            for trigger in scaling.triggers:
                if trigger.signal == "running" and trigger.metric_type == "AverageValue":
                    out["pod-fill"] = (
                        f"trigger {trigger.name}: at the target each pod runs about "
                        f"{min(trigger.target, slots):.0f} of its {slots} slots"
                    )
        out["replicas"] = f"replicas {scaling.min_replicas} to {scaling.max_replicas}"
    pools = pools_for(dep, cluster.node_pools)
    instances = [(p, i) for p in pools for i in admitted_instances(p, dep, hardware)]
    if instances:
        pool, instance = instances[0]
        gpu = instance.gpu.name
        service = ServiceModel(hardware, gpu, float(slots))
        tokens = hardware.output_tokens_per_request
        full = float(service.service_seconds(float(slots)))
        per_token = (full - hardware.prefill_seconds) / tokens
        out["decode"] = (
            f"on {instance.name} ({gpu}) a full batch of {slots} decodes at {per_token * 1000:.1f} ms per "
            f"token: a {tokens:.0f}-token answer takes {full:.1f} s, {slots / full:.1f} answers/s per pod"
        )
        fig = hardware.figures
        kv = budget_for(
            catalogue, dep.flags, gpu, dep.gpus_per_pod, fig.get("serving.prompt_tokens_per_request", 0.0),
            tokens, fig.get("serving.runtime_overhead_gib", 0.0), hardware.prefill_seconds,
        )
        if kv is not None:
            max_len = dep.max_model_len or 0
            at_max_len = f", {kv.tokens / max_len:.0f} of --max-model-len {max_len}" if max_len else ""
            if kv.sequences_held < slots:
                verdict = (
                    f"--max-num-seqs {slots} does not fit at the workload's lengths: vLLM preempts and "
                    "recomputes"
                )
            elif max_len and kv.tokens / max_len < slots:
                verdict = (
                    f"--max-num-seqs {slots} fits at the workload's lengths, but only "
                    f"{kv.tokens / max_len:.0f} requests of --max-model-len fit: long requests make vLLM "
                    "preempt"
                )
            else:
                verdict = f"--max-num-seqs {slots} fits even at --max-model-len"
            out["kv"] = (
                f"one {gpu} pod's KV cache holds {kv.tokens:,.0f} tokens: "
                f"{kv.sequences_held:.0f} sequences of the workload "
                f"({kv.prompt_tokens:.0f} + {kv.output_tokens:.0f} tokens){at_max_len}; {verdict}"
            )
        capacity = pool.capacity_types
        if capacity == ("spot",):
            out["spot"] = (
                f"NodePool {pool.name} launches Spot only: when Spot is short no node launches and new "
                "replicas stay Pending until it comes back (no on-demand fallback)"
            )
        elif "spot" in capacity and "on-demand" in capacity:
            out["spot"] = (
                f"NodePool {pool.name}: Spot first (${instance.spot_per_hour:.2f}/h), on-demand at "
                f"${instance.on_demand_per_hour:.2f}/h when Spot is short"
            )
        else:
            out["spot"] = f"NodePool {pool.name}: on-demand only at ${instance.on_demand_per_hour:.2f}/h"
        parts = cold_start_parts(hardware, instance, pool.image_pull, compile_cache_warm, new_node=True)
        total = sum(p.seconds for p in parts)
        detail = " + ".join(f"{p.name} {p.seconds:.0f} s" for p in parts)
        notice = hardware.timing("spot_interruption_notice_seconds")
        out["cold-start"] = (
            f"a replica on a new node serves after about {total:.0f} s ({detail})"
            + (f"; longer than the {notice:.0f} s Spot notice" if "spot" in capacity and total > notice
               else "")
        )
        if math.isfinite(total) and scaling is not None and scaling.min_replicas == 0:
            out["zero"] = (
                f"minReplicaCount 0: the first request after a quiet spell waits about {total:.0f} s in the "
                "gateway's hold"
            )
    return out
