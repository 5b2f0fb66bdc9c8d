"""The admin page's scaling view reads Prometheus with PromQL the gate checks like any dashboard's: every
metric and label it names is in the catalogue of exporters."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.routers.scaling import scaling_queries
from gateway.settings import Settings
from tools.validate.catalogue import load_catalogue
from tools.validate.model import Context, Resource
from tools.validate.rules import observability

REPO_ROOT = Path(__file__).resolve().parents[2]


def findings(queries: dict[str, str]) -> set[tuple[str, str]]:
    """(rule id, message) of every observability finding on `queries` shown as one dashboard."""
    board = {
        "uid": "scaling-view",
        "title": "scaling view",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": [
            {"title": name, "datasource": {"uid": "${datasource}"}, "targets": [{"refId": "A", "expr": expr}]}
            for name, expr in queries.items()
        ],
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "scaling-view", "labels": {"grafana_dashboard": "1"}},
        "data": {"scaling.json": json.dumps(board)},
    }
    ctx = Context("gateway", None, [Resource(configmap, "gateway")], load_catalogue())
    return {
        (rule.id, violation.message)
        for rule in observability.RULES
        for violation in rule.check(ctx, rule.options)
    }


def test_the_scaling_view_queries_pass_the_gate() -> None:
    queries = scaling_queries(Settings())

    assert set(queries) == {"waiting", "running", "ready", "desired", "gateway_ready", "gpu_nodes"}
    assert findings(queries) == set()


def test_a_wrong_label_in_a_scaling_view_query_is_caught() -> None:
    queries = scaling_queries(Settings())
    queries["gpu_nodes"] = queries["gpu_nodes"].replace("capacity_type", "capacityType")

    assert {rule for rule, _message in findings(queries)} == {"observability/label-exported"}


def test_the_readme_shows_the_presenter_view() -> None:
    """docs/scaling-view.png: written by tests/webui/test_webui_scaling.py with SCALING_VIEW_SCREENSHOT."""
    picture = (REPO_ROOT / "docs" / "scaling-view.png").read_bytes()

    assert picture.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(picture) < 100_000
    assert "](docs/scaling-view.png)" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "](scaling-view.png)" in (REPO_ROOT / "docs" / "web-ui.md").read_text(encoding="utf-8")
