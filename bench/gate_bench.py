"""Benchmark: the policy gate's throughput (resources/s) per stage, side by side with Checkov.

Corpora: this repository (every overlay `gate validate` checks by default) and generated rendered
corpora of >= 2,000 and >= 10,000 resources (N copies of the prod overlay in one multi-document
file: one overlay, the worst case; with --per-copy also the same copies as one overlay each, see
`bench.gate_corpus`); render is measured on the repository's overlays.

The process pins itself to one core (`os.sched_setaffinity`); the gate's kustomize and CLI
subprocesses inherit the pin. Each stage is timed by calling the gate's own functions:

    start-up           default_registry + load_config + SchemaValidator + load_catalogue (once per run)
    kustomize build    the same wrapper `render()` builds (with origin/transformer annotations), run alone
    parse              tools.validate.loader.load_text on that output
    render total       tools.validate.render.render (kustomize + parse + origins and patch sources)
    schema             SchemaValidator.validate on every rendered resource (compiled schemas warm)
    policy rules       engine.check with every rule except the schema family (locations, suppressions)
    schema + policy    engine.check with the full registry: the figure the targets are about (2,000
                       resources/s; 5,000 resources/s from 10,000 resources)
    gate in-process    engine.run: validator and catalogue construction, render and check
    gate CLI           `python -m tools.validate validate --no-render-cache TARGETS` in a new process, wall
                       time including interpreter start-up, imports, render, schemas and rules
    checkov            `checkov -f FILE | -d DIR --framework kubernetes --quiet --compact -o json` on the
                       same manifests already rendered (plain `kustomize build`), wall time including
                       its start-up; Checkov 3.3.30 lives in its own venv (created on first use) and runs
                       on every core of the machine, not pinned, which favours it; a scan still running
                       after --checkov-time-limit seconds is stopped and reported as a lower bound
    checkov start-up   the same command on a file holding one resource

Every repeat runs the gate stages, the gate CLI and Checkov one after the other for each corpus
(interleaved, so machine load hits both tools alike); the table gives medians over the repeats of
wall time and of CPU time (this process plus waited-for children), and resources/s from each. The
machine is shared: `uptime` is recorded before and after.

    python -m bench.gate_bench                      # full run, ~20 minutes on a loaded 2-core machine
    python -m bench.gate_bench --quick              # a few seconds: gate only, small corpora, no Checkov
    python -m bench.gate_bench --sizes 2000 --repeats 3 --json results.json
    python -m bench.gate_bench --no-repo --sizes 2000 10000 --per-copy --no-checkov

Results and method: bench/README.md, section "Policy gate".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from bench.gate_corpus import Corpus, generate_rendered, repository_corpus
from tools.validate.catalogue import load_catalogue
from tools.validate.config import GateConfig, find_config, load_config
from tools.validate.engine import RunOptions, check, discover_targets, run
from tools.validate.loader import load_text
from tools.validate.model import Resource
from tools.validate.render import Rendered, RenderOptions, kustomize_command, render
from tools.validate.rules import default_registry
from tools.validate.rules.base import Registry
from tools.validate.schema import SchemaValidator
from tools.validate.sources import SourceMapper

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = Path.home() / ".cache/eks-llm-inference/checkov-venv"
TARGET_SCHEMA_POLICY_PER_S = 2_000
# at 10,000 resources and more (one overlay or one per copy), with every rule of the registry on
TARGET_LARGE_SCHEMA_POLICY_PER_S = 5_000
LARGE_CORPUS = 10_000
TARGET_RATIO_OVER_CHECKOV = 10

STAGE_STARTUP = "start-up"
STAGE_KUSTOMIZE = "kustomize build"
STAGE_PARSE = "parse"
STAGE_RENDER = "render total"
STAGE_ORIGINS = "origins+patches (render - kustomize - parse)"
STAGE_SCHEMA = "schema"
STAGE_RULES = "policy rules"
STAGE_SCHEMA_POLICY = "schema + policy"
STAGE_IN_PROCESS = "gate in-process"
STAGE_CLI = "gate CLI"
STAGE_CHECKOV = "checkov"
STAGE_CHECKOV_STOPPED = "checkov, stopped at the time limit"
STAGE_CHECKOV_STARTUP = "checkov start-up"
CHECKOV_TIME_LIMIT = 1800.0  # seconds per scan
RENDER_STAGES = (STAGE_KUSTOMIZE, STAGE_PARSE, STAGE_RENDER, STAGE_ORIGINS)
CHECK_STAGES = (STAGE_SCHEMA, STAGE_RULES, STAGE_SCHEMA_POLICY)
QUICK_OVERLAY = "overlays/prod"

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


@dataclass(frozen=True)
class Row:
    corpus: str
    resources: int
    stage: str
    wall_s: float  # median over repeats
    cpu_s: float
    per_s_wall: float
    per_s_cpu: float
    repeats: int


def _cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], T]) -> tuple[T, Sample]:
    cpu0, wall0 = _cpu_now(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - wall0, _cpu_now() - cpu0
    return result, Sample(wall, cpu)


@dataclass
class Gate:
    """What a gate run builds once (the start-up stage)."""

    repo_root: Path
    config: GateConfig
    registry: Registry
    policy_only: Registry
    schemas: SchemaValidator
    catalogue: Any


def start_gate(repo_root: Path) -> Gate:
    registry = default_registry()
    config = load_config(find_config(repo_root, None), registry)
    crd_dirs = [repo_root / d for d in config.crd_dirs]
    schemas = SchemaValidator(config.kubernetes_version, crd_dirs)
    policy_only = Registry(rule for rule in registry if rule.family != "schema")
    return Gate(repo_root, config, registry, policy_only, schemas, load_catalogue())


def kustomize_with_metadata(target: Path, gate: Gate) -> str:
    """The build `render()` runs: a wrapper kustomization asking for origin and transformer annotations."""
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as wrapper:
        relative = os.path.relpath(target.resolve(), Path(wrapper).resolve())
        (Path(wrapper) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - '{relative}'\n"
            "buildMetadata: [originAnnotations, transformerAnnotations]\n",
            encoding="utf-8",
        )
        argv = [*kustomize_command(), wrapper, *gate.config.build_options]
        completed = subprocess.run(argv, capture_output=True, check=True, cwd=wrapper, timeout=600)
    return completed.stdout.decode("utf-8")


def _options(gate: Gate, registry: Registry, env: str | None) -> RunOptions:
    return RunOptions(repo_root=gate.repo_root, config=gate.config, registry=registry, env=env)


def _check_all(gate: Gate, rendered: list[Rendered], registry: Registry, env: str | None) -> int:
    options = _options(gate, registry, env)
    mapper = SourceMapper(gate.repo_root, gate.config.limits)
    today = dt.datetime.now(dt.UTC).date()
    findings = 0
    for item in rendered:
        item_env = env or gate.config.environment_of(item.overlay)
        findings += len(
            check(item, item_env, options, mapper=mapper, schemas=gate.schemas, catalogue=gate.catalogue,
                  today=today)
        )
    return findings


def rendered_from_file(file: Path, gate: Gate) -> Rendered:
    """A generated corpus as the gate's render stage would hand it over (no origins, no patches)."""
    overlay = f"{file.parent.name}/{file.name}"
    text = file.read_text(encoding="utf-8")
    # the one-file corpus of 10,019 resources is larger than the gate's per-file limit (20 MiB); a
    # rendered overlay that size is measured here, not refused
    limits = gate.config.limits
    limits = replace(limits, max_bytes=max(limits.max_bytes, len(text)))
    loaded = load_text(text, overlay, limits)
    documents = enumerate(loaded.documents)
    resources = [Resource(doc=doc, overlay=overlay, index=index) for index, doc in documents]
    return Rendered(overlay, resources, loaded.duplicates, {})


