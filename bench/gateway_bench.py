"""Gateway benchmark: the latency the gateway adds to streaming chat completions, next to LiteLLM's proxy.

For each upstream (the fast synthetic upstream, which isolates the proxy, and the real vLLM serving the
tiny model) and each number of concurrent streams (1, 50, 200), the same load goes directly to the
upstream, through the gateway and through LiteLLM's proxy, interleaved round by round (direct, gateway,
litellm, direct, ...) so that noise hits all three alike. Overhead is (proxied - direct) per percentile,
for the time to the first token and for the whole stream. The gateway's resident memory is sampled over
10,000 requests. The proxy under test runs on its own core; the load generator and the upstream share
the other one. bench/README.md ("Gateway") describes the method and the last results.

    python -m bench.gateway_bench                       # the full run (~15 minutes)
    python -m bench.gateway_bench --quick --no-litellm --no-vllm   # a few seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

from bench import gateway_procs as procs
from bench.gateway_loadgen import CellResult, run_cell
from tools.stack.env import MissingToolError
from tools.stack.vllm import OverlayError, VllmStartError

TARGETS = ("direct", "gateway", "litellm")
PROXIES = ("gateway", "litellm")
SYNTHETIC = "synthetic"
VLLM = "vllm"
SYNTHETIC_MODEL = "fake-model"
VLLM_START_TIMEOUT = 600.0  # ~50 s on an idle 2-core machine, minutes on a busy one

TABLE_COLUMNS = (
    "upstream", "streams", "target", "requests", "errors", "req_per_s",
    "ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms",
    "added_ttft_p50_ms", "added_ttft_p99_ms", "added_total_p50_ms", "added_total_p99_ms",
    "proxy_cpu_ms_per_req",
)
OVERHEAD_COLUMNS = (
    "upstream", "streams",
    "gateway_added_ttft_p50_ms", "gateway_added_ttft_p99_ms",
    "gateway_added_total_p50_ms", "gateway_added_total_p99_ms",
    "litellm_added_ttft_p50_ms", "litellm_added_ttft_p99_ms",
    "litellm_added_total_p50_ms", "litellm_added_total_p99_ms",
    "ratio_ttft_p50", "ratio_total_p50", "ratio_total_p99",
)

# Acceptance targets (the gateway issue), judged on the synthetic upstream at 50 streams.
TARGET_STREAMS = 50
TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
TARGET_RATIO = 3.0
TARGET_MEMORY_GROWTH = 0.10


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    rounds: int
    min_requests: int  # per cell
    requests_per_stream: int  # a cell runs max(min_requests, streams * requests_per_stream)
    vllm_min_requests: int
    vllm_requests_per_stream: int
    vllm_rounds: int
    vllm_warmup_per_stream: int  # the real vLLM's seconds of queueing dwarf a connection's set-up
    time_limit: float  # seconds per cell; requests already sent finish
    warmup_per_stream: int  # unrecorded requests per stream before each cell (opens the connections)
    warmup_max: int  # ... but at most this many
    memory_warmup: int
    memory_requests: int
    memory_chunks: int
    memory_concurrency: int
    memory_tokens: int  # shorter streams than the latency cells': 10,000 requests fit the time budget
    tokens: int
    interval_ms: float

    def stream_seconds(self) -> float:
        """How long one synthetic stream lasts: its tokens on the upstream's clock."""
        return (self.tokens - 1) * self.interval_ms / 1000

    def requests(self, upstream: str, streams: int) -> int:
        if upstream == VLLM:
            return max(self.vllm_min_requests, streams * self.vllm_requests_per_stream)
        return max(self.min_requests, streams * self.requests_per_stream)


FULL_PLAN = Plan(concurrency=(1, 50, 200), rounds=4, min_requests=60, requests_per_stream=10,
                 vllm_min_requests=20, vllm_requests_per_stream=1, vllm_rounds=2,
                 vllm_warmup_per_stream=0, time_limit=15.0, warmup_per_stream=1, warmup_max=50,
                 memory_warmup=500, memory_requests=10_000, memory_chunks=10, memory_concurrency=50,
                 memory_tokens=8, tokens=32, interval_ms=20.0)
QUICK_PLAN = Plan(concurrency=(1, 50, 200), rounds=1, min_requests=10, requests_per_stream=1,
                  vllm_min_requests=5, vllm_requests_per_stream=1, vllm_rounds=1,
                  vllm_warmup_per_stream=0, time_limit=5.0, warmup_per_stream=0, warmup_max=0,
                  memory_warmup=50, memory_requests=300, memory_chunks=3, memory_concurrency=20,
                  memory_tokens=8, tokens=32, interval_ms=20.0)


