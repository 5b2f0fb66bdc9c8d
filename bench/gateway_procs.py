"""The servers the gateway benchmark measures: the fast synthetic upstream, the gateway, LiteLLM's proxy
(in its own virtual environment) and the real vLLM (through tools/stack), each pinned to a CPU core.

Every server runs in its own session (process group) so that stopping it reaches its workers too; only
groups this module started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from gateway.testing.servers import free_port

LITELLM_VERSION = "1.108.7"
START_TIMEOUT = 120.0


class BenchSetupError(RuntimeError):
    """A server of the benchmark could not be installed or started; the message says why."""


def litellm_venv() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "eks-llm-inference" / "litellm-venv"


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server and its child processes."""
        root = psutil.Process(self.process.pid)
        return sum(proc.memory_info().rss for proc in [root, *root.children(recursive=True)])

    def cpu_seconds(self) -> float:
        root = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def stop(self, grace: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def place(cores: set[int] | None, fifo_priority: int = 0, *, children_inherit: bool = True) -> None:
    """This process on ``cores``; with ``fifo_priority`` > 0 also under SCHED_FIFO at that priority.

    ``children_inherit=False``: processes it forks start under the default policy (SCHED_RESET_ON_FORK),
    so only the servers given a priority explicitly run under SCHED_FIFO.
    """
    if cores:
        os.sched_setaffinity(0, cores)
    if fifo_priority > 0:
        policy = os.SCHED_FIFO if children_inherit else os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
        os.sched_setscheduler(0, policy, os.sched_param(fifo_priority))


def fifo_permitted() -> bool:
    """Whether this process may use SCHED_FIFO (root or CAP_SYS_NICE); its own policy is left as it was."""
    try:
        policy = os.sched_getscheduler(0)
        param = os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, policy, param)
    except (OSError, AttributeError):
        return False
    return True


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_healthy(server: Server, health_path: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchSetupError(f"{server.name} exited with {server.process.returncode}; "
                                  f"{server.log_path}:\n{_log_tail(server.log_path)}")
        try:
            if httpx.get(server.url + health_path, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise BenchSetupError(f"{server.name} was not healthy after {timeout:g} s; "
                          f"{server.log_path}:\n{_log_tail(server.log_path)}")


@contextmanager
def run_server(name: str, command: Sequence[str], *, port: int, health_path: str, log_dir: Path,
               cores: set[int] | None, env: Mapping[str, str] | None = None,
               timeout: float = START_TIMEOUT, fifo_priority: int = 0) -> Iterator[Server]:
    """Start ``command`` pinned to ``cores`` (None: not pinned), wait for ``health_path``, stop at exit."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=(lambda: place(cores, fifo_priority)) if cores or fifo_priority else None,
        )
    server = Server(name=name, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        wait_healthy(server, health_path, timeout)
        yield server
    finally:
        server.stop()


@contextmanager
def fake_upstream(log_dir: Path, cores: set[int] | None, *, model: str, tokens: int,
                  interval_ms: float, fifo_priority: int = 0) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "gateway.testing.fake_upstream", "--host", "127.0.0.1",
               "--port", str(port), "--model", model, "--tokens", str(tokens),
               "--interval-ms", str(interval_ms), "--loop", "uvloop"]
    with run_server("fake-upstream", command, port=port, health_path="/health", log_dir=log_dir,
                    cores=cores, fifo_priority=fifo_priority) as server:
        yield server


def gateway_env(upstream_url: str, model: str) -> dict[str, str]:
    """The gateway as deployed, except what would make it refuse the benchmark's own load."""
    return {
        "GATEWAY_UPSTREAM_URL": upstream_url,
        "GATEWAY_MODEL": model,
        # One client address sends every request: the per-client rate limit would refuse most of them.
        "GATEWAY_RATE_LIMIT_PER_SECOND": "0",
        # 200 streams plus warm-up must be admitted, and the real vLLM's queue (up to 200 - max-num-seqs)
        # must not trigger load shedding: the benchmark compares latency under the same load.
        "GATEWAY_MAX_IN_FLIGHT": "1024",
        "GATEWAY_SHED_QUEUE_WAITING": "100000",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextmanager
def gateway(log_dir: Path, cores: set[int] | None, *, upstream_url: str, model: str,
            fifo_priority: int = 0) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with run_server("gateway", command, port=port, health_path="/healthz", log_dir=log_dir, cores=cores,
                    env=gateway_env(upstream_url, model), fifo_priority=fifo_priority) as server:
        yield server


def litellm_installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists() or not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_litellm(venv: Path, version: str = LITELLM_VERSION) -> Path:
    """LiteLLM's proxy at ``version`` in its own virtual environment; returns its ``litellm`` script."""
    if litellm_installed_version(venv) == version:
        return venv / "bin" / "litellm"
    print(f"installing litellm[proxy]=={version} into {venv} ...", file=sys.stderr, flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={version}"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if install.returncode != 0 or litellm_installed_version(venv) != version:
        raise BenchSetupError(f"installing litellm[proxy]=={version} into {venv} failed:\n"
                              f"{install.stderr[-2000:]}")
    return venv / "bin" / "litellm"


def litellm_config(routes: Mapping[str, str]) -> str:
    """LiteLLM proxy config: each model name routed to an OpenAI-compatible base URL (``.../v1``)."""
    lines = ["model_list:"]
    for model, api_base in routes.items():
        lines += [
            f"  - model_name: {model}",
            "    litellm_params:",
            f"      model: openai/{model}",
            f"      api_base: {api_base}",
            "      api_key: none",
        ]
    lines += ["litellm_settings:", "  telemetry: false", "  drop_params: true"]
    return "\n".join(lines) + "\n"


@contextmanager
def litellm(log_dir: Path, cores: set[int] | None, *, script: Path, upstream_url: str,
            model: str, fifo_priority: int = 0) -> Iterator[Server]:
    port = free_port()
    config = log_dir / f"litellm-{model}.yaml"
    config.write_text(litellm_config({model: f"{upstream_url}/v1"}))
    command = [str(script), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1"]
    env = {
        # No network: the model price map is the one shipped in the wheel, no telemetry, quiet logs.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
        # The gateway authenticates no proxied request either: neither proxy pays for a key check.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    with run_server("litellm", command, port=port, health_path="/health/liveliness", log_dir=log_dir,
                    cores=cores, env=env, timeout=180.0, fifo_priority=fifo_priority) as server:
        yield server
