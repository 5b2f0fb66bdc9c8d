"""The scaling policies `simulate --compare` runs side by side on the same load and cluster.

- `queue` : the repository's ScaledObject as rendered.
- `cpu`   : a CPU-utilisation HPA (KEDA `cpu` trigger, metricType Utilization) with the same min/max and
            behavior; vLLM's CPU use saturates at about one core whatever the queue (see the hardware
            profile's vllm_cpu figures), so it cannot see load beyond that.
- `running`: only the trigger on running requests, no formula: the queue itself is invisible to it.
"""

from __future__ import annotations

from dataclasses import replace

from tools.validate.simulate.keda import KedaScaling, Trigger

DEFAULT_CPU_TARGET = 60.0


def queue_policy(scaling: KedaScaling) -> KedaScaling:
    return scaling


def cpu_policy(scaling: KedaScaling, target_utilization: float = DEFAULT_CPU_TARGET) -> KedaScaling:
    trigger = Trigger("cpu", "cpu", "cpu", target_utilization, metric_type="Utilization")
    return replace(scaling, triggers=(trigger,), modifiers=None, min_replicas=max(1, scaling.min_replicas))


def running_policy(scaling: KedaScaling, max_num_seqs: int) -> KedaScaling:
    running = tuple(t for t in scaling.triggers if t.signal == "running")
    if not running:
        running = (Trigger("running", "kedify-otel", "running", max(1.0, 0.8 * max_num_seqs)),)
    return replace(scaling, triggers=running, modifiers=None)


POLICY_NAMES = ("queue", "cpu", "running")
