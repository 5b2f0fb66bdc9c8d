"""Benchmark: `gate validate` end to end, as a user waits, against Checkov's kustomize framework.

Directories: for each size (default about 500, 1,000 and 2,000 resources), a small repository
`tree-N/` holding this repository's `gate.yaml` and one kustomization, `overlays/prod`, whose
resources are N/21 copies of the prod overlay as rendered (`bench.gate_corpus`, one file per copy,
each copy with its own names and consistent references). Both tools get the same directory and run
kustomize on it themselves:

    gate cold       `gate validate overlays/prod` in a new process, render cache empty
    gate warm       the same command again, the tree unchanged (the pre-commit case)
    kustomize       the build the gate runs (its wrapper with origin and transformer annotations), alone
    plain build     `kubectl kustomize overlays/prod`, as Argo CD and Checkov run it
    checkov         `checkov -d overlays/prod --framework kustomize --quiet --compact -o json
                    --skip-download` (its own venv, created on first use; kubectl on its PATH)

Each figure is wall time and CPU time (user + system of the process and the children it waited for).
The gate's own time beyond the render it needs is `gate cold - kustomize`; the warm run measures
the same thing directly (every step but kustomize). Targets: own time <= 1/10 of Checkov's time, and
Checkov's time >= 10 x the warm run.

The whole repository: `gate validate` at the repository root (6 targets), render cache empty (cold)
and filled (warm), several runs each; the target is a warm median <= 0.8 s.

Every tool runs on every core (nothing is pinned; the gate renders targets side by side). Each
repeat runs the gate, kustomize and Checkov one after the other on each directory, so machine load
hits them alike; the table gives medians over the repeats, and `uptime` before and after.

    python -m bench.gate_vs_checkov                         # sizes 500 1000 2000, 3 repeats
    python -m bench.gate_vs_checkov --sizes 500 --repeats 1 --no-checkov   # quick
    python -m bench.gate_vs_checkov --repository-runs 15 --sizes          # the whole repository only

Results and method: bench/README.md, section "Policy gate, end to end".
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.gate_bench import CHECKOV_VENV, ensure_checkov, machine, uptime
from bench.gate_corpus import generate_rendered
from tools.validate.render import kustomize_command
from tools.validate.render_cache import CACHE_DIR_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_OWN_OVER_CHECKOV = 0.1
TARGET_WARM_SPEEDUP = 10.0
TARGET_REPOSITORY_WARM_S = 0.8
OVERLAY = "overlays/prod"


@dataclass(frozen=True)
class Tree:
    size: int
    root: Path
    resources: int


def build_tree(work: Path, size: int) -> Tree:
    """`work/tree-SIZE/`: gate.yaml and `overlays/prod` listing the copies of the prod overlay."""
    corpus = generate_rendered(REPO_ROOT, work / "corpora", size, per_copy=True)
    root = work / f"tree-{size}"
    overlay = root / OVERLAY
    overlay.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "gate.yaml", root / "gate.yaml")
    files = sorted(corpus.rendered_dir.glob("copy-*.yaml"))
    for file in files:
        shutil.copy2(file, overlay / file.name)
    listing = "".join(f"  - {file.name}\n" for file in files)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" + listing,
        encoding="utf-8",
    )
    return Tree(size, root, corpus.resource_count)


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float  # user + system of the process and every child it waited for


def _run(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None, ok: Sequence[int] = (0, 1),
         stdout: Path | None = None) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with stdout.open("wb") if stdout else open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        completed = subprocess.run(list(argv), cwd=cwd, env=env, stdout=sink, stderr=subprocess.PIPE,
                                   check=False, timeout=3600)
        elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exit {completed.returncode}: {completed.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(elapsed, cpu)


def gate_argv(*paths: str) -> list[str]:
    return [sys.executable, "-m", "tools.validate", "validate", *paths]


def gate_env(cache: Path) -> dict[str, str]:
    """The environment of a user's shell: Python writes bytecode (PYTHONDONTWRITEBYTECODE, set on some
    machines, makes every start compile the gate's modules again)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, CACHE_DIR_ENV: str(cache)}


def gate_cold_and_warm(cwd: Path, cache: Path, *paths: str) -> tuple[Sample, Sample]:
    shutil.rmtree(cache, ignore_errors=True)
    cold = _run(gate_argv(*paths), cwd, gate_env(cache))
    warm = _run(gate_argv(*paths), cwd, gate_env(cache))
    return cold, warm


def kustomize_as_the_gate_builds(tree: Tree, scratch: Path) -> Sample:
    """The wrapper build `tools.validate.render` runs (origin and transformer annotations), alone."""
    wrapper = scratch / "wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(tree.root / OVERLAY, wrapper)
    (wrapper / "kustomization.yaml").write_text(
        f"resources:\n  - {target}\nbuildMetadata: [originAnnotations, transformerAnnotations]\n",
        encoding="utf-8",
    )
    return _run([*kustomize_command(), str(wrapper)], scratch, ok=(0,))