@dataclass
class Cell:
    upstream: str
    streams: int
    target: str
    round: int
    result: CellResult
    proxy_cpu_seconds: float | None


@dataclass
class MemoryRun:
    requests: int
    tokens: int
    concurrency: int
    warmup: int
    baseline_rss_mib: float
    final_rss_mib: float
    peak_rss_mib: float
    growth: float  # (final - baseline) / baseline
    samples_mib: list[float] = field(default_factory=list)
    errors: int = 0


# --- statistics ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (the 'inclusive' method); nan when there is no value."""
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[int(pct) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3) if not math.isnan(seconds) else math.nan


@dataclass(frozen=True)
class Pooled:
    requests: int
    errors: int
    req_per_s: float
    ttft_p50: float
    ttft_p99: float
    total_p50: float
    total_p99: float
    proxy_cpu_ms_per_req: float | None


def pool(cells: Sequence[Cell]) -> Pooled:
    """All rounds of one (upstream, streams, target) together."""
    ttft = [s.ttft for c in cells for s in c.result.samples]
    total = [s.total for c in cells for s in c.result.samples]
    ok = len(total)
    wall = sum(c.result.wall_seconds for c in cells)
    cpu = [c.proxy_cpu_seconds for c in cells if c.proxy_cpu_seconds is not None]
    return Pooled(
        requests=sum(c.result.requests for c in cells),
        errors=sum(c.result.errors for c in cells),
        req_per_s=round(ok / wall, 1) if wall > 0 else 0.0,
        ttft_p50=_ms(percentile(ttft, 50)), ttft_p99=_ms(percentile(ttft, 99)),
        total_p50=_ms(percentile(total, 50)), total_p99=_ms(percentile(total, 99)),
        proxy_cpu_ms_per_req=round(sum(cpu) * 1000 / ok, 2) if cpu and ok else None,
    )


def ratio(litellm_added: float, gateway_added: float) -> float | None:
    """LiteLLM's added latency over the gateway's; None when the gateway's is not above zero (noise)."""
    if math.isnan(litellm_added) or math.isnan(gateway_added) or gateway_added <= 0:
        return None
    return round(litellm_added / gateway_added, 1)


def build_tables(cells: Sequence[Cell]) -> tuple[list[list[object]], list[list[object]]]:
    keys: list[tuple[str, int]] = []
    for cell in cells:
        if (cell.upstream, cell.streams) not in keys:
            keys.append((cell.upstream, cell.streams))
    rows: list[list[object]] = []
    overhead_rows: list[list[object]] = []
    for upstream, streams in keys:
        pooled: dict[str, Pooled] = {}
        for target in TARGETS:
            chosen = [c for c in cells if (c.upstream, c.streams, c.target) == (upstream, streams, target)]
            if chosen:
                pooled[target] = pool(chosen)
        direct = pooled["direct"]
        added: dict[str, tuple[float, float, float, float]] = {}
        for target, p in pooled.items():
            delta = (
                round(p.ttft_p50 - direct.ttft_p50, 3), round(p.ttft_p99 - direct.ttft_p99, 3),
                round(p.total_p50 - direct.total_p50, 3), round(p.total_p99 - direct.total_p99, 3),
            ) if target != "direct" else (math.nan,) * 4
            added[target] = delta
            rows.append([upstream, streams, target, p.requests, p.errors, p.req_per_s, p.ttft_p50,
                         p.ttft_p99, p.total_p50, p.total_p99, *delta, p.proxy_cpu_ms_per_req])
        gw = added.get("gateway", (math.nan,) * 4)
        ll = added.get("litellm", (math.nan,) * 4)
        overhead_rows.append([upstream, streams, *gw, *ll, ratio(ll[0], gw[0]), ratio(ll[2], gw[2]),
                              ratio(ll[3], gw[3])])
    return rows, overhead_rows


NOISE_COLUMNS = ("upstream", "streams", "rounds", "direct_ttft_p50_ms", "direct_ttft_p99_ms",
                 "direct_total_p50_ms", "direct_total_p99_ms")


