"""The real vLLM (CPU build) serving the tiny model, started with the dev overlay's serving flags.

The flags come from the rendered `overlays/dev` vLLM Deployment, so the local server runs what the cluster
runs; flags that only make sense on a GPU or with the production model are mapped by SERVING_FLAG_RULES
(documented in tools/stack/README.md, whose table `python -m tools.stack.vllm --flag-table` prints).
A flag that is not in the table is an error: someone has to decide what it means locally.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import httpx
import psutil
import yaml

from tools.stack.env import kubectl_binary
from tools.stack.processes import ProcessRecord, describe_group, log_tail, start_process, stop_group
from tools.validate.model import Resource
from tools.validate.vllm_args import vllm_commands

CPU_KVCACHE_GIB = "1"
LOCAL_MAX_MODEL_LEN = "512"
LOCAL_DTYPE = "bfloat16"
LOCAL_HOST = "127.0.0.1"
# Healthy in ~45-60 s on an idle 2-core machine; several minutes when other heavy jobs share the cores.
START_TIMEOUT = 540.0


class FlagAction(Enum):
    KEEP = "keep"  # passed through unchanged
    DROP = "drop"  # left out locally
    REPLACE = "replace"  # the value is replaced by `local_value`
    CALLER = "caller"  # kept, unless the caller gives a value (tests use --max-num-seqs 4)
    MODEL = "model"  # the tiny model's directory
    PORT = "port"  # the port the local server listens on


@dataclass(frozen=True)
class FlagRule:
    flag: str
    action: FlagAction
    why: str
    takes_value: bool = True
    local_value: str | None = None
    # Added when the overlay does not set the flag (replacements the CPU build needs either way).
    always: bool = False


SERVING_FLAG_RULES: tuple[FlagRule, ...] = (
    FlagRule(
        "--model", FlagAction.MODEL, "the tiny generated model's directory replaces the S3 URI", always=True
    ),
    FlagRule("--served-model-name", FlagAction.KEEP, "clients and the gateway ask for the production name"),
    FlagRule(
        "--quantization", FlagAction.DROP, "the tiny model is bfloat16; awq_marlin needs a CUDA GPU (≥ 8.0)"
    ),
    FlagRule(
        "--load-format", FlagAction.DROP, "runai_streamer streams from S3; the tiny model is a local dir"
    ),
    FlagRule(
        "--model-loader-extra-config", FlagAction.DROP, "the streamer's tuning; the local dir loads from disk"
    ),
    FlagRule(
        "--gpu-memory-utilization",
        FlagAction.DROP,
        f"no GPU; the CPU build sizes its KV cache from VLLM_CPU_KVCACHE_SPACE={CPU_KVCACHE_GIB} (GiB)",
    ),
    FlagRule("--kv-cache-dtype", FlagAction.DROP, "fp8 KV cache is a GPU kernel option"),
    FlagRule("--tensor-parallel-size", FlagAction.DROP, "one CPU process serves the tiny model"),
    FlagRule("--download-dir", FlagAction.DROP, "nothing is downloaded locally"),
    FlagRule("--otlp-traces-endpoint", FlagAction.DROP, "no trace collector runs locally"),
    FlagRule(
        "--max-model-len",
        FlagAction.REPLACE,
        "the tiny model's context is 1024 positions; 512 keeps the CPU KV cache small",
        local_value=LOCAL_MAX_MODEL_LEN,
        always=True,
    ),
    FlagRule(
        "--max-num-seqs",
        FlagAction.CALLER,
        "tests and `stack up` use 4, so that a fifth concurrent request waits in a real queue",
    ),
    FlagRule("--max-num-batched-tokens", FlagAction.KEEP, "scheduler budget, meaningful on CPU too"),
    FlagRule("--enable-chunked-prefill", FlagAction.KEEP, "scheduler behaviour", takes_value=False),
    FlagRule("--enable-prefix-caching", FlagAction.KEEP, "scheduler behaviour", takes_value=False),
    FlagRule(
        "--dtype",
        FlagAction.REPLACE,
        "the tiny model's weights are bfloat16 (AWQ checkpoints say float16)",
        local_value=LOCAL_DTYPE,
        always=True,
    ),
    FlagRule("--shutdown-timeout", FlagAction.KEEP, "draining on SIGTERM behaves as in the cluster"),
    FlagRule(
        "--enforce-eager",
        FlagAction.KEEP,
        "vLLM 0.32's CPU build recompiles on every start (~60 s here: its compile cache fails to load); "
        "the tiny model gains nothing from compiled graphs",
        takes_value=False,
        always=True,
    ),
    FlagRule(
        "--distributed-executor-backend",
        FlagAction.DROP,
        "the CPU build runs its model worker in a process of its own whatever this says (its OpenMP "
        "binding needs the mp executor); start_vllm keeps the engine core on the worker's cores",
    ),
    FlagRule("--host", FlagAction.REPLACE, "loopback only", local_value=LOCAL_HOST, always=True),
    FlagRule("--port", FlagAction.PORT, "a free local port (the container's 8000 may be taken)", always=True),
    FlagRule("--uvicorn-log-level", FlagAction.KEEP, "logging only"),
    FlagRule("--disable-log-stats", FlagAction.KEEP, "logging only", takes_value=False),
    FlagRule("--enable-log-requests", FlagAction.KEEP, "logging only", takes_value=False),
)

# Until overlays/dev exists in the checkout, the dev Deployment's args as the design describes them.
FALLBACK_DEV_ARGS: tuple[str, ...] = (
    "--model=s3://eks-llm-inference-models-000000000000/mistral-7b-instruct-awq",
    "--served-model-name=mistral-7b-instruct",
    "--load-format=runai_streamer",
    "--quantization=awq_marlin",
    "--max-model-len=4096",
    "--max-num-seqs=32",
    "--gpu-memory-utilization=0.90",
    "--shutdown-timeout=30",
    "--port=8000",
)


class UnknownFlagError(ValueError):
    """The overlay uses a vLLM flag that SERVING_FLAG_RULES does not map."""


class OverlayError(RuntimeError):
    """The overlay could not be rendered or has no vLLM Deployment."""


class VllmStartError(RuntimeError):
    """vLLM exited or did not become healthy; the message carries the log's tail."""