def gate_stages(corpus: Corpus, gate: Gate, with_end_to_end: bool) -> dict[str, Sample]:
    """One repeat of the gate's stages on CORPUS, each timed on its own."""
    if corpus.targets:
        samples, rendered = _render_stages(corpus, gate)
    else:  # a generated corpus starts from its rendered file
        samples = {}
        files = sorted(corpus.rendered_dir.glob("*.yaml"))
        rendered, samples[STAGE_PARSE] = timed(lambda: [rendered_from_file(f, gate) for f in files])
    count = sum(len(item.resources) for item in rendered)
    if count != corpus.resource_count:
        raise RuntimeError(f"{corpus.name}: {count} resources, expected {corpus.resource_count}")
    _, samples[STAGE_SCHEMA] = timed(
        lambda: [gate.schemas.validate(res) for item in rendered for res in item.resources]
    )
    _, samples[STAGE_RULES] = timed(lambda: _check_all(gate, rendered, gate.policy_only, corpus.env))
    _, samples[STAGE_SCHEMA_POLICY] = timed(lambda: _check_all(gate, rendered, gate.registry, corpus.env))
    if with_end_to_end and corpus.targets:
        report, samples[STAGE_IN_PROCESS] = timed(
            lambda: run(list(corpus.targets), _options(gate, gate.registry, corpus.env))
        )
        if report.resource_count != corpus.resource_count:
            raise RuntimeError(f"{corpus.name}: engine.run saw {report.resource_count} resources")
    return samples


