"""The simulator end to end on a small rendered repository (tests/validate/simulate/fixtures/repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.validate.simulate.command import main
from tools.validate.simulate.compile_cache import POD, SHARED, compile_cache_mode
from tools.validate.simulate.engine import SimOptions, simulate
from tools.validate.simulate.hardware import load_hardware_profile
from tools.validate.simulate.load import spike
from tools.validate.simulate.manifests import read_cluster
from tools.validate.simulate.policies import cpu_policy, running_policy
from tools.validate.simulate.render import render_overlay
from tools.validate.simulate.summary import summarize

FIXTURE = Path(__file__).parent / "fixtures" / "repo"
QUIET = SimOptions(spot_interruptions=False)


@pytest.fixture(scope="module")
def prod():
    return read_cluster("prod", render_overlay(FIXTURE / "overlays" / "prod"))


@pytest.fixture(scope="module")
def hardware():
    return load_hardware_profile("aws-g5-mistral7b-awq")


def test_reads_the_scaling_facts_from_the_manifests(prod) -> None:
    assert prod.deployment.max_num_seqs == 32 and prod.deployment.max_model_len == 4096
    assert prod.deployment.gpus_per_pod == 1 and prod.deployment.startup_probe.period == 5
    s = prod.scaling
    assert (s.min_replicas, s.max_replicas, s.polling_interval, s.cooldown_period) == (2, 10, 5, 300)
    assert s.modifiers.formula == "running + (waiting * 10)"
    [pool] = prod.node_pools
    assert (pool.capacity_types, pool.limits, pool.image_pull) == (
        ("spot", "on-demand"),
        {"nvidia.com/gpu": 12.0},
        "soci_bottlerocket",
    )
    assert prod.scrape_interval == 5 and prod.export_delay == 1
    assert prod.pdb is not None and prod.pdb.max_unavailable == "1"


def test_reference_spike_reaches_new_capacity_in_about_two_minutes(prod, hardware) -> None:
    # The reference timeline: queue seen 2 s, pod Pending 3 s, Spot launch 5 s, node Ready 45 s,
    # container start 80 s, weights streamed 110 s, serving 120 s. Here: the first queue at t=69 s,
    # HPA sync at 82 s (15 s period, phase 7 s), pod unschedulable + Karpenter batch 84 s, instance
    # 86 s, node Ready 121 s, SOCI pull 45 s -> 166 s, 4.1 GB at 2.5 Gb/s 13 s + engine 20 s ->
    # 199 s, next startup-probe tick (5 s) 201 s: 132 s after the queue formed.
    summary = summarize(simulate(prod, hardware, spike(), QUIET))
    assert summary.time_to_capacity == 132
    assert 100 <= summary.time_to_capacity <= 140


def test_queue_policy_beats_cpu_and_running_only(prod, hardware) -> None:
    queue = summarize(simulate(prod, hardware, spike(), QUIET))
    cpu = summarize(simulate(prod, hardware, spike(), QUIET, cpu_policy(prod.scaling), "cpu"))
    running = summarize(simulate(prod, hardware, spike(), QUIET, running_policy(prod.scaling, 32), "running"))
    # vLLM's CPU sits at one busy core of a 2.5-core request (40 %) however long the queue: the CPU HPA
    # never adds a replica and the queue grows for the whole spike.
    assert cpu.peak_desired == 2 and cpu.time_to_capacity is None
    assert cpu.wait_p95 > 5 * queue.wait_p95
    # The formula sees the queue, and asks for every replica it allows at once.
    assert queue.peak_desired == 10 and queue.wait_p95 <= 15
    # Running-only scales one replica per full replica: cheaper, fewer replicas, more SLO minutes.
    assert running.peak_desired == 4 and running.slo_minutes >= queue.slo_minutes
    assert running.gpu_hours < queue.gpu_hours


def test_cli_prints_the_table_and_plots(tmp_path: Path, capsys) -> None:
    png = tmp_path / "spike.png"
    code = main(
        [str(FIXTURE / "overlays" / "prod"), "--compare", "--no-spot-interruptions", "--plot", str(png)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "queue (repository)" in out and "CPU 60 %" in out and "running only" in out
    assert "time to capacity" in out and "132 s" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dev_scale_to_zero_on_vllm_gauges_never_activates(hardware) -> None:
    dev = read_cluster("dev", render_overlay(FIXTURE / "overlays" / "dev"))
    result = simulate(dev, hardware, spike(), QUIET)
    summary = summarize(result)
    assert summary.served == 0 and summary.rejected == pytest.approx(14429.25)
    assert any("cannot activate from zero" in note for note in summary.notes)


def test_bad_csv_profile_exits_2_with_the_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "load.csv"
    bad.write_text("t_seconds,requests_per_second\n0,1\n10,lots\n")
    code = main([str(FIXTURE / "overlays" / "prod"), "--profile", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"gate simulate: {bad}:3: not a number in '10,lots'\n"


def test_unknown_overlay_exits_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no kustomization.yaml" in capsys.readouterr().err


def test_metrics_outage_holds_the_fallback(prod, hardware) -> None:
    result = simulate(
        prod, hardware, spike(), SimOptions(spot_interruptions=False, metrics_outage=(30.0, 1800.0))
    )
    # Three failed polls (5 s apart) and the HPA heads for fallback.replicas... which the fixture does
    # not set: without fallback, the HPA keeps the 2 replicas it had.
    assert set(result.series.desired_replicas.tolist()) == {2}


def test_spot_interruption_replaces_the_replica(prod, hardware) -> None:
    result = simulate(prod, hardware, spike(), SimOptions(spot_interruptions=False, interrupt_at=(1200.0,)))
    [interrupted] = [n for n in result.nodes if n.cordoned]
    assert interrupted.gone_at == 1320.0  # the 2-minute notice
    ready = result.series.ready_replicas
    # The drained replica leaves at once; its replacement needs a node and a cold start.
    assert ready[1199] == 2 and ready[1201] == 1
    replacement = [n for n in result.nodes if n.launched > 1200]
    assert [n.launched for n in replacement] == [1204.0]
    assert ready[1330] == 2
    assert "1 Spot interruption(s)" in result.notes


def test_scale_from_zero_on_the_gateway_request_rate(hardware) -> None:
    from tools.validate.simulate.keda import parse_scaled_object

    dev = read_cluster("dev", render_overlay(FIXTURE / "overlays" / "dev"))
    rate_trigger = {
        "type": "prometheus",
        "name": "requests",
        "metadata": {
            "serverAddress": "http://prometheus:9090",
            "query": "sum(rate(gateway_requests_total[1m]))",
            "threshold": "8",
            "activationThreshold": "0.1",
        },
    }
    doc = {
        "metadata": {"name": "vllm"},
        "spec": {
            "minReplicaCount": 0,
            "maxReplicaCount": 2,
            "pollingInterval": 5,
            "triggers": [rate_trigger],
        },
    }
    result = simulate(dev, hardware, spike(), QUIET, parse_scaled_object(doc), "from zero")
    summary = summarize(result)
    # The first arrivals (t=0) find no replica. The rate is scraped at 5 s (visible at 6 s), KEDA's poll
    # at 10 s activates; the pod is Pending, Karpenter launches at 14 s, node Ready 49 s, image pulled
    # 94 s, weights 13 s + the cold engine start 45 s (dev's compile cache is the pod's own) 152 s,
    # startup-probe tick 154 s. Everything before is answered 503.
    assert result.series.desired_replicas[9] == 0 and result.series.desired_replicas[10] == 1
    assert summary.time_to_capacity == 154
    assert summary.rejected == pytest.approx(0.5 * 60 + 20 * (154 - 61), rel=0.01)
    assert not any("cannot activate" in note for note in summary.notes)


def test_a_shared_compile_cache_gives_the_warm_engine_start(hardware) -> None:
    """prod's claim holds vLLM's cache root: new pods start warm; dev's vLLM compiles into its own
    filesystem: every new pod pays the compilation (engine_init_seconds_cold_compile)."""
    prod = read_cluster("prod", render_overlay(FIXTURE / "overlays" / "prod"))
    dev = read_cluster("dev", render_overlay(FIXTURE / "overlays" / "dev"))
    assert (prod.deployment.compile_cache, dev.deployment.compile_cache) == (SHARED, POD)
    timings = hardware.timings
    assert timings["engine_init_seconds_cold_compile"] - timings["engine_init_seconds"] == 25
    assert "torch.compile docs" in hardware.sources["timings.engine_init_seconds_cold_compile"]
    assert "PR 16848" in hardware.sources["timings.engine_init_seconds"]


PVC = {"persistentVolumeClaim": {"claimName": "x"}}


@pytest.mark.parametrize(
    ("mounts", "volumes", "env", "mode"),
    [
        ([{"name": "c", "mountPath": "/cache"}], [{"name": "c", "emptyDir": {}}],
         {"VLLM_CACHE_ROOT": "/cache/vllm"}, POD),
        ([{"name": "c", "mountPath": "/cache"}, {"name": "s", "mountPath": "/cache/vllm"}],
         [{"name": "c", "emptyDir": {}}, {"name": "s", **PVC}],
         {"VLLM_CACHE_ROOT": "/cache/vllm"}, SHARED),
        ([{"name": "s", "mountPath": "/home/vllm/.cache"}], [{"name": "s", **PVC}],
         {"HOME": "/home/vllm"}, SHARED),
        ([{"name": "s", "mountPath": "/cache/vllm-other"}], [{"name": "s", **PVC}],
         {"VLLM_CACHE_ROOT": "/cache/vllm"}, POD),
    ],
)
def test_the_deepest_mount_holding_the_cache_root_decides(
    mounts: list[dict[str, str]], volumes: list[dict[str, object]], env: dict[str, str], mode: str
) -> None:
    container = {"volumeMounts": mounts, "env": [{"name": k, "value": v} for k, v in env.items()]}
    assert compile_cache_mode({"volumes": volumes}, container) == mode
