"""Benchmark: `gate diff` on this repository, and one simulated day with every serving mechanism on.

    python bench/diff_bench.py [--seeds N] [--core K]

1. A pull request that changes both environments (the base ScaledObject's target 25 → 20) is committed
   in a temporary clone of this repository's manifests; `gate diff` then renders both revisions, runs the
   three scenarios (spike, day, spot-stress) x 2 environments x 2 revisions x N seeds and the gate on the
   head revision. Measured: CPU seconds of this process plus its children (kustomize, git), and wall.
   Target: at most 20 s of CPU on one core.
2. 24 h at 1 s steps (the `day` scenario on prod, one seed) with the serving model (latency, KV cache,
   gateway, Spot risk) against the HPA/KEDA core alone on the same load, side by side in one run.
   Target: at most 5 s of CPU.
The process pins itself (and so its children) to one core.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from tools.validate.catalogue import load_catalogue  # noqa: E402
from tools.validate.diff.command import main as diff_main  # noqa: E402
from tools.validate.simulate.engine import SimOptions, simulate  # noqa: E402
from tools.validate.simulate.gateway_model import gateway_limits  # noqa: E402
from tools.validate.simulate.hardware import DEFAULT_HARDWARE, load_hardware_profile  # noqa: E402
from tools.validate.simulate.latency import SloObjectives  # noqa: E402
from tools.validate.simulate.load import diurnal  # noqa: E402
from tools.validate.simulate.manifests import read_cluster  # noqa: E402
from tools.validate.simulate.render import render_overlay  # noqa: E402
from tools.validate.simulate.scenarios import SCENARIOS, run_scenario  # noqa: E402
from tools.validate.simulate.serving import ServingModel  # noqa: E402

TREES = ("base", "overlays", "apps", "clusters", "gate.yaml")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
                   check=True, capture_output=True)


def _pull_request(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for name in TREES:
        source = REPOSITORY / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, repo / name)
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "base")
    scaled = repo / "base" / "keda" / "scaledobject.yaml"
    scaled.write_text(scaled.read_text().replace('target: "25"', 'target: "20"'))
    _git(repo, "commit", "--quiet", "-am", "head")
    return repo


def bench_diff(seeds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = _pull_request(Path(tmp))
        out = Path(tmp) / "comment.md"
        wall, cpu = time.perf_counter(), _cpu()
        code = diff_main(["--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--output", str(out),
                          "--seeds", str(seeds)])
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        runs = 2 * 2 * len(SCENARIOS) * seeds
        print(f"gate diff: exit {code}, {runs} simulations (2 environments x 2 revisions x "
              f"{len(SCENARIOS)} scenarios x {seeds} seeds) + the gate on the head: "
              f"{cpu:.2f} s CPU, {wall:.2f} s wall (target: CPU <= 20 s)")


def bench_day() -> None:
    resources = render_overlay(REPOSITORY / "overlays" / "prod", "prod")
    cluster = read_cluster("prod", resources)
    hardware = load_hardware_profile(DEFAULT_HARDWARE)
    serving = ServingModel(load_catalogue(), SloObjectives(), gateway_limits(resources))
    day = next(s for s in SCENARIOS if s.name == "day")
    for label, run in (
        ("HPA/KEDA core alone", lambda: simulate(cluster, hardware, diurnal(), SimOptions(seed=1))),
        ("with the serving model", lambda: run_scenario(cluster, hardware, day, serving, (1,))),
    ):
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        print(f"24 h at 1 s steps, {label}: best of 3 {best:.2f} s CPU (target <= 5 s)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    core = args.core if args.core is not None else allowed[-1]
    os.sched_setaffinity(0, {core})
    print(f"pinned to CPU {core}; Python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}")
    bench_day()
    bench_diff(args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