def rules_by_flag() -> dict[str, FlagRule]:
    return {rule.flag: rule for rule in SERVING_FLAG_RULES}


def split_flags(args: Sequence[str]) -> list[tuple[str, str | None]]:
    """(flag, value) pairs from `--flag=value` / `--flag value` / `--switch` items.

    A leading positional item (`vllm serve MODEL ...`) is the model.
    """
    rules = rules_by_flag()
    pairs: list[tuple[str, str | None]] = []
    items = list(args)
    if items and not items[0].startswith("--"):
        pairs.append(("--model", items.pop(0)))
    index = 0
    while index < len(items):
        item = items[index]
        if not item.startswith("--"):
            raise UnknownFlagError(f"unexpected positional argument {item!r} in the vLLM args")
        flag, equals, inline_value = item.partition("=")
        rule = rules.get(flag)
        if rule is None:
            raise UnknownFlagError(
                f"the overlay's vLLM flag {flag} has no local mapping: add a FlagRule for it to "
                "SERVING_FLAG_RULES in tools/stack/vllm.py and a row to the table in tools/stack/README.md"
            )
        if not rule.takes_value:
            if equals:
                raise UnknownFlagError(f"vLLM flag {flag} takes no value, got {item!r}")
            pairs.append((flag, None))
        elif equals:
            pairs.append((flag, inline_value))
        else:
            if index + 1 >= len(items):
                raise UnknownFlagError(f"vLLM flag {flag} needs a value")
            index += 1
            pairs.append((flag, items[index]))
        index += 1
    return pairs


def local_serving_args(
    overlay_args: Sequence[str], *, model_dir: Path, port: int, max_num_seqs: int | None = None
) -> list[str]:
    """Map the overlay's vLLM args to the local CPU server's, in `--flag value` form.

    The overlay's order is kept; flags the local server always needs and the overlay lacks come last, in
    SERVING_FLAG_RULES order.
    """
    rules = rules_by_flag()
    out: list[str] = []
    seen: set[str] = set()
    for flag, value in split_flags(overlay_args):
        rule = rules[flag]
        seen.add(flag)
        local = _local_value(rule, value, model_dir=model_dir, port=port, max_num_seqs=max_num_seqs)
        if rule.action is FlagAction.DROP:
            continue
        out.extend([flag] if local is None else [flag, local])
    for rule in SERVING_FLAG_RULES:
        if rule.flag in seen:
            continue
        if rule.always or (rule.action is FlagAction.CALLER and max_num_seqs is not None):
            local = _local_value(rule, None, model_dir=model_dir, port=port, max_num_seqs=max_num_seqs)
            out.extend([rule.flag] if local is None else [rule.flag, local])
    return out


def _local_value(
    rule: FlagRule, value: str | None, *, model_dir: Path, port: int, max_num_seqs: int | None
) -> str | None:
    match rule.action:
        case FlagAction.KEEP | FlagAction.DROP:
            return value
        case FlagAction.REPLACE:
            return rule.local_value
        case FlagAction.CALLER:
            return str(max_num_seqs) if max_num_seqs is not None else value
        case FlagAction.MODEL:
            return str(model_dir)
        case FlagAction.PORT:
            return str(port)


