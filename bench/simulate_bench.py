"""Benchmark: 24 simulated hours at one-second steps and 100 requests/s through the scaling simulator.

    python bench/simulate_bench.py [OVERLAY]     (default overlays/prod)

Renders the overlay once (not timed), then times the simulation alone, three times, and prints the
wall and CPU seconds of each run and the best. Target: at most 5 s on one core. On a shared machine
the CPU seconds are the figure to compare (the simulation is single-threaded).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.validate.simulate.engine import SimOptions, simulate
from tools.validate.simulate.hardware import DEFAULT_HARDWARE, load_hardware_profile
from tools.validate.simulate.load import LoadProfile
from tools.validate.simulate.manifests import read_cluster
from tools.validate.simulate.render import render_overlay

RUNS = 3
DAY = 86_400.0
RATE = 100.0


def main() -> int:
    overlay = Path(sys.argv[1] if len(sys.argv) > 1 else "overlays/prod")
    cluster = read_cluster(overlay.name, render_overlay(overlay))
    hardware = load_hardware_profile(DEFAULT_HARDWARE)
    load = LoadProfile("flat-100", np.array([0.0, DAY]), np.array([RATE, RATE]), "100 req/s for 24 h")
    options = SimOptions(step_seconds=1.0, seed=1)
    best, best_cpu = float("inf"), float("inf")
    for run in range(1, RUNS + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(cluster, hardware, load, options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best, best_cpu = min(best, wall), min(best_cpu, cpu)
        print(
            f"run {run}: {wall:.2f} s wall, {cpu:.2f} s CPU for {len(result.series.time)} steps "
            f"(peak {int(result.series.ready_replicas.max())} replicas, {result.served:.0f} requests served)"
        )
    print(f"best: {best:.2f} s wall, {best_cpu:.2f} s CPU for 24 h at 1 s steps, {RATE:g} req/s ({overlay})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