def _render_stages(corpus: Corpus, gate: Gate) -> tuple[dict[str, Sample], list[Rendered]]:
    samples: dict[str, Sample] = {}
    render_options = RenderOptions(
        build_options=gate.config.build_options, timeout=gate.config.render_timeout, limits=gate.config.limits
    )
    texts, samples[STAGE_KUSTOMIZE] = timed(
        lambda: [kustomize_with_metadata(t, gate) for t in corpus.targets]
    )

    def parse() -> int:
        return sum(len(load_text(text, "bench", gate.config.limits).documents) for text in texts)

    parsed, samples[STAGE_PARSE] = timed(parse)
    rendered, samples[STAGE_RENDER] = timed(
        lambda: [render(t, gate.repo_root, render_options) for t in corpus.targets]
    )
    if parsed != corpus.resource_count:
        raise RuntimeError(f"{corpus.name}: parsed {parsed}, expected {corpus.resource_count}")
    samples[STAGE_ORIGINS] = Sample(
        samples[STAGE_RENDER].wall - samples[STAGE_KUSTOMIZE].wall - samples[STAGE_PARSE].wall,
        samples[STAGE_RENDER].cpu - samples[STAGE_KUSTOMIZE].cpu - samples[STAGE_PARSE].cpu,
    )
    return samples, rendered


def check_rendered(files: Sequence[Path], env: str) -> int:
    """What `gate validate` does after rendering, in a fresh process: start-up, parse, schema, rules."""
    gate = start_gate(REPO_ROOT)
    rendered = [rendered_from_file(file, gate) for file in files]
    _check_all(gate, rendered, gate.registry, env)
    return 0


def gate_cli(corpus: Corpus) -> Sample:
    """The gate in a new process, wall time including start-up: `gate validate` on the repository's
    overlays; on a generated corpus (already rendered) `python -m bench.gate_bench --check-rendered`."""
    if corpus.targets:
        # every run renders, as the stages above do (the render cache is measured by gate_vs_checkov)
        argv = [sys.executable, "-m", "tools.validate", "validate", "--no-render-cache",
                "--repo-root", str(corpus.repo_root)]
        argv += [str(t) for t in corpus.targets]
    else:
        argv = [sys.executable, "-m", "bench.gate_bench", "--env", corpus.env or "prod", "--check-rendered"]
        argv += [str(f) for f in sorted(corpus.rendered_dir.glob("*.yaml"))]

    def call() -> None:
        completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, check=False, timeout=1800)
        if completed.returncode not in (0, 1):
            raise RuntimeError(f"gate CLI exit {completed.returncode}: {completed.stderr.decode()[-2000:]}")

    _, sample = timed(call)
    return sample


def ensure_checkov(venv: Path) -> Path:
    """Checkov in its own virtualenv (it pins dependencies the project does not want)."""
    checkov = venv / "bin" / "checkov"
    if not checkov.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = venv / "bin" / "pip"
        subprocess.run([str(pip), "install", "-q", f"checkov=={CHECKOV_VERSION}"], check=True)
    completed = subprocess.run([str(checkov), "--version"], capture_output=True, check=True, text=True)
    version = completed.stdout.strip()
    if version != CHECKOV_VERSION:
        raise RuntimeError(f"{checkov} is {version}, expected {CHECKOV_VERSION}")
    return checkov


def _all_cores() -> None:
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


