"""The network model's parts that fixtures do not show: relabel regexes from a pull request are compiled
as Prometheus compiles them (RE2, linear time), and copies of a workload are one class of pods."""

from __future__ import annotations

from typing import Any

from tools.validate.config import External
from tools.validate.model import Context, Resource
from tools.validate.network import required_connections, scrape_jobs


def _ctx(docs: list[dict[str, Any]]) -> Context:
    resources = [Resource(d, "overlays/test", index=i) for i, d in enumerate(docs)]
    return Context("overlays/test", "test", resources)


def _deployment(name: str, label: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "inference"},
        "spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/name": label}}, "spec": {
            "containers": [{"name": "c", "image": "i:1",
                            "ports": [{"name": "http", "containerPort": 8000}]}]}}},
    }


def _collector(regex: str) -> dict[str, Any]:
    keep = {"action": "keep", "regex": regex,
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]}
    scrape = {"job_name": "pods", "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": [keep]}
    return {"apiVersion": "opentelemetry.io/v1beta1", "kind": "OpenTelemetryCollector",
            "metadata": {"name": "metrics", "namespace": "monitoring"},
            "spec": {"config": {"receivers": {"prometheus": {"config": {"scrape_configs": [scrape]}}}}}}


def test_a_catastrophic_backtracking_regex_is_matched_in_linear_time() -> None:
    # Python's re takes exponential time on this pair; RE2 answers at once.
    ctx = _ctx([_deployment("vllm", "a" * 64), _collector("(a|aa)+b")])

    [job] = scrape_jobs(ctx)

    assert job.connections == ()


def test_a_regex_re2_refuses_keeps_nothing_as_prometheus_refuses_it() -> None:
    ctx = _ctx([_deployment("vllm", "vllm"), _collector("(?=vllm)vllm")])

    [job] = scrape_jobs(ctx)

    assert job.connections == ()


def test_copies_of_a_workload_are_one_class_of_pods() -> None:
    ctx = _ctx([_deployment(f"vllm-{i}", "vllm") for i in range(50)] + [_collector("vllm")])

    connections = required_connections(ctx)

    assert [(c.source.description, c.destination.description, c.port) for c in connections] == [
        ("OpenTelemetryCollector/metrics", "Deployment/vllm-0", 8000)]


def test_prometheus_declared_as_scraper_must_reach_every_monitor_target() -> None:
    prometheus = External(kind="Service", namespace="prometheus", name="prometheus", created_by="a chart",
                          labels={"app.kubernetes.io/name": "prometheus"}, scrapes_monitors=True)
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "vllm", "namespace": "inference", "labels": {"app": "vllm"}},
               "spec": {"selector": {"app.kubernetes.io/name": "vllm"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "vllm", "namespace": "monitoring"},
               "spec": {"namespaceSelector": {"matchNames": ["inference"]},
                        "selector": {"matchLabels": {"app": "vllm"}}, "endpoints": [{"port": "http"}]}}
    resources = [Resource(d, "overlays/test", index=i)
                 for i, d in enumerate([_deployment("vllm", "vllm"), service, monitor])]
    ctx = Context("overlays/test", "test", resources, external=[prometheus.as_resource("overlays/test")])

    connections = required_connections(ctx)

    assert [(c.source.description, c.destination.description, c.port, c.why) for c in connections] == [
        ("Service/prometheus", "Deployment/vllm", 8000, "ServiceMonitor/vllm endpoint 'http'")]
