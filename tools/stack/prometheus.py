"""Debian's Prometheus, scraping the local vLLM (and the gateway) every 10 s, queried over its HTTP API."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tools.stack.processes import ProcessRecord, log_tail, start_process, stop_group

# vLLM answers /metrics from the event loop that streams its tokens: while its CPU engine runs a full batch
# one answer takes seconds (measured: 5.9 s and 9.1 s on two cores), and a scrape that times out leaves its
# series stale ("no data", no alert). The collector in base/ scrapes every 5 s with a 4 s timeout.
SCRAPE_INTERVAL = "10s"
SCRAPE_TIMEOUT = "10s"
EVALUATION_INTERVAL = "1s"
# One API read; a busy machine (vLLM's CPU engine, a neighbour's build) slows Prometheus for seconds
API_TIMEOUT_SECONDS = 30.0
# The repository's recording and alerting rules (a PrometheusRule; its spec is a Prometheus rules file).
RULES_MANIFEST = Path("base") / "monitoring" / "prometheusrule.yaml"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed or returned nothing."""


def scrape_config(targets: Mapping[str, str], rule_files: Sequence[Path] = ()) -> dict[str, object]:
    """A Prometheus config scraping each `job -> host:port` target's /metrics every SCRAPE_INTERVAL,
    evaluating `rule_files` (recording and alerting rules) every second."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_TIMEOUT,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
            for job, target in sorted(targets.items())
        ],
    }


def write_repository_rules(repo_root: Path, path: Path) -> Path:
    """The spec of the repository's PrometheusRule written to `path` as a rules file Prometheus loads."""
    manifest = yaml.safe_load((repo_root / RULES_MANIFEST).read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(manifest["spec"], sort_keys=False), encoding="utf-8")
    return path


def write_config(path: Path, targets: Mapping[str, str], rule_files: Sequence[Path] = ()) -> None:
    path.write_text(yaml.safe_dump(scrape_config(targets, rule_files), sort_keys=False))


@dataclass
class PrometheusServer:
    port: int
    data_dir: Path
    log_path: Path
    config_path: Path
    rule_files: tuple[Path, ...] = ()
    record: ProcessRecord | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.record.pid if self.record else None

    def stop(self) -> None:
        if self.record is not None:
            stop_group(self.record, grace=10.0, popen=self.popen)

    def set_targets(self, targets: Mapping[str, str]) -> None:
        """Scrape exactly `targets` (job -> host:port) from now on: rewrite the config and send SIGHUP.

        Prometheus applies new targets within about five seconds (its target-update throttle).
        """
        if self.record is None or not self.record.is_alive():
            raise PrometheusError("Prometheus is not running")
        write_config(self.config_path, targets, self.rule_files)
        os.kill(self.record.pid, signal.SIGHUP)

    @property
    def api(self) -> PrometheusApi:
        return PrometheusApi(self.url)

    def query_vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) for every sample of the result vector (maybe none)."""
        return self.api.query_vector(expr)

    def query(self, expr: str) -> float:
        """The value of a query that yields exactly one sample; PrometheusError otherwise."""
        return self.api.query(expr)

    def targets_up(self) -> dict[str, bool]:
        """job -> whether its last scrape succeeded."""
        return self.api.targets_up()

    def scrapes(self) -> dict[str, str]:
        """job -> its last scrape in words (health, seconds it took, error)."""
        return self.api.scrapes()

    def alerts(self) -> dict[str, str]:
        """alertname -> state ("pending" or "firing") of every active alert."""
        return self.api.alerts()


@dataclass(frozen=True)
class PrometheusApi:
    """Prometheus's HTTP API at `url` (any Prometheus, e.g. one `stack up` started)."""

    url: str

    def query_vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) for every sample of the result vector (maybe none)."""
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr},
                                 timeout=API_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            raise PrometheusError(f"querying {expr!r} failed: {error}") from error
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body.get('error', response.text)}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"query {expr!r} returned a {data['resultType']}, not a vector")
        return [(dict(sample["metric"]), float(sample["value"][1])) for sample in data["result"]]

    def query(self, expr: str) -> float:
        """The value of a query that yields exactly one sample; PrometheusError otherwise."""
        samples = self.query_vector(expr)
        if len(samples) != 1:
            raise PrometheusError(f"query {expr!r} returned {len(samples)} samples, expected 1: {samples}")
        return samples[0][1]

    def _active_targets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=API_TIMEOUT_SECONDS).json()
        return list(response["data"]["activeTargets"])

    def targets_up(self) -> dict[str, bool]:
        """job -> whether its last scrape succeeded."""
        return {target["labels"]["job"]: target["health"] == "up" for target in self._active_targets()}

    def scrapes(self) -> dict[str, str]:
        """job -> its last scrape in words (health, seconds it took, error), for failure messages."""
        return {
            target["labels"]["job"]: (
                f"{target['health']} after {float(target.get('lastScrapeDuration', 0)):.2f} s"
                + (f" ({target['lastError']})" if target.get("lastError") else "")
            )
            for target in self._active_targets()
        }

    def alerts(self) -> dict[str, str]:
        """alertname -> state ("pending" or "firing") of every active alert."""
        try:
            response = httpx.get(f"{self.url}/api/v1/alerts", timeout=API_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            raise PrometheusError(f"reading alerts failed: {error}") from error
        return {alert["labels"]["alertname"]: alert["state"] for alert in response.json()["data"]["alerts"]}


def start_prometheus(
    binary: Path,
    *,
    port: int,
    targets: Mapping[str, str],
    state_dir: Path,
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
) -> PrometheusServer:
    """Start Prometheus with a generated config in `state_dir` and wait for /-/ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "prometheus.yml"
    write_config(config_path, targets, rule_files)
    server = PrometheusServer(
        port=port,
        data_dir=state_dir / "prometheus-data",
        log_path=state_dir / "prometheus.log",
        config_path=config_path,
        rule_files=tuple(rule_files),
    )
    command = [
        str(binary),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={server.data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        *extra_args,
    ]
    server.popen, server.record = start_process("prometheus", command, log_path=server.log_path)
    deadline = time.monotonic() + timeout
    while not _ready(server.url):
        if server.popen.poll() is not None:
            raise PrometheusError(
                f"Prometheus exited with code {server.popen.returncode}; {server.log_path}:\n"
                f"{log_tail(server.log_path)}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise PrometheusError(f"Prometheus was not ready within {timeout:g} s")
        time.sleep(0.2)
    return server


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