def noise_rows(cells: Sequence[Cell]) -> list[list[object]]:
    """The measurement's resolution: direct against direct, odd rounds pooled against even rounds.

    Both halves ran the same load on the same upstream, so any difference is the machine's noise; an
    added latency smaller than it is not resolved by this run. Needs at least two rounds.
    """
    rows: list[list[object]] = []
    keys = list(dict.fromkeys((c.upstream, c.streams) for c in cells if c.target == "direct"))
    for upstream, streams in keys:
        direct = [c for c in cells if (c.upstream, c.streams, c.target) == (upstream, streams, "direct")]
        if len(direct) < 2:
            continue
        odd, even = pool(direct[0::2]), pool(direct[1::2])
        rows.append([upstream, streams, len(direct),
                     round(abs(odd.ttft_p50 - even.ttft_p50), 3), round(abs(odd.ttft_p99 - even.ttft_p99), 3),
                     round(abs(odd.total_p50 - even.total_p50), 3),
                     round(abs(odd.total_p99 - even.total_p99), 3)])
    return rows


def _cell_text(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:g}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell_text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TargetCheck:
    name: str
    value: float | None
    limit: str
    met: bool | None  # None: not measured in this run


def check_targets(overhead_rows: Sequence[Sequence[object]], memory: MemoryRun | None) -> list[TargetCheck]:
    row = next((r for r in overhead_rows if r[0] == SYNTHETIC and r[1] == TARGET_STREAMS), None)
    checks: list[TargetCheck] = []
    by_name = dict(zip(OVERHEAD_COLUMNS, row, strict=True)) if row else {}

    def at_most(name: str, column: str, limit: float) -> None:
        value = by_name.get(column)
        measured = isinstance(value, float) and not math.isnan(value)
        checks.append(TargetCheck(name, value if measured else None, f"<= {limit:g} ms",  # type: ignore[arg-type]
                                  value <= limit if measured else None))  # type: ignore[operator]

    at_most("gateway added total p50 @50 streams (synthetic)", "gateway_added_total_p50_ms", TARGET_P50_MS)
    at_most("gateway added total p99 @50 streams (synthetic)", "gateway_added_total_p99_ms", TARGET_P99_MS)
    at_most("gateway added TTFT p50 @50 streams (synthetic)", "gateway_added_ttft_p50_ms", TARGET_P50_MS)
    at_most("gateway added TTFT p99 @50 streams (synthetic)", "gateway_added_ttft_p99_ms", TARGET_P99_MS)
    for column, label in (("ratio_total_p50", "total p50"), ("ratio_ttft_p50", "TTFT p50")):
        litellm_column = column.replace("ratio_", "litellm_added_") + "_ms"
        litellm_value = by_name.get(litellm_column)
        value = by_name.get(column)
        if not isinstance(litellm_value, float) or math.isnan(litellm_value):
            checks.append(TargetCheck(f"LiteLLM/gateway added {label} @50 streams", None,
                                      f">= {TARGET_RATIO:g}x", None))
        elif value is None:  # the gateway added nothing measurable
            checks.append(TargetCheck(f"LiteLLM/gateway added {label} @50 streams", None,
                                      f">= {TARGET_RATIO:g}x", litellm_value > 0))
        else:
            checks.append(TargetCheck(f"LiteLLM/gateway added {label} @50 streams", float(value),  # type: ignore[arg-type]
                                      f">= {TARGET_RATIO:g}x", float(value) >= TARGET_RATIO))  # type: ignore[arg-type]
    if memory is None:
        checks.append(TargetCheck("gateway RSS growth", None, f"< {TARGET_MEMORY_GROWTH:.0%}", None))
    else:
        checks.append(TargetCheck(f"gateway RSS growth over {memory.requests} requests",
                                  round(memory.growth * 100, 2), f"< {TARGET_MEMORY_GROWTH:.0%}",
                                  memory.growth < TARGET_MEMORY_GROWTH))
    return checks


# --- the machine ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine() -> dict[str, object]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
    }


# --- the run -------------------------------------------------------------------------------------------


# Real-time priority for the measured processes when the machine allows it: on a shared machine, other
# jobs then run only while these sleep, instead of taking the core for a scheduler slice (milliseconds)
# in the middle of a stream. vLLM is left out: its OpenMP threads spin.
FIFO_PRIORITY = 10


@dataclass
class Cores:
    proxy: set[int] | None
    load: set[int] | None
    fifo_priority: int = 0


def choose_cores(pin: bool, proxy_core: int, load_core: int, realtime: bool = True) -> Cores:
    available = os.sched_getaffinity(0)
    priority = FIFO_PRIORITY if realtime and procs.fifo_permitted() else 0
    if not pin or proxy_core not in available or load_core not in available or proxy_core == load_core:
        return Cores(proxy=None, load=None, fifo_priority=priority)
    return Cores(proxy={proxy_core}, load={load_core}, fifo_priority=priority)


