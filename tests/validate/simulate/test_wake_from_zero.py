"""The repository's dev scaling, simulated: vLLM at zero replicas wakes on the gateway's refusals.

At zero replicas vLLM exports no metric; the ScaledObject's `unserved` trigger (the rate of the
gateway's gateway_upstream_unavailable_total) is what activates it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.validate.simulate.engine import SimOptions, simulate
from tools.validate.simulate.hardware import load_hardware_profile
from tools.validate.simulate.load import spike
from tools.validate.simulate.manifests import read_cluster
from tools.validate.simulate.render import render_overlay
from tools.validate.simulate.summary import summarize

REPOSITORY = Path(__file__).parents[3]


def test_dev_at_zero_replicas_activates_on_unserved_requests() -> None:
    dev = read_cluster("dev", render_overlay(REPOSITORY / "overlays" / "dev"))
    assert dev.scaling is not None and dev.scaling.min_replicas == 0
    assert [(t.name, t.signal) for t in dev.scaling.triggers] == [
        ("running", "running"), ("waiting", "waiting"), ("unserved", "unserved")
    ]
    assert dev.scaling.modifiers is not None
    assert dev.scaling.modifiers.formula == "running + (waiting * 10) + (unserved * 25)"

    hardware = load_hardware_profile("aws-g5-mistral7b-awq")
    result = simulate(dev, hardware, spike(), SimOptions(spot_interruptions=False))
    summary = summarize(result)
    # The first arrivals are refused (no endpoint); the refusal rate is visible at the next scrape and
    # KEDA's poll at 10 s activates; the first replica serves from 154 s (dev compiles into the pod's own
    # emptyDir: the cold engine start, 45 s), and dev's maximum (2) follows.
    desired = [int(n) for n in result.series.desired_replicas]
    assert desired[:11] == [0] * 10 + [1]
    assert max(desired) == 2
    assert summary.time_to_capacity == 154
    assert summary.rejected == pytest.approx(1900.25, rel=0.01)  # 14,429 requests without `unserved`
    assert summary.notes == ()
