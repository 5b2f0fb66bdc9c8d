"""`gate simulate [OVERLAY] --profile NAME|FILE`: the scaling simulation of one rendered overlay."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.validate.simulate.compile_cache import describe_compile_cache
from tools.validate.simulate.engine import SimOptions, SimResult, simulate
from tools.validate.simulate.hardware import (
    DEFAULT_HARDWARE,
    HardwareProfile,
    load_hardware_profile,
)
from tools.validate.simulate.load import (
    BUILTIN_LOADS,
    DEFAULT_LOAD,
    LoadProfile,
    load_profile,
)
from tools.validate.simulate.manifests import Cluster, admitted_instances, pools_for, read_cluster
from tools.validate.simulate.policies import DEFAULT_CPU_TARGET, cpu_policy, queue_policy, running_policy
from tools.validate.simulate.render import RenderError, render_overlay
from tools.validate.simulate.summary import summarize, table

DEFAULT_OVERLAY = "overlays/prod"
EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overlay", nargs="?", default=DEFAULT_OVERLAY, help=f"overlay directory (default {DEFAULT_OVERLAY})"
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_LOAD,
        help=f"load: a built-in ({', '.join(BUILTIN_LOADS)}), a CSV 't_seconds,requests_per_second' "
        "or a k6 .js script",
    )
    parser.add_argument(
        "--hardware", default=DEFAULT_HARDWARE, help="hardware profile: a built-in name or a YAML file"
    )
    parser.add_argument(
        "--compare", action="store_true", help="also run a CPU-utilisation HPA and running-only triggers"
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of arrivals, queue, replicas and GPU nodes")
    parser.add_argument("--step", type=float, default=1.0, help="simulation step in seconds (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="seed for Spot interruptions (default 1)")
    parser.add_argument("--no-spot-interruptions", action="store_true", help="never interrupt Spot nodes")
    parser.add_argument("--slo-wait", type=float, default=5.0, help="queue-wait SLO in seconds (default 5)")
    parser.add_argument(
        "--cpu-target", type=float, default=DEFAULT_CPU_TARGET, help="CPU HPA target %% in --compare"
    )
    parser.add_argument(
        "--interrupt-at",
        type=float,
        action="append",
        default=[],
        metavar="SECONDS",
        help="give the oldest Spot node its 2-minute notice at this time (repeatable)",
    )
    parser.add_argument(
        "--metrics-outage", metavar="START-END", help="the scaler's metric source fails between these seconds"
    )
    parser.add_argument(
        "--scenario",
        choices=("spike", "day", "spot-stress"),
        help="instead: one of gate diff's scenarios with the serving model (latency, KV cache, gateway, Spot "
        "risk), median and worst of --seeds seeds",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds for --scenario (default 3)")


def _outage(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    start, sep, end = text.partition("-")
    try:
        window = (float(start), float(end))
    except ValueError:
        window = None
    if not sep or window is None or window[0] >= window[1]:
        raise ValueError(f"--metrics-outage {text!r}: expected START-END in seconds, START < END")
    return window


def full_batch_seconds(cluster: Cluster, hardware: HardwareProfile) -> float:
    """A replica's per-request time at --max-num-seqs: the response time a k6 VU sees when busy."""
    from tools.validate.simulate.engine import ServiceModel

    pools = pools_for(cluster.deployment, cluster.node_pools)
    instances = [i for p in pools for i in admitted_instances(p, cluster.deployment, hardware)]
    gpu = (instances or list(hardware.instance_types))[0].gpu.name
    return float(ServiceModel(hardware, gpu).service_seconds(float(cluster.deployment.max_num_seqs)))


def options_from(args: argparse.Namespace) -> SimOptions:
    return SimOptions(
        step_seconds=args.step,
        seed=args.seed,
        spot_interruptions=not args.no_spot_interruptions,
        metrics_outage=_outage(args.metrics_outage),
        slo_wait_seconds=args.slo_wait,
        interrupt_at=tuple(args.interrupt_at),
    )


def run_policies(
    cluster: Cluster,
    hardware: HardwareProfile,
    load: LoadProfile,
    options: SimOptions,
    compare: bool,
    cpu_target: float,
) -> list[SimResult]:
    scaling = cluster.scaling
    if scaling is None or not compare:
        return [simulate(cluster, hardware, load, options, name="queue" if scaling else "fixed")]
    return [
        simulate(cluster, hardware, load, options, queue_policy(scaling), "queue (repository)"),
        simulate(cluster, hardware, load, options, cpu_policy(scaling, cpu_target), f"CPU {cpu_target:g} %"),
        simulate(
            cluster,
            hardware,
            load,
            options,
            running_policy(scaling, cluster.deployment.max_num_seqs),
            "running only",
        ),
    ]


