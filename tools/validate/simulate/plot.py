"""A PNG of one or more runs: arrivals, queue, running replicas and ready GPU nodes over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt

from tools.validate.simulate.engine import SimResult


def plot(results: Sequence[SimResult], path: Path, title: str) -> None:
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    first = results[0].series
    minutes = first.time / 60.0
    axes[0].plot(minutes, first.arrivals, color="black")
    axes[0].set_ylabel("arrivals (req/s)")
    for result in results:
        s = result.series
        m = s.time / 60.0
        axes[1].plot(m, s.waiting, label=f"{result.name} waiting")
        axes[2].step(m, s.ready_replicas, where="post", label=f"{result.name} ready")
        axes[2].step(m, s.desired_replicas, where="post", linestyle=":", alpha=0.7)
        axes[3].step(m, s.ready_gpu_nodes, where="post", label=result.name)
    axes[1].set_ylabel("queue (requests)")
    axes[2].set_ylabel("replicas (ready, desired dotted)")
    axes[3].set_ylabel("ready GPU nodes")
    axes[3].set_xlabel("minutes")
    for ax in axes[1:]:
        ax.legend(loc="upper right", fontsize="small")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
