"""The HPA algorithm against the worked examples of the Kubernetes documentation
("Horizontal Pod Autoscaling": algorithm details, scaling policies, stabilization window)."""

from __future__ import annotations

from tools.validate.simulate.hpa import (
    Behavior,
    HorizontalPodAutoscaler,
    replicas_for_average_value,
    replicas_for_utilization,
    replicas_for_value,
)


def test_metric_twice_the_target_doubles_the_replicas() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of replicas
    # will be doubled, since 200.0 / 100.0 == 2.0"
    assert replicas_for_value(3, 0.200, 0.100) == 6


def test_metric_half_the_target_halves_the_replicas() -> None:
    # "If the current value is instead 50m, you'll halve the number of replicas"
    assert replicas_for_value(6, 0.050, 0.100) == 3


def test_ratio_within_the_tolerance_changes_nothing() -> None:
    # "If the ratio is sufficiently close to 1.0 (within a globally-configurable tolerance, 0.1 by
    # default), the control plane skips any scaling action."
    assert replicas_for_value(4, 0.109, 0.100) == 4
    assert replicas_for_value(4, 0.111, 0.100) == 5
    assert replicas_for_average_value(2, 54.0, 25.0) == 2  # 54 / 50 = 1.08
    assert replicas_for_average_value(2, 56.0, 25.0) == 3  # 56 / 50 = 1.12 -> ceil(56/25)


def test_average_value_is_the_total_over_the_target() -> None:
    assert replicas_for_average_value(2, 250.0, 25.0) == 10
    assert replicas_for_average_value(0, 3.0, 25.0) == 1


def test_unready_pods_count_as_zero_when_scaling_up() -> None:
    # Two ready pods at 100 % of a 50 % target would double to 4, but with two unready pods counted
    # at 0 % the ratio is exactly 1: no change.
    assert replicas_for_utilization(4, [100.0, 100.0], 2, 50.0) == 4
    assert replicas_for_utilization(2, [100.0, 100.0], 0, 50.0) == 4


def _hpa(behavior: dict, min_replicas: int = 1, max_replicas: int = 100) -> HorizontalPodAutoscaler:
    return HorizontalPodAutoscaler(min_replicas, max_replicas, Behavior.from_spec(behavior))


SCALE_DOWN_EXAMPLE = {
    # "scaleDown: policies: - type: Pods value: 4 periodSeconds: 60 - type: Percent value: 10
    # periodSeconds: 60" ... "the second policy will only be used when the number of pod replicas is
    # more than 40"
    "scaleDown": {
        "stabilizationWindowSeconds": 0,
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 60},
            {"type": "Percent", "value": 10, "periodSeconds": 60},
        ],
    }
}


def test_scale_down_picks_the_policy_allowing_the_most_change() -> None:
    assert _hpa(SCALE_DOWN_EXAMPLE).reconcile(0, 80, 1) == 72  # 10 % of 80 = 8 > 4
    assert _hpa(SCALE_DOWN_EXAMPLE).reconcile(0, 40, 1) == 36  # both allow 4
    assert _hpa(SCALE_DOWN_EXAMPLE).reconcile(0, 30, 1) == 26  # 4 pods > int(30 * 0.9) = 27


def test_changes_within_the_period_count_against_the_limit() -> None:
    hpa = _hpa(SCALE_DOWN_EXAMPLE)
    assert hpa.reconcile(0, 80, 1) == 72
    # 30 s later the period (60 s) still holds the 8 removed pods: the period started at 80, 72 is the
    # floor, nothing more may go.
    assert hpa.reconcile(30, 72, 1) == 72
    # After the period the next step is 10 % of 72, truncated: 64.
    assert hpa.reconcile(61, 72, 1) == 64


def test_scale_down_ten_percent_per_minute() -> None:
    # "To limit the rate at which pods are removed by the HPA to 10% per minute"
    hpa = _hpa(
        {
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
            }
        }
    )
    assert hpa.reconcile(0, 100, 1) == 90
    assert hpa.reconcile(59, 90, 1) == 90  # the 10 removed at t=0 are still inside (t-60, t]
    assert hpa.reconcile(60, 90, 1) == 81  # the period is (t-60, t]: at t=60 they have left it


def test_percent_900_multiplies_by_ten() -> None:
    # "type: Percent value: 900" ... "the number of replicas can be increased to 10 times the current size"
    hpa = _hpa({"scaleUp": {"policies": [{"type": "Percent", "value": 900, "periodSeconds": 60}]}})
    assert hpa.reconcile(0, 1, 50) == 10


def test_default_scale_up_is_max_of_four_pods_or_double() -> None:
    assert _hpa({}).reconcile(0, 1, 50) == 5  # +4 pods beats +100 %
    assert _hpa({}).reconcile(0, 10, 50) == 20  # +100 % beats +4 pods


def test_select_policy_min_and_disabled() -> None:
    rules = [
        {"type": "Pods", "value": 4, "periodSeconds": 60},
        {"type": "Percent", "value": 100, "periodSeconds": 60},
    ]
    assert _hpa({"scaleUp": {"policies": rules, "selectPolicy": "Min"}}).reconcile(0, 10, 50) == 14
    assert _hpa({"scaleDown": {"policies": rules, "selectPolicy": "Disabled"}}).reconcile(0, 10, 1) == 10


def test_stabilization_window_uses_the_highest_recent_recommendation() -> None:
    # "When the metrics indicate that the target should be scaled down the algorithm looks into
    # previously computed desired states, and uses the highest value from the specified interval."
    hpa = _hpa({"scaleDown": {"stabilizationWindowSeconds": 300}})
    assert hpa.reconcile(0, 10, 10) == 10
    assert hpa.reconcile(15, 10, 4) == 10  # 10 was recommended 15 s ago
    assert hpa.reconcile(150, 10, 2) == 10
    assert (
        hpa.reconcile(301, 10, 2) == 4
    )  # the 10 recommended at t=0 left the window; 4 (t=15) is the highest
    assert hpa.reconcile(451, 4, 2) == 2


def test_min_and_max_clamp() -> None:
    assert _hpa({}, min_replicas=2, max_replicas=4).reconcile(0, 3, 50) == 4
    assert _hpa({"scaleDown": {"stabilizationWindowSeconds": 0}}, min_replicas=2).reconcile(0, 3, 1) == 2
    assert _hpa({}, min_replicas=2, max_replicas=4).reconcile(0, 6, 6) == 4  # above max: straight to max
    assert _hpa({}, min_replicas=1).reconcile(0, 0, 5) == 0  # at 0 the HPA is off; KEDA activates
