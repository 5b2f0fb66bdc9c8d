"""KEDA's activation, cooldown, formula and fallback, per the ScaledObject specification."""

from __future__ import annotations

import pytest

from tools.validate.simulate.keda import (
    KedaController,
    Observation,
    ScalingConfigError,
    evaluate_formula,
    parse_scaled_object,
)


def _scaled_object(**spec: object) -> dict:
    base: dict = {
        "minReplicaCount": 0,
        "maxReplicaCount": 10,
        "pollingInterval": 5,
        "cooldownPeriod": 300,
        "triggers": [
            {
                "type": "kedify-otel",
                "name": "running",
                "metadata": {"metricQuery": "sum(vllm_num_requests_running)", "targetValue": "25"},
            },
            {
                "type": "kedify-otel",
                "name": "waiting",
                "metadata": {
                    "metricQuery": "sum(vllm_num_requests_waiting)",
                    "targetValue": "5",
                    "activationTargetValue": "2",
                },
            },
        ],
    }
    base.update(spec)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "vllm"},
        "spec": base,
    }


MODIFIERS = {
    "scalingModifiers": {"formula": "running + (waiting * 10)", "target": "25", "activationTarget": "3"}
}


def test_parse_reads_targets_activation_and_formula() -> None:
    scaling = parse_scaled_object(_scaled_object(advanced=MODIFIERS))
    assert [(t.name, t.signal, t.target, t.activation) for t in scaling.triggers] == [
        ("running", "running", 25.0, 0.0),
        ("waiting", "waiting", 5.0, 2.0),
    ]
    assert scaling.modifiers is not None and scaling.modifiers.activation_target == 3.0
    assert scaling.behavior.scale_down.stabilization_window_seconds == 300


def test_formula_result_is_the_single_average_value_metric() -> None:
    keda = KedaController(parse_scaled_object(_scaled_object(advanced=MODIFIERS)))
    # 40 running + 3 waiting -> 70; AverageValue 25 -> ceil(70 / 25) = 3
    assert keda.metric_desired(2, 2, Observation(running=40, waiting=3)) == 3
    assert evaluate_formula("running + (waiting * 10)", {"running": 40, "waiting": 3}) == 70


def test_formula_naming_an_unknown_trigger_is_an_error() -> None:
    bad = {"scalingModifiers": {"formula": "running + queue", "target": "25"}}
    with pytest.raises(ScalingConfigError, match="queue"):
        parse_scaled_object(_scaled_object(advanced=bad))


def test_activation_from_zero_follows_the_activation_threshold() -> None:
    keda = KedaController(parse_scaled_object(_scaled_object()))
    assert keda.poll(0, 0, Observation(running=0, waiting=2)) == 0  # 2 is not above activation 2
    assert keda.poll(5, 0, Observation(running=0, waiting=3)) == 1


def test_modifiers_activation_uses_the_formula() -> None:
    keda = KedaController(parse_scaled_object(_scaled_object(advanced=MODIFIERS)))
    assert keda.poll(0, 0, Observation(running=3, waiting=0)) == 0  # 3 is not above 3
    assert keda.poll(5, 0, Observation(running=0, waiting=1)) == 1  # 10 > 3


def test_scale_to_zero_only_after_the_cooldown() -> None:
    keda = KedaController(parse_scaled_object(_scaled_object()))
    assert keda.poll(0, 1, Observation(running=1, waiting=0)) == 1  # active at t=0
    assert keda.poll(295, 1, Observation(running=0, waiting=0)) == 1
    assert keda.poll(300, 1, Observation(running=0, waiting=0)) == 0


def test_fallback_after_failure_threshold() -> None:
    keda = KedaController(
        parse_scaled_object(
            _scaled_object(minReplicaCount=1, fallback={"failureThreshold": 3, "replicas": 6})
        )
    )
    for t in (0, 5):
        keda.poll(t, 2, None)
        assert keda.metric_desired(2, 2, None) is None  # an error: the HPA keeps the scale
    keda.poll(10, 2, None)
    assert keda.fallback_active
    assert keda.metric_desired(2, 2, None) == 6
    assert keda.sync_hpa(12, 2, 2, None) == 6
    keda.poll(15, 6, Observation(running=0, waiting=0))
    assert not keda.fallback_active


def test_cpu_trigger_never_deactivates() -> None:
    doc = _scaled_object(
        minReplicaCount=1,
        triggers=[{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}],
    )
    keda = KedaController(parse_scaled_object(doc))
    assert keda.is_active(Observation(running=0, waiting=0))
    # Three ready pods at 40 % of their request against a 60 % target: ceil(3 x 40/60) = 2.
    assert keda.metric_desired(3, 3, Observation(0, 0, (40.0, 40.0, 40.0), 0)) == 2
