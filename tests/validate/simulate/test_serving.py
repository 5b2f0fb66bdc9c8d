"""The mechanisms between the autoscaler and the user, each against a hand-computed expectation:
the KV budget, a preemption, Spot unavailable -> on-demand, the gateway's hold draining, and the
throughput table extended past its last measured batch."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.validate.simulate.support import single_replica
from tools.validate.catalogue import load_catalogue
from tools.validate.model import Resource
from tools.validate.simulate.coldstart import cold_start_parts, compile_cache_survives
from tools.validate.simulate.engine import SimOptions, simulate
from tools.validate.simulate.gateway_model import GatewayLimits, HoldQueue, gateway_limits
from tools.validate.simulate.hardware import load_hardware_profile
from tools.validate.simulate.kvcache import KvBudget, budget_for, kv_budget_tokens
from tools.validate.simulate.latency import (
    LatencyRecorder,
    SloObjectives,
    extended_throughput,
    summarize_latency,
)
from tools.validate.simulate.load import LoadProfile, spike
from tools.validate.simulate.manifests import read_cluster
from tools.validate.simulate.render import render_overlay
from tools.validate.simulate.serving import ServingModel
from tools.validate.simulate.spot import SpotRisk, launch_capacity, reclaimed_with

FIXTURE = Path(__file__).parent / "fixtures" / "repo"
REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def hardware():
    return load_hardware_profile("aws-g5-mistral7b-awq")


@pytest.fixture(scope="module")
def prod():
    return read_cluster("prod", render_overlay(FIXTURE / "overlays" / "prod"))


def test_kv_budget_of_mistral_awq_on_an_a10g(catalogue) -> None:
    # 24576 MiB x 0.9 = 21.6 GiB; - 4.1 GiB weights - 1.5 GiB runtime = 16.0 GiB;
    # 2 x 32 layers x 8 KV heads x 128 x 2 bytes = 128 KiB per token: 16 GiB / 128 KiB = 131072 tokens.
    model = catalogue.models["mistral-7b-awq"]
    assert kv_budget_tokens(model, 24576, 0.9, 1.5) == pytest.approx(131072)
    flags = {"--model": "s3://models/mistral-7b-instruct-awq", "--gpu-memory-utilization": "0.9"}
    budget = budget_for(catalogue, flags, "a10g", 1, 512, 256, 1.5, 0.05)
    assert budget is not None
    # mean occupancy 512 + 256/2 = 640 tokens: 131072 / 640 = 204.8 sequences
    assert budget.sequences_held == pytest.approx(204.8)
    assert budget_for(catalogue, {"--model": "some-other-model"}, "a10g", 1, 512, 256, 1.5, 0.05) is None


def test_a_preemption_costs_the_preempted_share_a_recomputation() -> None:
    # 131072 tokens, prompt 3072, output 2048: mean 4096 tokens -> 32 sequences held; 5120 at the end ->
    # 25.6 sequences finish without preemption. At 32 running, (32 - 25.6) / 32 = 20 % are preempted, each
    # recomputing 4096 tokens at 0.1 ms = 0.4096 s: 0.08192 s more per request on average.
    kv = KvBudget(131072, 3072, 2048, 0.0001)
    assert kv.sequences_held == pytest.approx(32.0)
    assert kv.sequences_completed_without_preemption == pytest.approx(25.6)
    assert kv.preempted_share(25.0) == 0.0
    assert kv.preempted_share(32.0) == pytest.approx(0.2)
    assert kv.extra_seconds(32.0) == pytest.approx(0.08192)


def test_long_prompts_cap_the_batch_at_what_the_kv_cache_holds(prod, hardware, catalogue) -> None:
    # Prompts of 3072 tokens, 256 out: mean 3200 tokens, 131072 / 3200 = 40.96 sequences, below 64.
    long_prompts = replace(hardware, figures={**hardware.figures, "serving.prompt_tokens_per_request": 3072})
    dep = replace(prod.deployment, max_num_seqs=64)
    cluster = replace(prod, deployment=replace(dep, replicas=1), scaling=None)
    load = LoadProfile("flood", np.array([0.0, 600.0]), np.array([30.0, 30.0]))
    serving = ServingModel(catalogue, SloObjectives())
    result = simulate(cluster, long_prompts, load, SimOptions(spot_interruptions=False, serving=serving))
    assert result.series.running.max() == pytest.approx(40.96, abs=1e-6)
    assert any("holds 131,072 tokens: 41 sequences" in n for n in result.notes)


def test_spot_unavailable_falls_back_to_on_demand_where_the_pool_allows() -> None:
    rng = np.random.default_rng(1)
    short = SpotRisk({"g5.xlarge": 1.0}, 0.0)
    assert launch_capacity(("spot", "on-demand"), "g5.xlarge", short, rng) == "on-demand"
    assert launch_capacity(("spot",), "g5.xlarge", short, rng) is None
    assert launch_capacity(("spot", "on-demand"), "g5.xlarge", SpotRisk({}, 0.0), rng) == "spot"
    assert launch_capacity(("on-demand",), "g5.xlarge", short, rng) == "on-demand"


def test_spike_without_spot_capacity_launches_on_demand(prod, hardware, catalogue) -> None:
    short = SpotRisk({i.name: 1.0 for i in hardware.instance_types}, 0.0)
    serving = ServingModel(catalogue, SloObjectives(), spot=short)
    result = simulate(prod, hardware, spike(), SimOptions(spot_interruptions=False, serving=serving))
    launched = [n for n in result.nodes if n.launched > 0]
    assert launched and all(n.capacity_type == "on-demand" for n in launched)
    assert result.launch_shortages == len(launched)
    # The warm nodes of minReplicaCount were there before; only launches meet the shortage.
    assert all(n.capacity_type == "spot" for n in result.nodes if n.launched == 0)


def test_spot_only_pool_with_no_capacity_leaves_pods_pending(prod, hardware, catalogue) -> None:
    [pool] = prod.node_pools
    spot_only = replace(prod, node_pools=(replace(pool, capacity_types=("spot",)),))
    short = SpotRisk({i.name: 1.0 for i in hardware.instance_types}, 0.0)
    serving = ServingModel(catalogue, SloObjectives(), spot=short)
    result = simulate(spot_only, hardware, spike(), SimOptions(spot_interruptions=False, serving=serving))
    assert [n for n in result.nodes if n.launched > 0] == []
    assert result.series.ready_replicas.max() == prod.scaling.min_replicas
    assert any("no Spot capacity" in n for n in result.notes)


def test_hold_queue_drains_oldest_first_and_expires_at_its_timeout() -> None:
    hold = HoldQueue(capacity=128, timeout=180)
    hold.hold(0.0, 10)
    hold.hold(5.0, 10)
    hold.hold(6.0, 200)  # 108 of room left: 92 refused at once
    assert (hold.size, hold.refused) == (128, 92)
    assert hold.release(65.0) == [(65.0, 10), (60.0, 10), (59.0, 108)]
    assert hold.size == 0
    hold.hold(0.0, 10)
    hold.hold(100.0, 5)
    assert hold.expire(180.0) == 10 and hold.size == 5 and hold.expired == 10


def test_scale_from_zero_holds_the_first_requests_then_serves_them(hardware, catalogue) -> None:
    # dev at zero replicas, one request per second: the hold keeps them until the first replica is ready,
    # KEDA's `unserved` trigger wakes vLLM, and the held requests go to it oldest first.
    cluster = read_cluster("dev", render_overlay(REPOSITORY / "overlays" / "dev"))
    gateway = GatewayLimits(256, 64, 128, 180, 60, 1, 1)
    serving = ServingModel(catalogue, SloObjectives(ttft_seconds=300, e2e_seconds=600), gateway=gateway)
    load = LoadProfile("trickle", np.array([0.0, 600.0]), np.array([1.0, 1.0]))
    result = simulate(cluster, hardware, load, SimOptions(spot_interruptions=False, serving=serving))
    ready = int(np.flatnonzero(result.series.ready_replicas > 0)[0])
    # 1 req/s arrives for `ready` seconds (a cold start from zero: over two minutes); the hold takes 128,
    # the rest gets 503 at once; the 128 leave the hold when the replica is ready, none past 180 s.
    assert ready > 128
    assert result.held == pytest.approx(128.0)
    assert result.series.held[ready - 1] == pytest.approx(128.0)
    assert result.series.held[ready] == 0.0
    # Released at once, 129 requests meet --max-num-seqs 32: 97 wait, above the gateway's shedding level 64.
    # At batch 32 a request takes 0.05 + 256 x 32 / 2339 = 3.55 s, so 9 finish per second against 1 arriving:
    # the queue is back under 64 after (97 - 64) / 8 = 4 s, during which the 4 arrivals get 429.
    assert result.rejected == pytest.approx(ready - 128.0 + 4.0) and result.held_too_long == 0.0
    # Within the (loose) objectives: everything but the refused.
    assert result.latency is not None
    assert result.latency.slo_attainment == pytest.approx(1.0 - (ready - 128.0 + 4.0) / 600.0, abs=1e-3)


def test_gateway_defaults_come_from_its_settings_and_the_rendered_config(prod) -> None:
    limits = gateway_limits(render_overlay(FIXTURE / "overlays" / "prod"))
    assert (limits.max_in_flight, limits.shed_queue_waiting, limits.hold_timeout_seconds) == (256, 64, 180)


def test_throughput_table_extends_with_a_straight_time_per_token() -> None:
    # Time per output token 16/1545 = 10.356 ms at 16, 32/2339 = 13.681 ms at 32: +0.2078 ms per sequence.
    # At 64: 13.681 + 32 x 0.2078 = 20.331 ms -> 64 / 20.331 ms = 3148 tok/s.
    table = extended_throughput({1: 122, 4: 468, 8: 904, 16: 1545, 32: 2339}, 64)
    assert table[64] == pytest.approx(3147.9, abs=0.5)


def test_slo_attainment_counts_failures_against_it() -> None:
    recorder = LatencyRecorder()
    recorder.watch(SloObjectives(ttft_seconds=2, e2e_seconds=30), first_token_timeout=60)
    recorder.record(70, 0.5, 10, 0.01)  # within both
    recorder.record(10, 3.0, 10, 0.01)  # TTFT too long
    recorder.record(10, 61.0, 80, 0.01)  # timed out: 504
    summary = summarize_latency(recorder, failures=10)  # rejected or held too long
    assert summary.slo_attainment == pytest.approx(70 / 100)
    assert summary.timed_out == 10


def test_a_reclaim_takes_its_capacity_pool_along() -> None:
    rng = np.random.default_rng(1)
    assert reclaimed_with(SpotRisk({}, 1.0), 3, rng) == [True, True, True]
    assert reclaimed_with(SpotRisk({}, 0.0), 3, rng) == [False, False, False]
    assert reclaimed_with(None, 2, rng) == [False, False]


def test_spot_stress_reclaims_every_spot_node_at_once(prod, hardware, catalogue) -> None:
    # No random interruptions: only the scenario's reclaim at 360 s, with its 2-minute notice.
    serving = ServingModel(catalogue, SloObjectives(), spot=SpotRisk({}, 0.0), reclaim_pool_at=(360.0,))
    result = simulate(prod, hardware, spike(), SimOptions(spot_interruptions=False, serving=serving))
    spot = [n for n in result.nodes if n.capacity_type == "spot" and n.ready_at <= 360.0]
    assert spot and all(n.gone_at == 480.0 for n in spot)
    assert result.interruptions == len(spot)


def test_cold_start_by_parts_on_a_new_g5_xlarge(hardware) -> None:
    # launch 2 + Ready 35 + SOCI pull on Bottlerocket 45 + 4.1 GB at 2.5 Gb/s 13.12 + engine 20 (45 cold).
    g5 = next(i for i in hardware.instance_types if i.name == "g5.xlarge")
    warm = cold_start_parts(hardware, g5, "soci_bottlerocket", compile_cache_warm=True, new_node=True)
    assert [p.seconds for p in warm] == pytest.approx([2, 35, 45, 13.12, 20])
    assert all(p.source for p in warm)
    cold = cold_start_parts(hardware, g5, "default", compile_cache_warm=False, new_node=True)
    assert sum(p.seconds for p in cold) == pytest.approx(2 + 35 + 112.3 + 13.12 + 45)


def test_compile_cache_survives_only_on_a_volume_that_outlives_the_pod() -> None:
    resources = render_overlay(REPOSITORY / "overlays" / "prod")
    [deployment] = [r for r in resources if r.kind == "Deployment" and r.name == "vllm"]
    assert compile_cache_survives(deployment) is True  # the cache root is on prod's EFS claim
    doc = copy.deepcopy(deployment.doc)
    for volume in doc["spec"]["template"]["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume.pop("persistentVolumeClaim")
            volume["emptyDir"] = {}
    assert compile_cache_survives(Resource(doc, "prod")) is False


def test_simulate_cli_runs_one_scenario_with_the_serving_model(capsys) -> None:
    from tools.validate.simulate.command import main

    assert main([str(FIXTURE / "overlays" / "prod"), "--scenario", "spot-stress", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "scenario spot-stress" in out and "objectives TTFT ≤ " in out
    rows = {
        line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1].isalpha() and "  " in line
    }
    assert float(rows["slo_attainment"][0]) <= 1.0 and float(rows["interruptions"][0]) >= 1


def test_latency_by_arrival_follows_the_queue_a_request_finds() -> None:
    """One replica, 4 slots, every request 1 s at any batch (0.2 s of it before the first token), 10
    tokens: under capacity a request waits for nothing (TTFT 0.2 s, ITL 0.08 s); at twice the capacity
    (8/s against 4/s) the queue grows by 4 requests a second, served at 4 a second, so a request that
    arrives t seconds into the overload waits t seconds: TTFT t + 0.2 s."""
    load = LoadProfile("two-rates", np.array([0.0, 20.0, 20.0 + 1e-6, 40.0, 40.0 + 1e-6, 80.0]),
                       np.array([1.0, 1.0, 8.0, 8.0, 0.0, 0.0]))
    result = single_replica({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}, 4, load, tokens=10, prefill=0.2,
                            step_seconds=0.5)
    series = result.series
    assert series.ttft is not None and series.itl is not None
    under = (series.time >= 5.0) & (series.time < 19.0)
    assert np.allclose(series.ttft[under], 0.2)
    assert np.allclose(series.itl[under], 0.08)
    for into_overload in (5.0, 10.0, 15.0):
        step = int((20.0 + into_overload) / 0.5)
        # the fluid queue is admitted by steps of 0.5 s: a step either way
        assert series.ttft[step] == pytest.approx(into_overload + 0.2, abs=0.5 + 1e-9)
        assert series.itl[step] == pytest.approx(0.08)
