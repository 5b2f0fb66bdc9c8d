"""The catalogue's vLLM and gateway entries against their real /metrics: the CPU build of vLLM 0.32 and
the gateway in front of it. A metric renamed or relabelled upstream fails here before a dashboard goes
blank in a cluster."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.manifests.rendered_manifests import render
from tests.webui.support import Gateway
from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.model import Context, Resource
from tools.validate.rules import observability

pytestmark = [pytest.mark.vllm, pytest.mark.s3]

# Labels Prometheus's exposition adds to histogram and summary samples.
SAMPLE_LABELS = {"le", "quantile"}


def exported(text: str, prefix: str, listed: Iterable[str]) -> dict[str, set[str]]:
    """metric name (as the catalogue lists it) -> the labels its samples carry.

    The parser names a counter's family without `_total`; the catalogue keeps `_total` where the exporter
    declared it (vLLM's vllm:estimated_flops_per_gpu_total)."""
    known = set(listed)
    families: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        # prometheus_client's exposition types a counter's or histogram's `_created` as its own gauge.
        if family.name.startswith(prefix) and family.samples and not family.name.endswith("_created"):
            name = family.name
            if name not in known and f"{name}_total" in known:
                name = f"{name}_total"
            labels = families.setdefault(name, set())
            for sample in family.samples:
                labels |= set(sample.labels) - SAMPLE_LABELS
    return families


def used_series(exporter: str, catalogue: Catalogue) -> dict[str, set[str]]:
    """The metrics of `exporter` the repository's alerts and dashboards read, with the labels matched on."""
    documents = render("overlays/prod").documents
    resources = [Resource(doc, "overlays/prod", index=i) for i, doc in enumerate(documents)]
    ctx = Context("overlays/prod", "prod", resources, catalogue)
    used: dict[str, set[str]] = {}
    for query in observability.queries(ctx, observability.RULES[0].options):
        for selector in observability.analyse(query).selectors:
            match = catalogue.series(selector.name) if selector.name else None
            if match is not None and match.metric.exporter == exporter:
                labels = used.setdefault(match.metric.name, set())
                labels |= set(selector.labels) - catalogue.scrape_labels - SAMPLE_LABELS
    return used


def chat(url: str, model: str) -> None:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def test_vllm_exports_what_the_catalogue_says(vllm_server: Any) -> None:
    catalogue = load_catalogue()
    chat(vllm_server.base_url, vllm_server.model)
    listed = catalogue.exporters["vllm"].metrics
    real = exported(httpx.get(vllm_server.metrics_url, timeout=10).text, "vllm:", listed)

    assert sorted(set(real) - set(listed)) == [], "exported by vLLM 0.32 but not in vllm_metrics.yaml"
    mislabelled = {
        name: (sorted(labels), sorted(listed[name].labels or ()))
        for name, labels in real.items()
        if listed[name].labels is not None and labels != listed[name].labels
    }
    assert mislabelled == {}
    assert real["vllm:num_requests_waiting"] == {"model_name", "engine"}


def test_every_vllm_metric_the_dashboards_and_alerts_read_is_exported(vllm_server: Any) -> None:
    catalogue = load_catalogue()
    chat(vllm_server.base_url, vllm_server.model)
    real = exported(httpx.get(vllm_server.metrics_url, timeout=10).text, "vllm:",
                    catalogue.exporters["vllm"].metrics)
    used = used_series("vllm", catalogue)

    read = {"vllm:num_requests_waiting", "vllm:time_to_first_token_seconds", "vllm:kv_cache_usage_perc"}
    assert read <= set(used)
    assert sorted(set(used) - set(real)) == []
    assert {name: sorted(labels - real[name]) for name, labels in used.items() if labels - real[name]} == {}


def test_the_gateway_exports_what_the_catalogue_says(vllm_server: Any, vllm_gateway: Gateway) -> None:
    catalogue = load_catalogue()
    chat(vllm_gateway.url, vllm_server.model)
    listed = catalogue.exporters["gateway"].metrics
    real = exported(httpx.get(f"{vllm_gateway.url}/metrics", timeout=10).text, "gateway_", listed)
    used = used_series("gateway", catalogue)

    assert sorted(set(real) - set(listed)) == []
    assert {name: sorted(labels) for name, labels in real.items() if labels != listed[name].labels} == {}
    assert real["gateway_requests"] == {"route", "method", "status"}
    assert sorted(set(used) - set(listed)) == []
    assert {"gateway_requests", "gateway_s3_write_failures", "gateway_shed_requests"} <= set(used)