def checkov_scan(checkov: Path, rendered_dir: Path, out: Path,
                 time_limit: float = CHECKOV_TIME_LIMIT) -> tuple[Sample, int | None]:
    """Wall/CPU time of one scan and the number of resources Checkov reports.

    A scan still running after `time_limit` seconds is stopped (its process group killed): the count
    is then None and the sample a lower bound of Checkov's time (CPU of processes it had not reaped
    is lost with them)."""
    files = sorted(rendered_dir.glob("*.yaml"))
    where = ["-f", str(files[0])] if len(files) == 1 else ["-d", str(rendered_dir)]
    argv = [str(checkov), *where, "--framework", "kubernetes", "--quiet", "--compact", "-o", "json"]

    def call() -> bool:
        with out.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=_all_cores)
            try:
                _, stderr = proc.communicate(timeout=time_limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return False
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"checkov exit {proc.returncode}: {stderr.decode()[-2000:]}")
        return True

    finished, sample = timed(call)
    if not finished:
        return sample, None
    result = json.loads(out.read_text(encoding="utf-8"))
    results = result if isinstance(result, list) else [result]
    return sample, sum(int(r.get("summary", {}).get("resource_count", 0)) for r in results)


def one_resource_file(corpus: Corpus, dest: Path) -> Path:
    first = sorted(corpus.rendered_dir.glob("*.yaml"))[0].read_text(encoding="utf-8")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "one.yaml").write_text(first.split("\n---\n")[0] + "\n", encoding="utf-8")
    return dest


def _median_row(corpus: str, resources: int, stage: str, samples: list[Sample]) -> Row:
    wall = statistics.median(s.wall for s in samples)
    cpu = statistics.median(s.cpu for s in samples)
    return Row(corpus, resources, stage, wall, cpu, resources / wall if wall > 0 else 0.0,
               resources / cpu if cpu > 0 else 0.0, len(samples))


def machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kustomize": " ".join(kustomize_command())}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def format_table(rows: Sequence[Row]) -> str:
    lines = ["| corpus | resources | stage | wall s | CPU s | resources/s (wall) | resources/s (CPU) | n |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row.corpus} | {row.resources:,} | {row.stage} | {row.wall_s:.3f} | {row.cpu_s:.3f} | "
            f"{row.per_s_wall:,.0f} | {row.per_s_cpu:,.0f} | {row.repeats} |"
        )
    return "\n".join(lines)


def verdicts(rows: Sequence[Row]) -> list[str]:
    """Plain statements of the two targets, per corpus, from wall and from CPU time."""
    out: list[str] = []
    by = {(r.corpus, r.stage): r for r in rows}
    for corpus in dict.fromkeys(r.corpus for r in rows):
        sp = by.get((corpus, STAGE_SCHEMA_POLICY))
        if sp:
            large = sp.resources >= LARGE_CORPUS
            target = TARGET_LARGE_SCHEMA_POLICY_PER_S if large else TARGET_SCHEMA_POLICY_PER_S
            met = "met" if min(sp.per_s_wall, sp.per_s_cpu) >= target else "NOT met"
            out.append(f"{corpus}: schema + policy {sp.per_s_wall:,.0f}/s wall, {sp.per_s_cpu:,.0f}/s CPU "
                       f"on one core: {target:,}/s target {met}")
        cli = by.get((corpus, STAGE_CLI))
        stopped = by.get((corpus, STAGE_CHECKOV_STOPPED))
        chk = by.get((corpus, STAGE_CHECKOV)) or stopped
        if cli and chk:
            ratio_wall, ratio_cpu = cli.per_s_wall / chk.per_s_wall, cli.per_s_cpu / chk.per_s_cpu
            met = "met" if min(ratio_wall, ratio_cpu) >= TARGET_RATIO_OVER_CHECKOV else "NOT met"
            bound = "at least " if stopped else ""  # Checkov's time is a lower bound
            note = " (Checkov stopped at the time limit)" if stopped else ""
            out.append(f"{corpus}: gate CLI vs Checkov {bound}{ratio_wall:.1f}x wall, "
                       f"{bound}{ratio_cpu:.1f}x CPU{note}: {TARGET_RATIO_OVER_CHECKOV}x target {met}")
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gate_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 10000],
                        help="generated repository sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="gate stages only, on overlays/prod and a ~100-resource generated corpus, one "
                             "repeat, no CLI, no Checkov (seconds to start, minutes on large corpora)")
    parser.add_argument("--no-checkov", action="store_true")
    parser.add_argument("--no-repo", action="store_true", help="skip the repository's own overlays")
    parser.add_argument("--per-copy", action="store_true",
                        help="also check each generated size as one overlay per copy (generated-N-per-copy)")
    parser.add_argument("--core", type=int, help="core to pin to (default: the last one allowed)")
    parser.add_argument("--workdir", type=Path, help="where generated repositories go (default: a temp dir)")
    parser.add_argument("--checkov-venv", type=Path, default=CHECKOV_VENV)
    parser.add_argument("--checkov-time-limit", type=float, default=CHECKOV_TIME_LIMIT, metavar="SECONDS",
                        help="stop a Checkov scan after this long and report the ratio as a lower bound "
                             "(default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the rows and machine facts as JSON")
    parser.add_argument("--check-rendered", type=Path, nargs="+", metavar="FILE",
                        help="(used by the bench) check rendered files in this process and exit")
    parser.add_argument("--env", default="prod", help="environment for --check-rendered")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.check_rendered:
        return check_rendered(args.check_rendered, args.env)
    allowed = sorted(os.sched_getaffinity(0))
    core = args.core if args.core is not None else allowed[-1]
    os.sched_setaffinity(0, {core})
    try:
        with tempfile.TemporaryDirectory(prefix="gate-bench-") as temp:
            work = (args.workdir or Path(temp)).resolve()
            work.mkdir(parents=True, exist_ok=True)
            return _run(args, core, work)
    finally:
        os.sched_setaffinity(0, allowed)  # a caller (a test process) keeps its cores


