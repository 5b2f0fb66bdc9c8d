"""The catalogue's gateway metrics are exactly what the gateway's registry declares."""

from __future__ import annotations

from gateway.metrics import GatewayMetrics
from tools.validate.catalogue import load_catalogue


def test_the_catalogue_lists_every_metric_the_gateway_declares() -> None:
    declared = {metric.name for metric in GatewayMetrics().registry.collect()}
    assert sorted(load_catalogue().gateway_metrics) == sorted(declared)
    assert "gateway_upstream_unavailable" in declared
