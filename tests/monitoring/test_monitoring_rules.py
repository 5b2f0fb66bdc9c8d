"""The repository's alerting and recording rules on Debian's promtool: they load, every alert fires on its
failure and stays silent when healthy (alerts_test.yaml), and every runbook link lands on a section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.rendered_manifests import render
from tests.monitoring.rules_files import alerts, rules_document, scaled, write_rules
from tests.validate.schema.schema_helpers import upstream_crds
from tools.stack.env import MissingToolError, promtool_binary
from tools.validate.model import Resource
from tools.validate.schema import SchemaValidator

HERE = Path(__file__).parent
REPO_ROOT = HERE.parents[1]
UNIT_TESTS = HERE / "alerts_test.yaml"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/example-org/eks-llm-inference/blob/main/docs/runbooks.md#"


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return promtool_binary()
    except MissingToolError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return rules_document()


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_promtool_accepts_the_rules(promtool: Path, tmp_path: Path, overlay: str) -> None:
    path = write_rules(tmp_path / "llm-inference.rules.yaml", rules_document(overlay))

    result = run(promtool, "check", "rules", path.name, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 20 rules found" in result.stdout


def test_every_alert_passes_its_promtool_unit_tests(
    promtool: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    write_rules(tmp_path / "llm-inference.rules.yaml", document)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)

    result = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_unit_tests(
    promtool: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    """The unit tests compare what fires: the same file with one alert made to stay silent fails."""
    write_rules(tmp_path / "llm-inference.rules.yaml", document)
    text = UNIT_TESTS.read_text(encoding="utf-8").replace("values: '18x40'", "values: '8x40'")
    (tmp_path / UNIT_TESTS.name).write_text(text, encoding="utf-8")

    result = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)

    assert result.returncode == 1
    assert "alertname: VllmQueueBacklog" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test(document: dict[str, Any]) -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}

    assert firing == set(alerts(document))
    assert silent == set(alerts(document))


def test_every_alert_has_a_severity_and_a_runbook_section(document: dict[str, Any]) -> None:
    headings = re.findall(r"^## (.+)$", RUNBOOKS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for name, rule in alerts(document).items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL), name
        assert url.removeprefix(RUNBOOK_URL) in anchors, f"{name}: {url} has no section in docs/runbooks.md"


def test_scaling_the_rules_changes_durations_only(document: dict[str, Any]) -> None:
    fast = scaled(document, 60)
    backlog = alerts(fast)["VllmQueueBacklog"]
    burn = alerts(fast)["TimeToFirstTokenBudgetBurnFast"]

    assert backlog["for"] == "3s"
    assert backlog["expr"] == alerts(document)["VllmQueueBacklog"]["expr"]
    assert fast["groups"][0]["interval"] == "1s"
    assert "[5s]" in alerts(fast)["S3WriteFailures"]["expr"]
    assert burn["expr"] == alerts(document)["TimeToFirstTokenBudgetBurnFast"]["expr"]
    recorded = {rule["record"]: rule["expr"] for rule in fast["groups"][0]["rules"]}
    assert "[60s]" in recorded["llm:ttft_slo_errors:ratio_rate1h"]


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_the_monitoring_resources_pass_the_upstream_crds(overlay: str) -> None:
    """The rendered ServiceMonitors, PodMonitors and PrometheusRule against the Prometheus operator's own
    CRDs (kept beside the checkout, as for tests/validate/schema), not only against the gate's schemas."""
    crds = upstream_crds()
    upstream = SchemaValidator(crd_dirs=[crds])
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    documents = [doc for doc in render(overlay).documents if doc["kind"] in kinds]

    assert sorted((doc["kind"], doc["metadata"]["name"]) for doc in documents) == [
        ("PodMonitor", "karpenter"),
        ("PodMonitor", "keda-operator"),
        ("PodMonitor", "vllm-metrics-collector"),
        ("PrometheusRule", "llm-inference"),
        ("ServiceMonitor", "gateway"),
        ("ServiceMonitor", "vllm"),
    ]
    for doc in documents:
        assert upstream.source_of(doc["apiVersion"], doc["kind"]).startswith("CRD ")
        assert upstream.validate(Resource(doc, overlay)) == [], doc["metadata"]["name"]