def flag_table_markdown() -> str:
    """The README's table of SERVING_FLAG_RULES."""
    lines = ["| flag in the overlay | locally | why |", "| --- | --- | --- |"]
    for rule in SERVING_FLAG_RULES:
        match rule.action:
            case FlagAction.REPLACE:
                local = f"`{rule.local_value}`"
            case FlagAction.MODEL:
                local = "the tiny model's directory"
            case FlagAction.PORT:
                local = "a free port"
            case FlagAction.CALLER:
                local = "kept, or the caller's value"
            case _:
                local = rule.action.value
        if rule.always:
            local += " (added if absent)"
        lines.append(f"| `{rule.flag}` | {local} | {rule.why} |")
    return "\n".join(lines) + "\n"


# --- the dev overlay ---------------------------------------------------------------------------------


def render_overlay(overlay_dir: Path, *, timeout: float = 60.0) -> list[dict[str, object]]:
    """`kubectl kustomize overlay_dir` as a list of documents."""
    try:
        result = subprocess.run(
            [str(kubectl_binary()), "kustomize", str(overlay_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise OverlayError(f"rendering {overlay_dir} took longer than {timeout:g} s") from error
    if result.returncode != 0:
        raise OverlayError(f"rendering {overlay_dir} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]


def vllm_container_args(documents: Sequence[Mapping[str, object]]) -> list[str]:
    """What vLLM's parser sees in the (single) Deployment container that runs vLLM.

    The container is found and its tokens split (command/args, `vllm serve`, `sh -c`) by the gate's
    parser, tools.validate.vllm_args, so the stack and the gate read the manifests the same way.
    """
    found = [
        command
        for index, doc in enumerate(documents)
        if doc.get("kind") == "Deployment"
        for command in vllm_commands(Resource(doc=dict(doc), overlay="dev", index=index))
    ]
    if len(found) != 1:
        where = ", ".join(f"{c.resource.name}/containers[{c.container_index}]" for c in found) or "none"
        raise OverlayError(f"expected exactly one vLLM container in the overlay, found: {where}")
    return found[0].args


def dev_overlay_args(repo_root: Path) -> tuple[list[str], str]:
    """The dev overlay's vLLM args and where they came from (the overlay, or the fallback list)."""
    overlay = repo_root / "overlays" / "dev"
    if not (overlay / "kustomization.yaml").is_file():
        return list(FALLBACK_DEV_ARGS), "fallback list (overlays/dev not in this checkout)"
    return vllm_container_args(render_overlay(overlay)), str(overlay)


def served_model_name(args: Sequence[str]) -> str:
    for flag, value in split_flags(args):
        if flag == "--served-model-name" and value:
            return value
    raise OverlayError("the vLLM args have no --served-model-name")


# --- the server --------------------------------------------------------------------------------------


@dataclass
class VllmServer:
    """A vLLM server on loopback: one this process started (`record` set) or one it reuses."""

    base_url: str
    model: str
    max_num_seqs: int
    log_path: Path | None = None
    record: ProcessRecord | None = None
    startup_seconds: float | None = None
    # The CPUs its engine core process was moved to (keep_engine_core_with_worker), empty if not moved
    engine_core_cpus: frozenset[int] = frozenset()
    args: list[str] = field(default_factory=list)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def metrics_url(self) -> str:
        return f"{self.base_url}/metrics"

    @property
    def port(self) -> int:
        return httpx.URL(self.base_url).port or 80

    @property
    def pid(self) -> int | None:
        return self.record.pid if self.record else None

    @property
    def owned(self) -> bool:
        return self.record is not None

    def stop(self, *, grace: float = 40.0) -> None:
        """SIGTERM then SIGKILL the server's process group (a reused server is left running)."""
        if self.record is not None:
            stop_group(self.record, grace=grace, popen=self.popen)


def vllm_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["VLLM_CPU_KVCACHE_SPACE"] = CPU_KVCACHE_GIB
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Nothing may be fetched from a model hub; the model is a local directory.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def is_healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_vllm(
    python: Path,
    args: Sequence[str],
    *,
    log_path: Path,
    max_num_seqs: int,
    timeout: float = START_TIMEOUT,
    environment: Mapping[str, str] | None = None,
    cpus: frozenset[int] | None = None,
) -> VllmServer:
    """Start `python -m vllm.entrypoints.openai.api_server ARGS` and wait for /health.

    `args` are local serving args (from local_serving_args); `environment` is added to vLLM's; `cpus`
    keeps the server and every process it starts on those CPUs, its model worker bound to them. Raises
    VllmStartError when the server exits or is not healthy within `timeout` seconds (it is stopped then;
    the message says what each of its processes was doing).
    """
    pairs = dict(split_flags(args))
    base_url = f"http://{pairs['--host']}:{pairs['--port']}"
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", *args]
    started = time.monotonic()
    env = {**vllm_environment(), **(environment or {})}
    if cpus:
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(cpu) for cpu in sorted(cpus))
    popen, record = start_process("vllm", command, log_path=log_path, env=env)
    if cpus:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(popen.pid, cpus)  # before its imports: the processes it starts inherit it
    server = VllmServer(
        base_url=base_url,
        model=served_model_name(args),
        max_num_seqs=max_num_seqs,
        log_path=log_path,
        record=record,
        args=list(args),
        popen=popen,
    )
    deadline = started + timeout
    while not is_healthy(base_url):
        code = popen.poll()
        if code is not None:
            server.stop()
            raise VllmStartError(
                f"vLLM exited with code {code} while starting; {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            # Both before stopping, which adds vLLM's own shutdown tracebacks and ends the processes.
            tail = log_tail(log_path)
            processes = describe_group(popen.pid)
            try:
                server.stop()
            except RuntimeError as error:  # not even SIGKILL ended it: say so beside why it was stopped
                processes += f"\n{error}"
            raise VllmStartError(
                f"vLLM was not healthy after {timeout:g} s; its processes:\n{processes}\n{log_path}:\n{tail}"
            )
        time.sleep(0.5)
    server.startup_seconds = time.monotonic() - started
    server.engine_core_cpus = keep_engine_core_with_worker(popen.pid)
    return server


ENGINE_CORE_NAME = "VLLM::EngineCore"
WORKER_NAME = "VLLM::Worker"


def keep_engine_core_with_worker(api_server_pid: int) -> frozenset[int]:
    """Move every thread of the server's engine core process to the CPUs its model worker is bound to;
    returns those CPUs (empty when either process is not found, and nothing is moved).

    The CPU build binds the worker's OpenMP threads to its cores and leaves the other cores to the rest
    (its log: "core ids=[0]", "reserved_cpus=[1]"), but not the engine core process, which waits for
    each step's result in a spin (shared-memory queue, sched_yield). On two cores that spin runs on the
    reserved core beside the API server, which then gets about a tenth of it: measured with 64 clients,
    the API server at 11-13 % CPU, /metrics answers up to 9 s late, requests answered in waves with the
    engine idle in between and its gauges reading 0 while 64 requests were in flight. With the engine
    core on the worker's core, where its spin yields to the worker: /metrics in 0.02-0.04 s, the gauges
    steady at 4 running and 60 waiting, throughput steady (5.5 requests/s against about 5 in waves).
    """
    try:
        descendants = psutil.Process(api_server_pid).children(recursive=True)
        engines = [process for process in descendants if process.name() == ENGINE_CORE_NAME]
        workers = [process for process in descendants if process.name() == WORKER_NAME]
        worker_cpus = frozenset(cpu for worker in workers for cpu in worker.cpu_affinity())
        if not engines or not worker_cpus:
            return frozenset()
        for engine in engines:
            for thread in engine.threads():
                os.sched_setaffinity(thread.id, worker_cpus)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return frozenset()  # the server is exiting: its next health check says so
    return worker_cpus


def connect_vllm(base_url: str, *, max_num_seqs: int) -> VllmServer:
    """A VllmServer for an already running server (not stopped by us); its first served model is used."""
    base_url = base_url.rstrip("/")
    if not is_healthy(base_url):
        raise VllmStartError(f"no healthy vLLM at {base_url} (GET /health failed)")
    models = httpx.get(f"{base_url}/v1/models", timeout=5.0).json()["data"]
    if not models:
        raise VllmStartError(f"the vLLM at {base_url} serves no model")
    return VllmServer(base_url=base_url, model=str(models[0]["id"]), max_num_seqs=max_num_seqs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.stack.vllm", description="Show how the dev overlay's vLLM flags map locally."
    )
    parser.add_argument("--flag-table", action="store_true", help="print the mapping table (markdown)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    options = parser.parse_args(argv)
    if options.flag_table:
        sys.stdout.write(flag_table_markdown())
        return 0
    try:
        args, source = dev_overlay_args(options.repo)
        local = local_serving_args(args, model_dir=Path("<tiny model>"), port=0)
    except (OverlayError, UnknownFlagError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# from {source}")
    print("overlay:", " ".join(args))
    print("local:  ", " ".join(local))
    return 0


if __name__ == "__main__":
    sys.exit(main())
