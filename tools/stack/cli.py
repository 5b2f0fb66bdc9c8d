"""`stack up | down | status`: the local stack of real services for developers.

`up` generates the tiny model, starts S3 (moto) with the responses bucket, Prometheus, vLLM (CPU build,
the dev overlay's flags) and the gateway wired to them, each in its own process group, and records them in
STATE_DIR/state.json. `down` stops exactly the processes recorded there (a pid is only signalled while it
still has the start time recorded for it). Exit codes: 0 done, 1 a service failed (nothing is left
running), 2 a bad state or missing tools (nothing was started).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tools.stack.env import REPO_ROOT, MissingToolError, cache_dir, prometheus_binary, vllm_python
from tools.stack.gateway_process import GatewayStartError, gateway_environment, start_gateway
from tools.stack.processes import PortInUseError, ProcessRecord, resolve_port, stop_group
from tools.stack.prometheus import PrometheusError, start_prometheus, write_repository_rules
from tools.stack.s3 import S3Server, S3StartError
from tools.stack.tiny_model import ensure_tiny_model
from tools.stack.vllm import (
    START_TIMEOUT,
    OverlayError,
    UnknownFlagError,
    VllmStartError,
    connect_vllm,
    dev_overlay_args,
    local_serving_args,
    start_vllm,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_STATE = 2

STATE_VERSION = 1
DEFAULT_STATE_DIR = REPO_ROOT / ".stack"
# Stop order: the gateway before what it calls, Prometheus last so it sees the others go.
STOP_ORDER = ("gateway", "vllm", "s3", "prometheus")


class StackError(RuntimeError):
    """A bad state reported to the user with EXIT_BAD_STATE."""


@dataclass
class State:
    """The state file: what `up` started, where it listens and where it logs."""

    path: Path
    services: dict[str, dict[str, object]]
    started_at: float

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": STATE_VERSION, "started_at": self.started_at, "services": self.services}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        temporary.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise StackError(
                f"the state file {path} is not valid JSON ({error}); remove it by hand"
            ) from error
        if not isinstance(payload, dict) or payload.get("version") != STATE_VERSION:
            raise StackError(f"the state file {path} is not one this version wrote; remove it by hand")
        return cls(path=path, services=dict(payload["services"]), started_at=float(payload["started_at"]))

    def records(self) -> dict[str, ProcessRecord]:
        """The processes this stack started (a reused vLLM has none)."""
        found = {}
        for name, service in self.services.items():
            process = service.get("process")
            if isinstance(process, dict):
                found[name] = ProcessRecord.from_json(process)
        return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="state file and logs (default: .stack/)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack and print its URLs")
    up.add_argument("--gateway-port", type=int, default=8080, help="0 picks a free port (default: 8080)")
    up.add_argument("--vllm-port", type=int, default=8000, help="0 picks a free port (default: 8000)")
    up.add_argument("--s3-port", type=int, default=9000, help="0 picks a free port (default: 9000)")
    up.add_argument("--prometheus-port", type=int, default=9090, help="0 picks a free port (default: 9090)")
    up.add_argument(
        "--max-num-seqs",
        type=int,
        default=4,
        help="vLLM's running-request cap (default 4, so a queue forms on 2 CPU cores; the overlay says 32)",
    )
    up.add_argument("--vllm-url", help="reuse an already running vLLM instead of starting one")
    up.add_argument("--no-gateway", action="store_true", help="start everything but the gateway")
    up.add_argument(
        "--vllm-timeout", type=float, default=START_TIMEOUT, help="seconds to wait for vLLM's /health"
    )
    commands.add_parser("down", help="stop what `up` started")
    commands.add_parser("status", help="show what runs and whether it answers")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    state_path: Path = options.state_dir.resolve() / "state.json"
    handlers: dict[str, Callable[[argparse.Namespace, Path], int]] = {
        "up": command_up,
        "down": command_down,
        "status": command_status,
    }
    try:
        return handlers[options.command](options, state_path)
    except (StackError, MissingToolError, PortInUseError, OverlayError, UnknownFlagError) as error:
        print(f"stack: {error}", file=sys.stderr)
        return EXIT_BAD_STATE


def command_up(options: argparse.Namespace, state_path: Path) -> int:
    previous = State.load(state_path)
    if previous is not None:
        alive = [name for name, record in previous.records().items() if record.is_alive()]
        if alive:
            raise StackError(
                f"the stack is already up ({', '.join(sorted(alive))} running, state file {state_path}); "
                "run `stack down` first"
            )
        print(
            f"stack: removing a stale state file {state_path} (none of its processes runs)", file=sys.stderr
        )
        state_path.unlink()

    # Everything that can be checked is checked before anything starts.
    python = None if options.vllm_url else vllm_python()
    prometheus = prometheus_binary()
    gateway_port = None if options.no_gateway else resolve_port(options.gateway_port, "the gateway")
    vllm_port = None if options.vllm_url else resolve_port(options.vllm_port, "vLLM")
    s3_port = resolve_port(options.s3_port, "S3")
    prometheus_port = resolve_port(options.prometheus_port, "Prometheus")
    overlay_args, overlay_source = dev_overlay_args(REPO_ROOT)
    local_serving_args(overlay_args, model_dir=Path("tiny-model"), port=0)  # an unmapped flag fails here

    state_dir = state_path.parent
    logs = state_dir / "logs"
    state = State(path=state_path, services={}, started_at=time.time())
    stoppers: list[Callable[[], None]] = []
    try:
        s3 = S3Server(port=s3_port, log_path=logs / "s3.log")
        stoppers.append(s3.stop)
        s3.start()
        state.services["s3"] = {
            "url": s3.endpoint_url,
            "bucket": s3.bucket,
            "region": s3.region,
            "process": _record_json(s3.record),
            "log": str(s3.log_path),
        }
        state.save()

        if options.vllm_url:
            vllm = connect_vllm(options.vllm_url, max_num_seqs=options.max_num_seqs)
            print(f"stack: reusing vLLM at {vllm.base_url} (model {vllm.model})")
        else:
            assert python is not None and vllm_port is not None
            print("stack: generating the tiny model (cached after the first run)")
            model_dir = ensure_tiny_model(python, cache_dir())
            args = local_serving_args(
                overlay_args, model_dir=model_dir, port=vllm_port, max_num_seqs=options.max_num_seqs
            )
            print(f"stack: starting vLLM with flags from {overlay_source} (about a minute)")
            vllm = start_vllm(
                python,
                args,
                log_path=logs / "vllm.log",
                max_num_seqs=options.max_num_seqs,
                timeout=options.vllm_timeout,
            )
            stoppers.append(vllm.stop)
            print(f"stack: vLLM healthy after {vllm.startup_seconds:.1f} s")
        state.services["vllm"] = {
            "url": vllm.base_url,
            "model": vllm.model,
            "max_num_seqs": vllm.max_num_seqs,
            "process": _record_json(vllm.record),
            "log": str(vllm.log_path) if vllm.log_path else None,
        }
        state.save()

        targets = {"vllm": vllm.base_url.removeprefix("http://")}
        if gateway_port is not None:
            admin_token = secrets.token_urlsafe(32)  # 43 characters; the gateway wants 32 or more
            gateway = start_gateway(
                port=gateway_port,
                log_path=logs / "gateway.log",
                settings_env=gateway_environment(
                    port=gateway_port,
                    upstream_url=vllm.base_url,
                    model=vllm.model,
                    s3=s3,
                    admin_token=admin_token,
                    prometheus_url=f"http://127.0.0.1:{prometheus_port}",
                ),
                admin_token=admin_token,
            )
            stoppers.append(gateway.stop)
            state.services["gateway"] = {
                "url": gateway.url,
                "admin_token": admin_token,
                "process": _record_json(gateway.record),
                "log": str(gateway.log_path),
            }
            state.save()
            targets["gateway"] = gateway.url.removeprefix("http://")

        (state_dir / "prometheus").mkdir(parents=True, exist_ok=True)
        rules = write_repository_rules(REPO_ROOT, state_dir / "prometheus" / "llm-inference.rules.yaml")
        prometheus_server = start_prometheus(
            prometheus, port=prometheus_port, targets=targets, state_dir=state_dir / "prometheus",
            rule_files=[rules],
        )
        stoppers.append(prometheus_server.stop)
        state.services["prometheus"] = {
            "url": prometheus_server.url,
            "process": _record_json(prometheus_server.record),
            "log": str(prometheus_server.log_path),
        }
        state.save()
    except (S3StartError, VllmStartError, GatewayStartError, PrometheusError, RuntimeError) as error:
        _rollback(stoppers, state_path)
        print(
            f"stack: {error}\nstack: stopped everything that had started; nothing is left running",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        _rollback(stoppers, state_path)
        print("stack: interrupted; stopped everything that had started", file=sys.stderr)
        return EXIT_FAILED
    except BaseException:
        _rollback(stoppers, state_path)  # never leave servers behind, whatever went wrong
        raise

    print(f"stack is up (state file {state_path})")
    _print_services(state)
    return EXIT_OK


def _record_json(record: ProcessRecord | None) -> dict[str, object] | None:
    return record.to_json() if record is not None else None


def _rollback(stoppers: list[Callable[[], None]], state_path: Path) -> None:
    for stop in reversed(stoppers):
        stop()
    state_path.unlink(missing_ok=True)


def command_down(options: argparse.Namespace, state_path: Path) -> int:
    state = State.load(state_path)
    if state is None:
        print(f"stack: nothing to stop (no state file at {state_path})")
        return EXIT_OK
    records = state.records()
    for name in sorted(records, key=_stop_rank):
        record = records[name]
        if record.is_alive():
            stop_group(record, grace=45.0)
            print(f"stack: stopped {name} (pid {record.pid})")
        else:
            print(f"stack: {name} (pid {record.pid}) had already exited")
    for name in sorted(set(state.services) - set(records)):
        print(f"stack: left {name} at {state.services[name].get('url')} running (not started by this stack)")
    state_path.unlink()
    return EXIT_OK


def _stop_rank(name: str) -> int:
    return STOP_ORDER.index(name) if name in STOP_ORDER else len(STOP_ORDER)


def command_status(options: argparse.Namespace, state_path: Path) -> int:
    state = State.load(state_path)
    if state is None:
        print(f"stack is down (no state file at {state_path})")
        return EXIT_FAILED
    records = state.records()
    healthy = True
    for name in sorted(state.services, key=_stop_rank):
        service = state.services[name]
        record = records.get(name)
        alive = record.is_alive() if record is not None else _answers(str(service["url"]))
        healthy = healthy and alive
        pid = f"pid {record.pid}" if record is not None else "reused"
        print(f"  {name:<11} {service['url']:<28} {pid:<11} {'running' if alive else 'NOT RUNNING'}")
    print(f"stack is {'up' if healthy else 'degraded'} (state file {state_path})")
    return EXIT_OK if healthy else EXIT_FAILED


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


def _print_services(state: State) -> None:
    services = state.services
    if "gateway" in services:
        print(
            f"  gateway     {services['gateway']['url']}  (admin token {services['gateway']['admin_token']})"
        )
    print(f"  vllm        {services['vllm']['url']}  (model {services['vllm']['model']})")
    print(f"  s3          {services['s3']['url']}  (bucket {services['s3']['bucket']})")
    print(f"  prometheus  {services['prometheus']['url']}")
    logs = ", ".join(str(service["log"]) for service in services.values() if service.get("log"))
    print(f"  logs        {logs}")


if __name__ == "__main__":
    sys.exit(main())