def _run(args: argparse.Namespace, core: int, work: Path) -> int:
    quick = args.quick
    sizes = [100] if quick else args.sizes
    repeats = 1 if quick else args.repeats
    with_checkov = not (quick or args.no_checkov)
    load_before = uptime()
    print(f"# pinned to core {core}; {load_before}", flush=True)

    corpora: list[Corpus] = []
    if quick:
        corpora.append(repository_corpus(REPO_ROOT, [REPO_ROOT / QUICK_OVERLAY], work, "overlays-prod"))
    elif not args.no_repo:
        corpora.append(repository_corpus(REPO_ROOT, discover_targets(REPO_ROOT), work, "repo"))
    for size in sizes:
        corpora.append(generate_rendered(REPO_ROOT, work, size))
        if args.per_copy:
            corpora.append(generate_rendered(REPO_ROOT, work, size, per_copy=True))
    checkov = ensure_checkov(args.checkov_venv) if with_checkov else None

    samples: dict[tuple[str, str], list[Sample]] = {}
    gate, startup = timed(lambda: start_gate(REPO_ROOT))
    samples[("all", STAGE_STARTUP)] = [startup]
    one = one_resource_file(corpora[0], work / "checkov-one") if checkov else None
    for repeat in range(repeats):
        for corpus in corpora:
            print(f"# repeat {repeat + 1}/{repeats}: {corpus.name} ({corpus.resource_count:,} resources)",
                  flush=True)
            for stage, sample in gate_stages(corpus, gate, with_end_to_end=not quick).items():
                samples.setdefault((corpus.name, stage), []).append(sample)
            if quick:
                continue
            samples.setdefault((corpus.name, STAGE_CLI), []).append(gate_cli(corpus))
            if checkov is not None:
                sample, seen = checkov_scan(checkov, corpus.rendered_dir, work / "checkov-out.json",
                                            args.checkov_time_limit)
                stage = STAGE_CHECKOV if seen is not None else STAGE_CHECKOV_STOPPED
                if seen is None:
                    print(f"# note: checkov stopped after {args.checkov_time_limit:.0f} s", flush=True)
                elif seen != corpus.resource_count:
                    print(f"# note: checkov reported {seen} resources of {corpus.resource_count}", flush=True)
                samples.setdefault((corpus.name, stage), []).append(sample)
        if checkov is not None and one is not None:
            sample, _ = checkov_scan(checkov, one, work / "checkov-one.json", args.checkov_time_limit)
            samples.setdefault(("one resource", STAGE_CHECKOV_STARTUP), []).append(sample)

    counts = {c.name: c.resource_count for c in corpora} | {"one resource": 1, "all": 1}
    rows = [_median_row(name, counts[name], stage, got) for (name, stage), got in samples.items()]
    load_after = uptime()
    facts = machine() | {"core": core, "uptime_before": load_before, "uptime_after": load_after,
                         "sizes": sizes, "repeats": repeats, "checkov": with_checkov}
    print(format_table(rows))
    for line in verdicts(rows):
        print(f"# {line}")
    print(f"# {facts['nproc']} cores, {facts['cpu']}, Python {facts['python']}; after: {load_after}",
          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "rows": [asdict(r) for r in rows],
                                         "verdicts": verdicts(rows)}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
