"""Session fixtures for the real local services (tools/stack): vLLM, S3, Prometheus.

Each server starts once per test session, on first use, and is stopped at the end. A missing vLLM
environment or Prometheus binary FAILS the tests that need them, with the command that installs them;
set STACK_ALLOW_MISSING=1 to skip those tests instead (developers without the test tools).
Set STACK_VLLM_URL=http://127.0.0.1:PORT to reuse a running vLLM (e.g. from `stack up`) instead of
starting one; it must have been started with --max-num-seqs 4 (or set STACK_VLLM_MAX_NUM_SEQS).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tools.stack.env import REPO_ROOT, MissingToolError, cache_dir, prometheus_binary, vllm_python
from tools.stack.processes import free_port, session_log_dir
from tools.stack.prometheus import PrometheusServer, start_prometheus
from tools.stack.s3 import S3Server
from tools.stack.tiny_model import ensure_tiny_model
from tools.stack.vllm import (
    START_TIMEOUT,
    VllmServer,
    connect_vllm,
    dev_overlay_args,
    local_serving_args,
    start_vllm,
)
from tools.stack.wait import wait_until as _wait_until

T = TypeVar("T")

TEST_MAX_NUM_SEQS = 4
_startup_seconds: dict[str, float] = {}
_log_dirs: list[Path] = []


def _require(find: Callable[[], T]) -> T:
    """`find()`, or fail (skip with STACK_ALLOW_MISSING=1) the test when a tool is not installed."""
    try:
        return find()
    except MissingToolError as error:
        if os.environ.get("STACK_ALLOW_MISSING") == "1":
            pytest.skip(f"{error} (skipped: STACK_ALLOW_MISSING=1)")
        pytest.fail(f"{error}; or set STACK_ALLOW_MISSING=1 to skip the tests that need it", pytrace=False)


@pytest.fixture(scope="session")
def stack_logs() -> Path:
    """Directory for this session's server logs: .stack/pytest/session-*/ (the last few sessions are kept).

    Not pytest's tmp_path: on a machine shared by several test sessions pytest rotates those away.
    """
    path = session_log_dir(REPO_ROOT / ".stack" / "pytest")
    _log_dirs.append(path)
    return path


@pytest.fixture(scope="session")
def vllm_python_path() -> Path:
    """The interpreter of vLLM's environment."""
    return _require(vllm_python)


@pytest.fixture(scope="session")
def tiny_model(vllm_python_path: Path) -> Path:
    """Directory of the generated tiny Mistral-architecture model (cached across sessions)."""
    return ensure_tiny_model(vllm_python_path, cache_dir())


@pytest.fixture(scope="session")
def vllm_server(request: pytest.FixtureRequest, stack_logs: Path) -> Iterator[VllmServer]:
    """A real vLLM (CPU build) serving the tiny model with the dev overlay's flags and --max-num-seqs 4.

    Attributes: base_url (http://127.0.0.1:PORT), model (served name), metrics_url, pid (None when
    reused), max_num_seqs (4), port, log_path, args.
    """
    reuse = os.environ.get("STACK_VLLM_URL")
    if reuse:
        max_num_seqs = int(os.environ.get("STACK_VLLM_MAX_NUM_SEQS", TEST_MAX_NUM_SEQS))
        yield connect_vllm(reuse, max_num_seqs=max_num_seqs)
        return
    python = _require(vllm_python)
    model_dir: Path = request.getfixturevalue("tiny_model")
    overlay_args, _source = dev_overlay_args(REPO_ROOT)
    args = local_serving_args(
        overlay_args, model_dir=model_dir, port=free_port(), max_num_seqs=TEST_MAX_NUM_SEQS
    )
    server = start_vllm(python, args, log_path=stack_logs / "vllm.log", max_num_seqs=TEST_MAX_NUM_SEQS)
    _startup_seconds["vllm"] = server.startup_seconds or 0.0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(stack_logs: Path) -> Iterator[S3Server]:
    """moto's S3 server on loopback with the responses bucket.

    Attributes: endpoint_url, bucket, buckets, region, access_key_id, secret_access_key, port, pid;
    client(timeout=5.0, retries=0) -> boto3 S3 client; env() -> AWS_* variables for a subprocess;
    stop()/start() (outage; objects are lost), pause()/resume() (hang; objects kept).
    Shared by the session: use unique keys, and use `s3_fault` in tests that stop or pause it.
    """
    server = S3Server(port=free_port(), log_path=stack_logs / "s3.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_fault(s3_server: S3Server) -> Iterator[S3Server]:
    """The session S3 server, for a test that stops or pauses it; running again after the test."""
    try:
        yield s3_server
    finally:
        s3_server.resume()
        if not s3_server.running:
            s3_server.start()


@pytest.fixture(scope="session")
def prometheus_server(vllm_server: VllmServer, stack_logs: Path) -> Iterator[PrometheusServer]:
    """Debian's Prometheus scraping the session vLLM every 10 s (job "vllm").

    Attributes: url, port, pid, config_path; query(expr) -> float (exactly one sample),
    query_vector(expr) -> [(labels, value)], targets_up() -> {job: bool},
    set_targets({job: "host:port"}) to scrape e.g. a gateway too (applied within ~5 s).
    """
    binary = _require(prometheus_binary)
    server = start_prometheus(
        binary,
        port=free_port(),
        targets={"vllm": vllm_server.base_url.removeprefix("http://")},
        state_dir=stack_logs / "prometheus",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., object]:
    """tools.stack.wait.wait_until(condition, *, timeout, interval=0.2, what="condition")."""
    return _wait_until


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that may be the first to need vLLM also pay its start-up (up to START_TIMEOUT)."""
    for item in items:
        needs_vllm = {"vllm_server", "prometheus_server"} & set(getattr(item, "fixturenames", ()))
        if needs_vllm and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(START_TIMEOUT + 300))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, seconds in _startup_seconds.items():
        terminalreporter.write_line(f"stack: {name} healthy after {seconds:.1f} s")
    for path in _log_dirs:
        terminalreporter.write_line(f"stack: server logs in {path}")