def checkov_time(checkov: Path, tree: Tree, out: Path) -> Sample:
    kubectl_dir = str(Path(kustomize_command()[0]).parent)
    env = {**os.environ, "PATH": kubectl_dir + os.pathsep + os.environ.get("PATH", "")}
    argv = [str(checkov), "-d", OVERLAY, "--framework", "kustomize", "--quiet", "--compact", "-o", "json",
            "--skip-download"]
    return _run(argv, tree.root, env, stdout=out)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[500, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repository-runs", type=int, default=9, metavar="N",
                        help="cold and warm runs of `gate validate` on the whole repository")
    parser.add_argument("--no-checkov", action="store_true")
    parser.add_argument("--checkov-venv", type=Path, default=CHECKOV_VENV)
    parser.add_argument("--work-dir", type=Path, help="default: a temporary directory, removed afterwards")
    args = parser.parse_args(argv)

    checkov = None if args.no_checkov else ensure_checkov(args.checkov_venv)
    print(f"# machine: {machine()}", flush=True)
    print(f"# uptime before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gate-vs-checkov-") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        _repository(work, args.repository_runs)
        _directories(work, args.sizes, args.repeats, checkov)
    print(f"# uptime after: {uptime()}", flush=True)
    return 0


def _repository(work: Path, runs: int) -> None:
    if runs <= 0:
        return
    _run(gate_argv(), REPO_ROOT, gate_env(work / "bytecode-warm-up"))  # bytecode written once
    colds: list[Sample] = []
    warms: list[Sample] = []
    for _ in range(runs):
        cold, warm = gate_cold_and_warm(REPO_ROOT, work / "repository-cache")
        colds.append(cold)
        warms.append(warm)
    warm_median = _median([s.wall for s in warms])
    met = "yes" if warm_median <= TARGET_REPOSITORY_WARM_S else "no"
    print("\n## The whole repository: `gate validate` (every target)\n")
    print("| run | wall median s | wall min | wall max | CPU median s | n |\n|---|---:|---:|---:|---:|---:|")
    for name, samples in (("cold (render cache empty)", colds), ("warm (render cache filled)", warms)):
        walls = [s.wall for s in samples]
        cpu = _median([s.cpu for s in samples])
        print(f"| {name} | {_median(walls):.3f} | {min(walls):.3f} | {max(walls):.3f} | {cpu:.3f} "
              f"| {len(samples)} |")
    print(f"\nwarm median <= {TARGET_REPOSITORY_WARM_S} s: {met}", flush=True)


def _repeats(work: Path, trees: Sequence[Tree], repeats: int, samples: dict[int, dict[str, list[Sample]]],
             checkov: Path | None) -> None:
    """Each repeat runs every tool on every tree; a tree's figures are kept once all its tools ran."""
    for repeat in range(repeats):
        for tree in trees:
            cold, warm = gate_cold_and_warm(tree.root, work / f"cache-{tree.size}", OVERLAY)
            one = {"gate cold": cold, "gate warm": warm,
                   "kustomize": kustomize_as_the_gate_builds(tree, work / f"k-{tree.size}"),
                   "plain build": _run([*kustomize_command(), OVERLAY], tree.root, ok=(0,))}
            if checkov is not None:
                one["checkov"] = checkov_time(checkov, tree, work / "checkov.json")
            for name, sample in one.items():
                samples[tree.size].setdefault(name, []).append(sample)
            print(f"# repeat {repeat + 1}/{repeats}, {tree.resources} resources: "
                  + ", ".join(f"{k} {v.wall:.2f} s ({v.cpu:.2f} CPU)" for k, v in one.items()), flush=True)


def _directories(work: Path, sizes: Sequence[int], repeats: int, checkov: Path | None) -> None:
    if not sizes:
        return
    trees = [build_tree(work, size) for size in sizes]
    samples: dict[int, dict[str, list[Sample]]] = {t.size: {} for t in trees}
    try:
        _repeats(work, trees, repeats, samples, checkov)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # e.g. kustomize past the gate's timeout
        print(f"# stopped: {' '.join(str(exc).split())[:300]}; the tables hold the repeats before",
              flush=True)
    for measure in ("wall", "cpu"):
        print(f"\n## `gate validate DIR` against `checkov -d DIR --framework kustomize` "
              f"(medians, {'wall' if measure == 'wall' else 'CPU'} s)\n")
        print("| resources | gate cold | kustomize (in it) | gate own (cold - kustomize) | gate warm "
              "| checkov | plain build | own / checkov | checkov / warm | checkov / cold | n |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for tree in (t for t in trees if samples[t.size]):
            row = {name: _median([getattr(s, measure) for s in values])
                   for name, values in samples[tree.size].items()}
            own = max(0.0, row["gate cold"] - row["kustomize"])
            checkov_s = row.get("checkov")
            own_ratio = f"{own / checkov_s:.3f}" if checkov_s else "-"
            warm_ratio = f"{checkov_s / row['gate warm']:.1f}x" if checkov_s else "-"
            cold_ratio = f"{checkov_s / row['gate cold']:.1f}x" if checkov_s else "-"
            checkov_text = f"{checkov_s:.2f}" if checkov_s else "-"
            print(f"| {tree.resources:,} | {row['gate cold']:.2f} | {row['kustomize']:.2f} | {own:.2f} "
                  f"| {row['gate warm']:.2f} | {checkov_text} | {row['plain build']:.2f} | {own_ratio} "
                  f"| {warm_ratio} | {cold_ratio} | {len(samples[tree.size]['gate cold'])} |")
    targets = f"own / checkov <= {TARGET_OWN_OVER_CHECKOV}, checkov / warm >= {TARGET_WARM_SPEEDUP:g}x"
    print(f"\ntargets: {targets}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