def describe(cluster: Cluster) -> list[str]:
    dep = cluster.deployment
    lines = [
        f"vLLM {dep.name}: --max-num-seqs {dep.max_num_seqs}, --max-model-len {dep.max_model_len}, "
        f"{dep.gpus_per_pod} GPU/pod, {describe_compile_cache(dep.compile_cache)}"
    ]
    s = cluster.scaling
    if s is not None:
        trig = ", ".join(f"{t.name} ({t.signal}) target {t.target:g}" for t in s.triggers)
        lines.append(
            f"KEDA {s.name}: replicas {s.min_replicas}-{s.max_replicas}, polling {s.polling_interval:g} s, "
            f"cooldown {s.cooldown_period:g} s; {trig}"
        )
        if s.modifiers:
            lines.append(
                f"  formula {s.modifiers.formula!r} target {s.modifiers.target:g} ({s.modifiers.metric_type})"
            )
    for pool in cluster.node_pools:
        limits = ", ".join(
            f"{k} {v / 2**30:g}Gi" if k == "memory" else f"{k} {v:g}" for k, v in pool.limits.items()
        )
        lines.append(
            f"NodePool {pool.name}: {'/'.join(pool.capacity_types)}, limits {limits or 'none'}, "
            f"image pull {pool.image_pull}"
        )
    return lines


def run_scenario_report(args: argparse.Namespace) -> int:
    """`--scenario`: the serving model on one overlay, in the figures `gate diff` compares."""
    from tools.validate.catalogue import load_catalogue
    from tools.validate.simulate.coldstart import compile_cache_survives
    from tools.validate.simulate.gateway_model import gateway_limits
    from tools.validate.simulate.latency import SloObjectives
    from tools.validate.simulate.scenarios import SCENARIOS, run_scenario
    from tools.validate.simulate.serving import ServingModel

    try:
        hardware = load_hardware_profile(args.hardware)
        overlay_dir = Path(args.overlay)
        resources = render_overlay(overlay_dir)
        cluster = read_cluster(overlay_dir.name, resources)
    except (ValueError, RenderError) as exc:
        print(f"gate simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    vllm = [r for r in resources if r.kind == "Deployment" and r.name == cluster.deployment.name]
    warm = bool(vllm) and compile_cache_survives(vllm[0])
    from tools.validate.diff.command import objectives_for
    from tools.validate.diff.policy import read_gate_config

    config, _ = read_gate_config(Path.cwd())
    objectives = objectives_for(config, overlay_dir.name) if config else SloObjectives()
    serving = ServingModel(load_catalogue(), objectives, gateway_limits(resources), compile_cache_warm=warm)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    result = run_scenario(cluster, hardware, scenario, serving, tuple(range(1, max(args.seeds, 1) + 1)))
    print(f"overlay {args.overlay} · scenario {scenario.name} ({scenario.description}) · hardware "
          f"{hardware.name} · objectives TTFT ≤ {objectives.ttft_seconds:g} s, end to end ≤ "
          f"{objectives.e2e_seconds:g} s")
    print("\n".join(describe(cluster)))
    print()
    width = max(len(name) for name in vars(result.median))
    print(f"{'':{width}}  {'median':>12}  {'worst seed':>12}")
    for name, value in vars(result.median).items():
        print(f"{name:{width}}  {value:>12,.3f}  {getattr(result.worst, name):>12,.3f}")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.scenario:
        return run_scenario_report(args)
    try:
        options = options_from(args)
        hardware = load_hardware_profile(args.hardware)
        overlay_dir = Path(args.overlay)
        cluster = read_cluster(overlay_dir.name, render_overlay(overlay_dir))
        load = load_profile(args.profile, full_batch_seconds(cluster, hardware), hardware.k6_think_seconds)
        results = run_policies(cluster, hardware, load, options, args.compare, args.cpu_target)
    except (ValueError, RenderError) as exc:  # the profile, manifest and option errors all derive from these
        print(f"gate simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summaries = [summarize(r, hardware.timing("node_minimum_billed_seconds")) for r in results]
    print(f"overlay {args.overlay} · load {load.name} ({load.description}) · hardware {hardware.name}")
    print("\n".join(describe(cluster)))
    print()
    print(table(summaries, options.slo_wait_seconds))
    notes = sorted({n for s in summaries for n in s.notes})
    for note in notes:
        print(f"note: {note}")
    if args.plot:
        from tools.validate.simulate.plot import plot

        plot(results, args.plot, f"{args.overlay} · {load.name}", options.slo_wait_seconds)
        print(f"plot written to {args.plot}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate simulate", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
