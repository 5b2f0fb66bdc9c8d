"""The discrete-time simulation: arrivals, vLLM replicas, KEDA and the HPA, Karpenter nodes.

Requests are a fluid: each step moves fractional counts between per-replica queues, never request
objects, so a simulated day at one-second steps costs a few float operations per replica per step
(plain Python floats: for the tens of replicas a Deployment has, that beats numpy's per-call overhead).
Lifecycle events (pods, nodes) are handled only at the times they are due.

Model, in the order of one step:
1. Lifecycle: Spot interruption notices (the node's pods are deleted and drain, replacements are
   created at once), nodes leaving, nodes becoming Ready, pods becoming Ready (container start after
   the image pull, then weight streaming and engine start, seen at the next startup-probe tick), empty
   nodes consolidated after `consolidateAfter`, Karpenter launching nodes for pods that stayed
   unschedulable for its batch window, within the NodePool limits.
2. Control: the metrics collector scrapes vLLM's gauges every scrape interval (visible after the export
   delay); KEDA polls every pollingInterval (activation 0<->1, fallback failure counting); the HPA syncs
   every 15 s; the ReplicaSet creates or deletes pods to match (unscheduled, then unready, then the
   most recently ready pods go first).
3. Service: the step's arrivals are split evenly over the ready replicas (a Service spreads
   connections; a waiting request stays on the replica that took it); each replica admits up to
   --max-num-seqs and completes running requests at `running / service_time(running)` per second,
   where the service time comes from the GPU's throughput by batch size. Deleted replicas stop
   receiving and drain until their grace period ends.
Queue waits are exact for the fluid: each replica's cumulative arrivals are tracked against its
cumulative admissions, so the arrival time of the requests admitted in a step is known.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from tools.validate.simulate.compile_cache import ENGINE_INIT_KEYS
from tools.validate.simulate.gateway_model import HoldQueue
from tools.validate.simulate.hardware import HardwareProfile, InstanceType
from tools.validate.simulate.keda import KedaController, KedaScaling, Observation
from tools.validate.simulate.kvcache import KvBudget, budget_for
from tools.validate.simulate.latency import (
    LatencyRecorder,
    LatencySummary,
    extended_throughput,
    summarize_latency,
)
from tools.validate.simulate.load import LoadProfile
from tools.validate.simulate.manifests import Cluster, NodePool, admitted_instances, pools_for
from tools.validate.simulate.serving import ServingModel
from tools.validate.simulate.spot import launch_capacity, reclaimed_with

HPA_SYNC_SECONDS = 15.0
RETRY_SECONDS = 10.0  # Karpenter retries pods it could not launch capacity for
SECONDS_PER_MONTH = 30 * 86400.0
EPS = 1e-9
TABLE_RESOLUTION = 20  # service-time table points per unit of batch


@dataclass(frozen=True)
class SimOptions:
    step_seconds: float = 1.0
    # The HPA's phase relative to the load is unknown; half a sync period is its mean.
    hpa_sync_offset: float = 7.0
    seed: int = 1
    spot_interruptions: bool = True
    metrics_outage: tuple[float, float] | None = None
    slo_wait_seconds: float = 5.0
    initial_replicas: int | None = None
    # What-if: at each of these times the oldest Spot node serving a replica gets its 2-minute notice.
    interrupt_at: tuple[float, ...] = ()
    serving: ServingModel | None = None


@dataclass
class Node:
    id: int
    instance: InstanceType
    capacity_type: str
    pool: NodePool
    launched: float
    ready_at: float
    interrupt_at: float
    slots: int
    gone_at: float = math.inf
    image_ready_at: float | None = None
    pods: list[Pod] = field(default_factory=list)
    empty_since: float | None = None
    cordoned: bool = False
    removed: bool = False


@dataclass
class Pod:
    id: int
    created: float
    unschedulable_at: float
    node: Node | None = None
    phase: str = "pending"  # pending | starting | ready | terminating | crashloop
    ready_at: float = math.inf
    slot: int = -1
    deadline: float = math.inf


@dataclass
class Series:
    time: np.ndarray
    arrivals: np.ndarray  # requests/s
    waiting: np.ndarray
    running: np.ndarray
    ready_replicas: np.ndarray
    desired_replicas: np.ndarray
    ready_gpu_nodes: np.ndarray
    max_wait: np.ndarray  # longest wait among requests admitted in the step, s
    rejected: np.ndarray  # requests that found no ready replica (the gateway answers 503)
    held: np.ndarray | None = None  # requests in the gateway's hold
    spot_nodes: np.ndarray | None = None  # ready GPU nodes on Spot (the rest on-demand)
    # With the serving model: by the step a request arrived in, the mean time to first token and mean
    # inter-token latency of those answered (NaN: none arrived, or none was answered)
    ttft: np.ndarray | None = None
    itl: np.ndarray | None = None


@dataclass
class SimResult:
    name: str
    series: Series
    wait_histogram: np.ndarray  # requests by whole seconds waited
    nodes: list[Node]
    end_time: float
    step_seconds: float
    served: float
    rejected: float
    aborted: float
    still_queued: float
    notes: list[str]
    slo_wait_seconds: float
    latency: LatencySummary | None = None
    held: float = 0.0  # requests that entered the gateway's hold
    held_too_long: float = 0.0  # held past the hold timeout (503)
    interruptions: int = 0
    launch_shortages: int = 0  # Spot launches that found no capacity


def per_request(sums: list[float], counts: list[float]) -> np.ndarray:
    """Sums over requests divided by their counts; NaN where no request was counted."""
    total, count = np.array(sums), np.array(counts)
    out = np.full(len(total), np.nan)
    np.divide(total, count, out=out, where=count > EPS)
    return out


class ServiceModel:
    """Per-request service time by running batch on a GPU: prefill + tokens / per-request rate."""

    def __init__(self, hardware: HardwareProfile, reference_gpu: str, extend_to: float = 0.0) -> None:
        self.extend_to = extend_to
        table = extended_throughput(hardware.gpus[reference_gpu].tokens_per_second_by_batch, extend_to)
        self.batches = np.array(sorted(table), float)
        self.tokens_per_second = np.array([table[int(b)] for b in self.batches], float)
        self.tokens = hardware.output_tokens_per_request
        self.prefill = hardware.prefill_seconds
        self.reference = reference_gpu
        self.hardware = hardware

    def speed(self, gpu: str) -> float:
        """A GPU's throughput relative to the reference, at the reference's largest measured batch."""
        table = extended_throughput(self.hardware.gpus[gpu].tokens_per_second_by_batch, self.extend_to)
        top = self.batches[-1]
        return float(np.interp(top, sorted(table), [table[b] for b in sorted(table)])) / float(
            self.tokens_per_second[-1]
        )

    def service_seconds(self, batch: np.ndarray | float, speed: np.ndarray | float = 1.0) -> np.ndarray:
        b = np.maximum(batch, 1.0)
        return self.prefill + self.tokens * b / (np.interp(b, self.batches, self.tokens_per_second) * speed)

    def table(self, gpu: str, max_batch: float, kv: KvBudget | None = None) -> list[float]:
        """Service seconds at batch 1, 1+1/TABLE_RESOLUTION, ... up to max_batch + 1 (for the step loop);
        with a KV budget, each batch's preempted share pays its recomputation."""
        grid = 1.0 + np.arange(int((max_batch + 1) * TABLE_RESOLUTION) + 2) / TABLE_RESOLUTION
        seconds = self.service_seconds(grid, self.speed(gpu))
        if kv is not None:
            seconds = seconds + np.array([kv.extra_seconds(float(b)) for b in grid])
        return [float(v) for v in seconds]