@contextmanager
def pinned(cores: set[int] | None, fifo_priority: int = 0) -> Iterator[None]:
    """This process (the load generator) on ``cores``, at ``fifo_priority``, for the duration."""
    before = os.sched_getaffinity(0)
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    # The real vLLM, started from here, must not inherit the priority (its OpenMP threads spin).
    procs.place(cores, fifo_priority, children_inherit=False)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        os.sched_setscheduler(0, policy, param)


def _progress(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


async def measure(upstream: str, urls: dict[str, str], model: str, plan: Plan,
                  proxies: dict[str, procs.Server]) -> list[Cell]:
    cells: list[Cell] = []
    rounds = plan.vllm_rounds if upstream == VLLM else plan.rounds
    per_stream = plan.vllm_warmup_per_stream if upstream == VLLM else plan.warmup_per_stream
    for round_index in range(rounds):
        for streams in plan.concurrency:
            for target in TARGETS:
                if target not in urls:
                    continue
                server = proxies.get(target)
                warmup = min(streams * per_stream, plan.warmup_max)
                cpu_before = server.cpu_seconds() if server else None
                result = await run_cell(urls[target], model, concurrency=streams,
                                        requests=plan.requests(upstream, streams),
                                        time_limit=plan.time_limit, warmup=warmup, max_tokens=plan.tokens,
                                        spread=plan.stream_seconds() if upstream == SYNTHETIC else 0.0)
                cpu = server.cpu_seconds() - cpu_before if server and cpu_before is not None else None
                # The warm-up's CPU is in the delta too: scale to the recorded share of the requests.
                if cpu is not None and result.requests:
                    cpu *= result.requests / (result.requests + warmup)
                cells.append(Cell(upstream, streams, target, round_index + 1, result, cpu))
                p = pool([cells[-1]])
                _progress(f"{upstream} streams={streams} {target} round {round_index + 1}: "
                          f"{p.requests} req, {p.errors} errors, total p50 {p.total_p50} ms, "
                          f"p99 {p.total_p99} ms" + (f" ({result.first_error})" if result.errors else ""))
    return cells


async def measure_memory(gateway: procs.Server, model: str, plan: Plan) -> MemoryRun:
    await run_cell(gateway.url, model, concurrency=plan.memory_concurrency, requests=plan.memory_warmup,
                   time_limit=600.0, warmup=0, max_tokens=plan.memory_tokens)
    baseline = gateway.rss_bytes()
    samples = [baseline]
    errors = 0
    chunk = plan.memory_requests // plan.memory_chunks
    for _ in range(plan.memory_chunks):
        result = await run_cell(gateway.url, model, concurrency=plan.memory_concurrency, requests=chunk,
                                time_limit=600.0, warmup=0, max_tokens=plan.memory_tokens)
        errors += result.errors
        samples.append(gateway.rss_bytes())
    mib = [round(s / 2**20, 2) for s in samples]
    _progress(f"gateway RSS over {chunk * plan.memory_chunks} requests (MiB): {mib}")
    return MemoryRun(requests=chunk * plan.memory_chunks, tokens=plan.memory_tokens,
                     concurrency=plan.memory_concurrency,
                     warmup=plan.memory_warmup, baseline_rss_mib=mib[0], final_rss_mib=mib[-1],
                     peak_rss_mib=max(mib), growth=(samples[-1] - baseline) / baseline, samples_mib=mib,
                     errors=errors)


@contextmanager
def upstream_server(name: str, stack: ExitStack, args: argparse.Namespace, plan: Plan, cores: Cores,
                    log_dir: Path) -> Iterator[tuple[str, str]]:
    """(base URL, model) of the upstream; it is stopped when ``stack`` closes."""
    if name == SYNTHETIC:
        server = stack.enter_context(procs.fake_upstream(log_dir, cores.load, model=SYNTHETIC_MODEL,
                                                         tokens=plan.tokens, interval_ms=plan.interval_ms,
                                                         fifo_priority=cores.fifo_priority))
        yield server.url, SYNTHETIC_MODEL
        return
    from tools.stack.env import REPO_ROOT, cache_dir, vllm_python
    from tools.stack.tiny_model import ensure_tiny_model
    from tools.stack.vllm import connect_vllm, dev_overlay_args, local_serving_args, start_vllm

    if args.vllm_url:
        reused = connect_vllm(args.vllm_url, max_num_seqs=args.vllm_max_num_seqs or 0)
        yield reused.base_url, reused.model
        return
    python = vllm_python()
    model_dir = ensure_tiny_model(python, cache_dir())
    overlay_args, _source = dev_overlay_args(REPO_ROOT)
    serving = local_serving_args(overlay_args, model_dir=model_dir, port=procs.free_port(),
                                 max_num_seqs=args.vllm_max_num_seqs)
    # vLLM's CPU build binds its OpenMP threads itself; keep them on the load generator's core.
    previous = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    if cores.load:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in sorted(cores.load))
    try:
        server = start_vllm(python, serving, log_path=log_dir / "vllm.log",
                            max_num_seqs=args.vllm_max_num_seqs or 0, timeout=VLLM_START_TIMEOUT)
    finally:
        if previous is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = previous
    stack.callback(server.stop)
    yield server.base_url, server.model


def run(args: argparse.Namespace, plan: Plan) -> dict[str, object]:
    log_dir = Path(args.out_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    cores = choose_cores(not args.no_pin, args.proxy_core, args.load_core, realtime=not args.no_realtime)
    info = machine()
    info["pinning"] = (f"proxy on CPU {sorted(cores.proxy)}, load generator and upstream on CPU "
                       f"{sorted(cores.load)}" if cores.proxy and cores.load else "none")
    info["scheduling"] = (f"SCHED_FIFO priority {cores.fifo_priority} for the proxies, the synthetic "
                          "upstream and the load generator" if cores.fifo_priority else "SCHED_OTHER")
    litellm_script = None if args.no_litellm else procs.ensure_litellm(procs.litellm_venv())
    # The real vLLM first: it is the part most likely to fail (start-up), so a failure comes early.
    upstreams = [SYNTHETIC] if args.no_vllm else [VLLM, SYNTHETIC]
    cells: list[Cell] = []
    memory: MemoryRun | None = None
    started = dt.datetime.now(dt.UTC)
    with pinned(cores.load, cores.fifo_priority):
        for upstream in upstreams:
            with ExitStack() as stack, upstream_server(upstream, stack, args, plan, cores, log_dir) as (
                    upstream_url, model):
                gateway = stack.enter_context(procs.gateway(log_dir, cores.proxy, upstream_url=upstream_url,
                                                            model=model, fifo_priority=cores.fifo_priority))
                urls = {"direct": upstream_url, "gateway": gateway.url}
                proxies = {"gateway": gateway}
                if litellm_script is not None:
                    litellm = stack.enter_context(procs.litellm(
                        log_dir, cores.proxy, script=litellm_script, upstream_url=upstream_url, model=model,
                        fifo_priority=cores.fifo_priority))
                    urls["litellm"] = litellm.url
                    proxies["litellm"] = litellm
                _progress(f"{upstream}: {urls}")
                cells += anyio.run(measure, upstream, urls, model, plan, proxies)
                if upstream == SYNTHETIC:
                    memory = anyio.run(measure_memory, gateway, model, plan)
            if args.json_out:  # what is measured so far survives a failure in a later phase
                partial = report(args, plan, info, started, litellm_script is not None, cells, memory)
                Path(args.json_out).write_text(json.dumps(partial, indent=2) + "\n")
    return report(args, plan, info, started, litellm_script is not None, cells, memory)


def report(args: argparse.Namespace, plan: Plan, info: dict[str, object], started: dt.datetime,
           with_litellm: bool, cells: Sequence[Cell], memory: MemoryRun | None) -> dict[str, object]:
    info = {**info, "load_average_end": load_average()}
    rows, overhead_rows = build_tables(cells)
    checks = check_targets(overhead_rows, memory)
    return {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "command": "python -m bench.gateway_bench " + shlex.join(args.argv),
        "machine": info,
        "plan": asdict(plan),
        "litellm_version": procs.LITELLM_VERSION if with_litellm else None,
        "table": {"columns": list(TABLE_COLUMNS), "rows": rows},
        "overhead": {"columns": list(OVERHEAD_COLUMNS), "rows": overhead_rows},
        "noise": {"columns": list(NOISE_COLUMNS), "rows": noise_rows(cells)},
        "memory": asdict(memory) if memory else None,
        "targets": [asdict(c) for c in checks],
    }


def render_markdown(report: dict[str, object]) -> str:
    machine_info: dict[str, object] = report["machine"]  # type: ignore[assignment]
    table: dict[str, list] = report["table"]  # type: ignore[assignment]
    overhead: dict[str, list] = report["overhead"]  # type: ignore[assignment]
    memory: dict[str, object] | None = report["memory"]  # type: ignore[assignment]
    parts = [
        f"Run {report['started']} ({report['seconds']} s): `{report['command']}`\n",
        f"Machine: {machine_info['nproc']} CPUs, {machine_info['cpu_model']}, "
        f"Python {machine_info['python']}; pinning: {machine_info['pinning']}; scheduling: "
        f"{machine_info.get('scheduling', 'SCHED_OTHER')}; load average (1, 5, 15 min) "
        f"{machine_info['load_average_start']} at the start, {machine_info['load_average_end']} at the end"
        + (f"; LiteLLM {report['litellm_version']}" if report["litellm_version"] else "") + ".\n",
        "Added latency (proxied - direct, ms) and the ratio LiteLLM/gateway:\n",
        markdown_table(overhead["columns"], overhead["rows"]),
        "All cells (latencies in ms; proxy CPU = the proxy process's CPU time per request):\n",
        markdown_table(table["columns"], table["rows"]),
    ]
    noise: dict[str, list] = report["noise"]  # type: ignore[assignment]
    if noise["rows"]:
        parts += ["Resolution: direct against direct, odd rounds pooled against even rounds (|difference|, "
                  "ms); an added latency below these figures is within the machine's noise:\n",
                  markdown_table(noise["columns"], noise["rows"])]
    if memory:
        parts.append(
            f"Gateway RSS over {memory['requests']} requests ({memory['tokens']}-token streams) at "
            f"{memory['concurrency']} streams "
            f"(after {memory['warmup']} warm-up requests): {memory['baseline_rss_mib']} MiB → "
            f"{memory['final_rss_mib']} MiB (peak {memory['peak_rss_mib']} MiB, growth "
            f"{float(memory['growth']) * 100:.2f} %, {memory['errors']} errors); samples: "  # type: ignore[arg-type]
            f"{memory['samples_mib']}\n")
    checks = report["targets"]
    lines = ["| target | measured | limit | met |", "|---|---|---|---|"]
    for check in checks:  # type: ignore[attr-defined]
        met = {True: "yes", False: "**no**", None: "not measured"}[check["met"]]
        lines.append(f"| {check['name']} | {_cell_text(check['value'])} | {check['limit']} | {met} |")
    parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few requests per cell and one round (seconds, for the smoke test)")
    parser.add_argument("--concurrency", type=lambda v: tuple(int(x) for x in v.split(",")),
                        help="comma-separated stream counts (default 1,50,200)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved rounds per cell (default 3, 2 on vLLM; quick 1)")
    parser.add_argument("--interval-ms", type=float,
                        help="the synthetic upstream's gap between tokens (default 20: 50 tokens/s a stream)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--no-vllm", action="store_true", help="synthetic upstream only")
    parser.add_argument("--vllm-url", help="reuse a running vLLM instead of starting one")
    parser.add_argument("--vllm-max-num-seqs", type=int, default=None,
                        help="vLLM --max-num-seqs (default: the dev overlay's)")
    parser.add_argument("--proxy-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--no-realtime", action="store_true",
                        help="do not run the measured processes under SCHED_FIFO (used when permitted)")
    parser.add_argument("--out-dir", default=".bench/gateway", help="server logs (default .bench/gateway)")
    parser.add_argument("--json-out", help="write the results as JSON here")
    parser.add_argument("--markdown-out", help="write the results as Markdown here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    overrides: dict[str, object] = {}
    if args.concurrency:
        if any(c < 1 for c in args.concurrency):
            parser.error("--concurrency values must be positive")
        overrides["concurrency"] = args.concurrency
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        overrides["rounds"] = args.rounds
        overrides["vllm_rounds"] = args.rounds
    if args.interval_ms is not None:
        if args.interval_ms <= 0:
            parser.error("--interval-ms must be positive")
        overrides["interval_ms"] = args.interval_ms
    if overrides:
        plan = Plan(**{**asdict(plan), **overrides})
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run(args, plan)
    except (procs.BenchSetupError, MissingToolError, OverlayError, VllmStartError) as error:
        print(f"gateway_bench: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    text = render_markdown(result)
    print(text)
    if args.markdown_out:
        Path(args.markdown_out).write_text(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every server this run started is stopped on the way out.
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