class Simulation:
    def __init__(
        self,
        cluster: Cluster,
        hardware: HardwareProfile,
        load: LoadProfile,
        scaling: KedaScaling | None,
        options: SimOptions,
        name: str = "",
    ) -> None:
        self.cluster, self.hw, self.load, self.scaling, self.opt = cluster, hardware, load, scaling, options
        self.name = name or cluster.overlay
        self.dep = cluster.deployment
        self.rng = np.random.default_rng(options.seed)
        self.notes: list[str] = list(cluster.notes)
        self.pools = pools_for(self.dep, cluster.node_pools)
        self.choices: list[tuple[NodePool, InstanceType]] = []
        for pool in self.pools:
            instances = admitted_instances(pool, self.dep, hardware)
            if instances:
                self.choices.append((pool, instances[0]))
        if not cluster.node_pools:
            self.notes.append("no NodePool rendered: nodes launch from the profile's first instance type")
            unbounded = NodePool("(none)", 0, (), ("on-demand",), {}, (), "WhenEmpty", None, "", "default")
            self.choices.append((unbounded, hardware.instance_types[0]))
        elif not self.choices:
            self.notes.append(
                "no NodePool admits an instance type of the profile that fits the pod: pods stay Pending"
            )
        gpu = self.choices[0][1].gpu.name if self.choices else hardware.instance_types[0].gpu.name
        self.serving = options.serving
        self.max_seqs = float(self.dep.max_num_seqs)
        self.service = ServiceModel(hardware, gpu, self.max_seqs if self.serving else 0.0)
        self.kv_budgets: dict[str, KvBudget | None] = {}
        self.recorder: LatencyRecorder | None = None
        self.hold: HoldQueue | None = None
        self.launch_shortages = 0
        if self.serving is not None:
            self.recorder = LatencyRecorder()
            gateway = self.serving.gateway
            self.recorder.watch(self.serving.objectives, gateway.first_token_timeout if gateway else math.inf)
            if gateway is not None and gateway.hold_cap > 0:
                self.hold = HoldQueue(gateway.hold_cap, gateway.hold_timeout_seconds)
            self.forced_pool = sorted(self.serving.reclaim_pool_at)
        else:
            self.forced_pool = []
        t = hardware.timings
        self.scrape_interval = cluster.scrape_interval or t["metrics_scrape_interval_seconds"]
        self.export_delay = (
            cluster.export_delay if cluster.export_delay is not None else t["metrics_export_delay_seconds"]
        )
        self.pods: list[Pod] = []
        self.nodes: list[Node] = []
        self.spec_replicas = 0
        self.keda = KedaController(scaling) if scaling else None
        self._ids = 0
        self.crashloop_noted = False
        self.forced = sorted(options.interrupt_at)

    # --- slots: one per replica process that serves (ready or draining) ---------------------------

    def _new_slot(self) -> int:
        for store in (self.running, self.gauge, self.waiting, self.offset, self.final_arrivals):
            store.append(0.0)
        self.receiving.append(False)
        self.tables.append([])
        self.caps.append(self.max_seqs)
        self.skip.append(0.0)
        return len(self.running) - 1

    # --- lifecycle --------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._ids += 1
        return self._ids

    def _launch(self, now: float, pool: NodePool, instance: InstanceType, warm: bool = False) -> Node | None:
        t = self.hw.timings
        capacity: str | None = "spot" if "spot" in pool.capacity_types else "on-demand"
        if self.serving is not None and not warm:
            capacity = launch_capacity(pool.capacity_types, instance.name, self.serving.spot, self.rng)
            if capacity != "spot" and "spot" in pool.capacity_types:
                self.launch_shortages += 1
            if capacity is None:
                return None
        assert capacity is not None
        launched = now if warm else now + t["launch_api_seconds"]
        ready = now if warm else launched + t["node_boot_to_ready_seconds"]
        interrupt = math.inf
        if capacity == "spot" and self.opt.spot_interruptions and instance.spot_interruptions_per_month > 0:
            hazard = -math.log(1.0 - min(instance.spot_interruptions_per_month, 0.99)) / SECONDS_PER_MONTH
            interrupt = launched + float(self.rng.exponential(1.0 / hazard))
        slots = max(1, instance.gpus // max(self.dep.gpus_per_pod, 1))
        node = Node(self._new_id(), instance, capacity, pool, launched, ready, interrupt, slots)
        if warm:
            node.image_ready_at = now
        self.nodes.append(node)
        return node

    def _within_limits(self, pool: NodePool, instance: InstanceType) -> bool:
        used = {"nvidia.com/gpu": 0.0, "cpu": 0.0, "memory": 0.0}
        for n in self.nodes:
            if n.pool is pool and not n.removed:
                used["nvidia.com/gpu"] += n.instance.gpus
                used["cpu"] += n.instance.vcpu
                used["memory"] += n.instance.memory_gib * 2**30
        extra = {"nvidia.com/gpu": instance.gpus, "cpu": instance.vcpu, "memory": instance.memory_gib * 2**30}
        return all(used.get(k, 0.0) + extra.get(k, 0.0) <= v for k, v in pool.limits.items() if k in extra)

    def _bind(self, pod: Pod, node: Node, now: float) -> None:
        t = self.hw.timings
        pod.node = node
        node.pods.append(pod)
        node.empty_since = None
        pod.phase = "starting"
        if node.instance.gpu.compute_capability < self.hw.min_compute_capability:
            pod.phase = "crashloop"
            if not self.crashloop_noted:
                self.notes.append(
                    f"{node.instance.name} ({node.instance.gpu.name}, compute capability "
                    f"{node.instance.gpu.compute_capability}) cannot run the model: its pods crash-loop"
                )
                self.crashloop_noted = True
            return
        if node.image_ready_at is None:
            node.image_ready_at = node.ready_at + t[f"image_pull_seconds_{node.pool.image_pull}"]
        container_start = max(node.image_ready_at, now)
        weights = self.hw.weights_gigabytes * 8.0 / node.instance.network_gbps
        up = container_start + weights + t[ENGINE_INIT_KEYS[self.dep.compile_cache]]
        probe = self.dep.startup_probe or self.dep.readiness_probe
        if probe is None:
            pod.ready_at = up
            return
        first = container_start + probe.initial_delay
        ticks = max(0, math.ceil((up - first) / probe.period - EPS))
        if self.dep.startup_probe is not None and ticks >= probe.failure_threshold:
            pod.phase = "crashloop"
            self.notes.append(
                f"startup probe allows {probe.initial_delay + probe.period * probe.failure_threshold:g} s, "
                f"the server needs {up - container_start:.0f} s: the kubelet restarts it forever"
            )
            return
        pod.ready_at = first + ticks * probe.period

    def _schedule(self, pod: Pod, now: float) -> None:
        for node in self.nodes:
            if not node.cordoned and not node.removed and len(node.pods) < node.slots:
                self._bind(pod, node, now)
                return

    def _provision(self, now: float) -> None:
        """Karpenter: one batch for every pod that has been unschedulable for the batch window."""
        due = [p for p in self.pods if p.phase == "pending" and p.node is None and p.unschedulable_at <= now]
        while due:
            for pod in list(due):
                self._schedule(pod, now)
            due = [p for p in due if p.node is None]
            if not due:
                return
            for pool, instance in self.choices:
                if self._within_limits(pool, instance):
                    launched = self._launch(now, pool, instance)
                    if launched is None:
                        continue  # no Spot capacity and no on-demand allowed: the next pool, or retry
                    node = launched
                    for pod in due[: node.slots]:
                        self._bind(pod, node, now)
                    due = due[node.slots :]
                    break
            else:
                for pod in due:
                    pod.unschedulable_at = now + RETRY_SECONDS
                if self.choices and self.serving is not None and self.launch_shortages and not any(
                    "Spot capacity" in n for n in self.notes
                ):
                    self.notes.append(
                        f"no Spot capacity at t={now:.0f} s and the NodePool allows no on-demand: pods stay "
                        "Pending while Karpenter retries"
                    )
                elif self.choices and "limits" not in " ".join(self.notes):
                    self.notes.append(
                        f"NodePool limits reached at t={now:.0f} s: pods stay Pending until a node goes away"
                    )
                return

    def _make_ready(self, pod: Pod) -> None:
        slot = self.free_slots.pop() if self.free_slots else self._new_slot()
        pod.slot, pod.phase = slot, "ready"
        self.running[slot] = self.gauge[slot] = self.waiting[slot] = 0.0
        self.receiving[slot] = True
        self.offset[slot] = self.cum_share[-1]
        gpu = pod.node.instance.gpu.name if pod.node else self.service.reference
        if gpu not in self.gpu_tables:
            kv = self._kv_budget(gpu)
            cap = self.max_seqs if kv is None else min(self.max_seqs, max(1.0, kv.sequences_held))
            self.gpu_caps[gpu] = cap
            self.gpu_tables[gpu] = self.service.table(gpu, cap, kv)
        self.tables[slot] = self.gpu_tables[gpu]
        self.caps[slot] = self.gpu_caps[gpu]
        self.active.append(slot)
        self.n_receiving += 1

    def _kv_budget(self, gpu: str) -> KvBudget | None:
        if self.serving is None:
            return None
        if gpu not in self.kv_budgets:
            fig = self.hw.figures
            budget = budget_for(
                self.serving.catalogue,
                self.dep.flags,
                gpu,
                self.dep.gpus_per_pod,
                fig.get("serving.prompt_tokens_per_request", 0.0),
                self.hw.output_tokens_per_request,
                fig.get("serving.runtime_overhead_gib", 0.0),
                self.hw.prefill_seconds,
            )
            self.kv_budgets[gpu] = budget
            if budget is not None and budget.sequences_held < self.max_seqs:
                self.notes.append(
                    f"the KV cache of one {gpu} pod holds {budget.tokens:,.0f} tokens: "
                    f"{budget.sequences_held:.0f} sequences of {budget.mean_sequence_tokens:.0f} tokens "
                    "on average, "
                    f"fewer than --max-num-seqs {self.max_seqs:.0f}: vLLM preempts and recomputes"
                )
        return self.kv_budgets[gpu]

    def _stop_receiving(self, slot: int) -> None:
        if self.receiving[slot]:
            self.receiving[slot] = False
            self.final_arrivals[slot] = self.cum_share[-1] - self.offset[slot]
            self.n_receiving -= 1

    def _release(self, pod: Pod) -> None:
        if pod.slot >= 0:
            slot = pod.slot
            self._stop_receiving(slot)
            self.aborted += self.running[slot] + self.waiting[slot]
            self.running[slot] = self.gauge[slot] = self.waiting[slot] = 0.0
            self.skip[slot] = 0.0
            self.active.remove(slot)
            self.free_slots.append(slot)
            pod.slot = -1
        if pod in self.draining:
            self.draining.remove(pod)
        if pod.node is not None:
            pod.node.pods.remove(pod)
            if not pod.node.pods:
                pod.node.empty_since = self.now
        pod.phase = "gone"
        self.pods.remove(pod)

    def _terminate(self, pod: Pod, now: float, grace: float) -> None:
        if pod.phase == "ready":
            pod.phase = "terminating"
            pod.deadline = now + grace
            self._stop_receiving(pod.slot)
            self.draining.append(pod)
        else:
            self._release(pod)

    def _reconcile(self, now: float) -> None:
        active = [p for p in self.pods if p.phase != "terminating"]
        if len(active) < self.spec_replicas:
            unsched = (
                self.hw.timings["scheduler_unschedulable_seconds"]
                + self.hw.timings["karpenter_batch_idle_seconds"]
            )
            for _ in range(self.spec_replicas - len(active)):
                pod = Pod(self._new_id(), now, now + unsched)
                self.pods.append(pod)
                self._schedule(pod, now)
        elif len(active) > self.spec_replicas:
            rank = {"pending": 0, "crashloop": 1, "starting": 1, "ready": 2}
            victims = sorted(
                active, key=lambda p: (rank[p.phase], -p.ready_at if p.phase == "ready" else -p.created)
            )
            for pod in victims[: len(active) - self.spec_replicas]:
                self._terminate(pod, now, self.dep.termination_grace_seconds)

    def _advance(self, now: float) -> None:
        notice = self.hw.timings["spot_interruption_notice_seconds"]
        while self.forced and self.forced[0] <= now:
            self.forced.pop(0)
            spot = [
                n
                for n in self.nodes
                if n.capacity_type == "spot" and not n.cordoned and not n.removed and n.pods
            ]
            if spot:
                spot[0].interrupt_at = now
        while self.forced_pool and self.forced_pool[0] <= now:
            self.forced_pool.pop(0)
            for n in self.nodes:
                if n.capacity_type == "spot" and not n.cordoned and not n.removed:
                    n.interrupt_at = now
        for node in list(self.nodes):
            if node.removed:
                continue
            if not node.cordoned and now >= node.interrupt_at:
                if self.serving is not None:
                    self._correlated_reclaims(node, now)
                node.cordoned = True
                node.gone_at = now + notice
                self.interruptions += 1
                for pod in list(node.pods):
                    self._terminate(pod, now, min(self.dep.termination_grace_seconds, notice))
            if now >= node.gone_at:
                for pod in list(node.pods):
                    self._release(pod)
                node.removed = True
                node.gone_at = min(node.gone_at, now)
            elif (
                not node.pods
                and node.empty_since is not None
                and node.pool.consolidate_after is not None
                and now >= node.empty_since + node.pool.consolidate_after
            ):
                node.removed = True
                node.gone_at = now
        for pod in list(self.pods):
            if pod.phase == "starting" and now >= pod.ready_at:
                self._make_ready(pod)
            elif pod.phase == "terminating" and now >= pod.deadline:
                self._release(pod)
        self._reconcile(now)
        self._provision(now)
        self.ready_nodes = sum(1 for n in self.nodes if not n.removed and n.ready_at <= now)
        self.ready_spot = sum(
            1 for n in self.nodes if not n.removed and n.ready_at <= now and n.capacity_type == "spot"
        )

    def _correlated_reclaims(self, node: Node, now: float) -> None:
        """The other Spot nodes of the node's capacity pool that EC2 reclaims with it."""
        others = [
            n
            for n in self.nodes
            if n is not node
            and n.capacity_type == "spot"
            and n.pool is node.pool
            and n.instance is node.instance
            and not n.cordoned
            and not n.removed
            and n.interrupt_at > now
        ]
        assert self.serving is not None
        for other, goes in zip(others, reclaimed_with(self.serving.spot, len(others), self.rng), strict=True):
            if goes:
                other.interrupt_at = now

    def _next_event(self) -> float:
        times = [math.inf, *self.forced[:1], *self.forced_pool[:1]]
        for node in self.nodes:
            if node.removed:
                continue
            times.append(node.gone_at)
            if node.ready_at > self.now:
                times.append(node.ready_at)
            if not node.cordoned:
                times.append(node.interrupt_at)
            if not node.pods and node.empty_since is not None and node.pool.consolidate_after is not None:
                times.append(node.empty_since + node.pool.consolidate_after)
        for pod in self.pods:
            if pod.phase == "starting":
                times.append(pod.ready_at)
            elif pod.phase == "terminating":
                times.append(pod.deadline)
            elif pod.phase == "pending" and pod.node is None:
                times.append(pod.unschedulable_at)
        return min(times)

    # --- observation --------------------------------------------------------------------------------

    def _observe(self, with_cpu: bool = False) -> Observation:
        running = sum(self.gauge[i] for i in self.active)
        waiting = sum(self.waiting[i] for i in self.active)
        arrivals = self.rates[self.t - 1] if self.t > 0 else 0.0
        unserved = 0.0 if self.n_receiving else arrivals  # no pod receiving: the Service has no endpoint
        if not with_cpu:
            return Observation(running, waiting, arrivals=arrivals, unserved=unserved)
        busy, idle, request = self.hw.cpu_busy_cores, self.hw.cpu_idle_cores, max(self.dep.cpu_request, 1e-3)
        cpu = tuple(
            100.0 * (idle + (busy - idle) * min(1.0, self.gauge[p.slot])) / request
            for p in self.pods
            if p.phase == "ready"
        )
        unready = sum(1 for p in self.pods if p.phase in ("pending", "starting", "crashloop"))
        return Observation(running, waiting, cpu, unready, arrivals, unserved)

    def _outage(self, now: float) -> bool:
        window = self.opt.metrics_outage
        return window is not None and window[0] <= now < window[1]

    # --- main loop ------------------------------------------------------------------------------------

    def run(self) -> SimResult:
        dt = self.opt.step_seconds
        rates = self.load.sample(dt)
        steps = len(rates)
        self.running: list[float] = []
        # vLLM's num_requests_running as a scrape sees it: after admission, before the step's completions
        # (by Little's law that is the continuous-time mean; the value after completions is low by λ·dt).
        self.gauge: list[float] = []
        self.waiting: list[float] = []
        self.offset: list[float] = []
        self.final_arrivals: list[float] = []
        self.receiving: list[bool] = []
        self.tables: list[list[float]] = []
        self.gpu_tables: dict[str, list[float]] = {}
        self.caps: list[float] = []  # per slot: --max-num-seqs, or fewer when the KV cache holds fewer
        self.gpu_caps: dict[str, float] = {}
        self.skip: list[float] = []  # per slot: released held requests whose latency is already recorded
        self.free_slots: list[int] = []
        self.active: list[int] = []
        self.draining: list[Pod] = []
        self.n_receiving = 0
        self.ready_nodes = self.ready_spot = 0
        # cum_share[k]: requests each receiving replica got in steps 0..k-1 (they all get the same share)
        self.cum_share: list[float] = [0.0]
        hist = [0.0] * (int(self.load.duration / dt) + 2)
        s_wait, s_run, s_ready, s_desired, s_nodes, s_max, s_rejected, s_held, s_spot = (
            [0.0] * steps for _ in range(9)
        )
        self.served = self.rejected = self.aborted = 0.0
        self.interruptions = 0
        self.t, self.now = 0, 0.0

        initial = self.opt.initial_replicas
        if initial is None:
            initial = self.scaling.min_replicas if self.scaling else (self.dep.replicas or 1)
        self.spec_replicas = initial
        for _ in range(initial):
            pod = Pod(self._new_id(), 0.0, 0.0)
            self.pods.append(pod)
            self._schedule(pod, 0.0)
            if pod.node is None and self.choices:
                pool, instance = self.choices[0]
                warm_node = self._launch(0.0, pool, instance, warm=True)
                assert warm_node is not None
                self._bind(pod, warm_node, 0.0)
            if pod.phase == "starting":
                self._make_ready(pod)
        self.ready_nodes = sum(1 for n in self.nodes if n.ready_at <= 0.0)
        self.ready_spot = sum(1 for n in self.nodes if n.ready_at <= 0.0 and n.capacity_type == "spot")
        if self.keda is not None:
            self.keda.last_active = 0.0
        if (
            self.scaling
            and self.scaling.min_replicas == 0
            and all(t.signal in ("running", "waiting", "in_flight") for t in self.scaling.triggers)
        ):
            self.notes.append(
                "minReplicaCount 0 with triggers on the queue only (vLLM gauges, gateway in-flight): with no "
                "pod there is no queue to measure, "
                "so KEDA cannot activate from zero on load alone"
            )

        next_event = self._next_event()
        next_scrape, next_poll = 0.0, 0.0
        next_sync = self.opt.hpa_sync_offset
        pending_obs: list[tuple[float, Observation]] = []
        visible: Observation | None = None
        poll = self.scaling.polling_interval if self.scaling else math.inf
        keda = self.keda
        cpu_scaled = bool(self.scaling) and any(tr.signal == "cpu" for tr in self.scaling.triggers)
        running, gauge, waiting, receiving, offset, final = (
            self.running,
            self.gauge,
            self.waiting,
            self.receiving,
            self.offset,
            self.final_arrivals,
        )
        tables, active, cum = self.tables, self.active, self.cum_share
        caps, skip = self.caps, self.skip
        recorder, hold = self.recorder, self.hold
        record = recorder.record if recorder is not None else None
        # Latency by arrival step (sums weighted by requests), for the series
        arrival_count, arrival_ttft, arrival_itl = ([0.0] * steps for _ in range(3))

        def by_arrival(step: int, count: float, ttft: float, itl: float) -> None:
            k = step if step > 0 else 0
            arrival_count[k] += count
            arrival_ttft[k] += count * ttft
            arrival_itl[k] += count * itl

        gateway = self.serving.gateway if self.serving is not None else None
        prefill = self.hw.prefill_seconds
        out_tokens = max(self.hw.output_tokens_per_request, 1.0)
        total_wait = total_run = 0.0
        res = float(TABLE_RESOLUTION)
        rate_list = [float(r) for r in rates]
        self.rates = rate_list
        served = 0.0
        last_bin = len(hist) - 1
        for t in range(steps):
            now = t * dt
            if now >= next_event:
                self.t, self.now = t, now
                self._advance(now)
                next_event = self._next_event()
            if keda is not None:
                if now >= next_scrape:
                    self.t = t
                    pending_obs.append((now + self.export_delay, self._observe()))
                    next_scrape += self.scrape_interval
                while pending_obs and pending_obs[0][0] <= now:
                    visible = pending_obs.pop(0)[1]
                if now >= next_poll or now >= next_sync:
                    self.t, self.now = t, now
                    before = self.spec_replicas
                    obs = None if self._outage(now) else visible
                    if now >= next_poll:
                        self.spec_replicas = keda.poll(now, self.spec_replicas, obs)
                        next_poll += poll
                    if now >= next_sync:
                        status = sum(1 for p in self.pods if p.phase != "terminating")
                        if cpu_scaled and obs is not None:
                            obs = self._observe(with_cpu=True)  # metrics-server resolution ~ the sync period
                        self.spec_replicas = keda.sync_hpa(now, self.spec_replicas, status, obs)
                        next_sync += HPA_SYNC_SECONDS
                    if self.spec_replicas != before:
                        self._reconcile(now)
                        self._provision(now)
                        next_event = min(next_event, self._next_event())

            # Service: arrivals, admission up to --max-num-seqs, completions.
            arrivals = rate_list[t] * dt
            share = released = 0.0
            if gateway is not None:
                # 429: vLLM's queue above the shedding threshold at the last poll, or in-flight cap reached.
                refused = 0.0
                shed = gateway.sheds and gateway.shed_queue_waiting > 0
                if shed and total_wait > gateway.shed_queue_waiting:
                    refused = arrivals
                else:
                    in_flight = total_wait + total_run + (hold.size if hold is not None else 0.0)
                    refused = min(arrivals, max(0.0, arrivals - (gateway.in_flight_cap - in_flight)))
                arrivals -= refused
                self.rejected += refused
                s_rejected[t] += refused
            if hold is not None and hold.size > 0:
                hold.expire(now)
            if self.n_receiving:
                if hold is not None and hold.size > 0:
                    full = tables[active[0]][-1] if active else 0.0
                    for held_for, count in hold.release(now):
                        released += count
                        if record is not None:
                            itl = (full - prefill) / out_tokens
                            record(count, held_for + prefill, held_for + full, itl, held_for)
                            by_arrival(t - int(held_for / dt), count, held_for + prefill, itl)
                share = (arrivals + released) / self.n_receiving
                if released:
                    for i in active:
                        if receiving[i]:
                            skip[i] += released / self.n_receiving
            elif hold is not None:
                before_refused = hold.refused
                hold.hold(now, arrivals)
                self.rejected += hold.refused - before_refused
                s_rejected[t] += hold.refused - before_refused
            else:
                self.rejected += arrivals
                s_rejected[t] += arrivals
            cum_now = cum[-1] + share
            cum.append(cum_now)
            total_wait = total_run = longest = 0.0
            for i in active:
                r = running[i]
                w = waiting[i]
                if receiving[i]:
                    w += share
                    arrived = cum_now - offset[i]
                else:
                    arrived = final[i]
                admitted = 0.0
                waited = 0
                if w > EPS:
                    room = caps[i] - r
                    x = w if w < room else room
                    if x > EPS:
                        admitted = x
                        if receiving[i] and w <= share + EPS:
                            hist[0] += x  # everything admitted arrived in this very step
                        else:
                            middle = arrived - w + 0.5 * x + offset[i]
                            waited = t + 1 - bisect_left(cum, middle)
                            if waited < 0:
                                waited = 0
                            hist[waited if waited < last_bin else last_bin] += x
                            if waited > longest:
                                longest = waited
                        w -= x
                        r += x
                gauge[i] = r
                total_run += r
                if r > EPS:
                    b = (r if r > 1.0 else 1.0) - 1.0
                    j = b * res
                    k = int(j)
                    table = tables[i]
                    seconds = table[k] + (j - k) * (table[k + 1] - table[k])
                    if record is not None and admitted > 0.0:
                        own = admitted
                        if skip[i] > 0.0:
                            taken = skip[i] if skip[i] < own else own
                            skip[i] -= taken
                            own -= taken
                        if own > EPS:
                            queued = waited * dt
                            itl = (seconds - prefill) / out_tokens
                            record(own, queued + prefill, queued + seconds, itl)
                            by_arrival(t - waited, own, queued + prefill, itl)
                    done = r * dt / seconds
                    if done > r:
                        done = r
                    r -= done
                    served += done
                running[i] = r
                waiting[i] = w
                total_wait += w
            if self.draining:
                self.t, self.now = t, now
                for pod in [p for p in self.draining if running[p.slot] + waiting[p.slot] < 1e-6]:
                    self._release(pod)
                next_event = min(next_event, self._next_event())
            s_wait[t] = total_wait
            s_run[t] = total_run
            s_ready[t] = self.n_receiving
            s_desired[t] = self.spec_replicas
            s_nodes[t] = self.ready_nodes
            s_max[t] = longest * dt
            if hold is not None:
                s_held[t] = hold.size
            s_spot[t] = self.ready_spot
        self.served = served

        end = steps * dt
        if self.interruptions:
            self.notes.append(f"{self.interruptions} Spot interruption(s)")
        series = Series(
            time=np.arange(steps) * dt,
            arrivals=rates,
            waiting=np.array(s_wait),
            running=np.array(s_run),
            ready_replicas=np.array(s_ready),
            desired_replicas=np.array(s_desired),
            ready_gpu_nodes=np.array(s_nodes),
            max_wait=np.array(s_max),
            rejected=np.array(s_rejected),
            held=np.array(s_held) if hold is not None else None,
            spot_nodes=np.array(s_spot) if self.serving is not None else None,
            ttft=per_request(arrival_ttft, arrival_count) if recorder is not None else None,
            itl=per_request(arrival_itl, arrival_count) if recorder is not None else None,
        )
        latency = None
        if recorder is not None:
            failures = self.rejected + (hold.expired if hold is not None else 0.0) + self.aborted
            latency = summarize_latency(recorder, failures)
        # The histogram is by steps waited; report it by whole seconds.
        by_second = np.zeros(int(self.load.duration) + 2)
        np.add.at(by_second, np.minimum((np.arange(len(hist)) * dt).astype(int), len(by_second) - 1), hist)
        return SimResult(
            name=self.name,
            series=series,
            wait_histogram=by_second,
            nodes=self.nodes,
            end_time=end,
            step_seconds=dt,
            served=self.served,
            rejected=self.rejected,
            aborted=self.aborted,
            still_queued=sum(self.waiting) + sum(self.running),
            notes=self.notes,
            slo_wait_seconds=self.opt.slo_wait_seconds,
            latency=latency,
            held=hold.held_total if hold is not None else 0.0,
            held_too_long=hold.expired if hold is not None else 0.0,
            interruptions=self.interruptions,
            launch_shortages=self.launch_shortages,
        )


def simulate(
    cluster: Cluster,
    hardware: HardwareProfile,
    load: LoadProfile,
    options: SimOptions,
    scaling: KedaScaling | None = None,
    name: str = "",
) -> SimResult:
    return Simulation(
        cluster, hardware, load, scaling if scaling is not None else cluster.scaling, options, name
    ).run()
