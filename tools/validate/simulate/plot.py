"""A PNG of one or more runs: arrivals, queue, running replicas and ready GPU nodes over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import numpy as np

from tools.validate.simulate.engine import SimResult

POLICY_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def plot(results: Sequence[SimResult], path: Path, title: str, slo_wait: float | None = None) -> None:
    """One colour per run in every panel: arrivals, queue, queue wait against the objective, rejected and
    held requests, replicas, GPU nodes by capacity type (dashed: on-demand) with reclaims marked."""
    fig, axes = plt.subplots(6, 1, figsize=(10, 13), sharex=True)
    first = results[0].series
    minutes = first.time / 60.0
    axes[0].plot(minutes, first.arrivals, color="black")
    axes[0].set_ylabel("arrivals (req/s)")
    for index, result in enumerate(results):
        colour = POLICY_COLOURS[index % len(POLICY_COLOURS)]
        s = result.series
        m = s.time / 60.0
        axes[1].plot(m, s.waiting, color=colour, label=f"{result.name} waiting")
        axes[2].plot(m, s.max_wait, color=colour, label=result.name)
        axes[3].plot(m, np.cumsum(s.rejected), color=colour, label=f"{result.name} rejected (cumulative)")
        if s.held is not None:
            axes[3].plot(m, s.held, color=colour, linestyle="--", label=f"{result.name} held")
        axes[4].step(m, s.ready_replicas, where="post", color=colour, label=f"{result.name} ready")
        axes[4].step(m, s.desired_replicas, where="post", color=colour, linestyle=":", alpha=0.7)
        if s.spot_nodes is not None:
            axes[5].step(m, s.spot_nodes, where="post", color=colour, label=f"{result.name} Spot")
            axes[5].step(m, s.ready_gpu_nodes - s.spot_nodes, where="post", color=colour, linestyle="--",
                         label=f"{result.name} on-demand")
        else:
            axes[5].step(m, s.ready_gpu_nodes, where="post", color=colour, label=result.name)
        for node in result.nodes:
            if node.capacity_type == "spot" and node.cordoned and node.gone_at < result.end_time:
                axes[5].axvline((node.gone_at - 120.0) / 60.0, color=colour, alpha=0.4, linewidth=0.8)
    if slo_wait is not None:
        axes[2].axhline(slo_wait, color="red", linewidth=0.8, label="wait objective")
    axes[1].set_ylabel("queue (requests)")
    axes[2].set_ylabel("longest queue wait (s)")
    axes[3].set_ylabel("rejected / held")
    axes[4].set_ylabel("replicas (ready, desired dotted)")
    axes[5].set_ylabel("ready GPU nodes (lines: reclaims)")
    axes[5].set_xlabel("minutes")
    for ax in axes[1:]:
        ax.legend(loc="upper right", fontsize="small")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


BEFORE_COLOUR, AFTER_COLOUR = "tab:blue", "tab:orange"


def plot_comparison(pairs: Sequence[Any], path: Path, title: str, objectives: Any) -> None:
    """Base against head, one column per scenario (first seed), one colour per revision in every panel:
    arrivals, latency against the objectives, rejected and held requests, replicas, GPU nodes by
    capacity type with Spot interruptions marked."""
    columns = [p for p in pairs if p.before is not None or p.after is not None]
    fig, axes = plt.subplots(5, len(columns), figsize=(6 * len(columns), 12), squeeze=False)
    for c, pair in enumerate(columns):
        ax = axes[:, c]
        ax[0].set_title(f"{pair.name}")
        for label, side, colour in (("base", pair.before, BEFORE_COLOUR), ("head", pair.after, AFTER_COLOUR)):
            if side is None:
                continue
            result = side.last
            s = result.series
            hours = s.time > 7200
            scale, unit = (3600.0, "hours") if hours.any() else (60.0, "minutes")
            t = s.time / scale
            if label == "base":
                ax[0].plot(t, s.arrivals, color="black")
            ready = s.ready_replicas
            ax[1].plot(t, s.max_wait, color=colour, label=f"{label}: longest queue wait")
            ax[2].plot(t, np.cumsum(s.rejected), color=colour, label=f"{label}: rejected (cumulative)")
            if s.held is not None:
                ax[2].plot(t, s.held, color=colour, linestyle="--", label=f"{label}: in the hold")
            ax[3].step(t, ready, where="post", color=colour, label=f"{label}: ready")
            ax[3].step(t, s.desired_replicas, where="post", color=colour, linestyle=":", alpha=0.6)
            spot = s.spot_nodes if s.spot_nodes is not None else np.zeros_like(s.ready_gpu_nodes)
            ax[4].step(t, spot, where="post", color=colour, label=f"{label}: Spot")
            ax[4].step(t, s.ready_gpu_nodes - spot, where="post", color=colour, linestyle="--",
                       label=f"{label}: on-demand")
            for node in result.nodes:
                if node.capacity_type == "spot" and node.cordoned and node.gone_at < result.end_time:
                    ax[4].axvline((node.gone_at - 120.0) / scale, color=colour, alpha=0.4, linewidth=0.8)
            ax[4].set_xlabel(unit)
        ax[1].axhline(objectives.ttft_seconds, color="red", linewidth=0.8, label="TTFT objective")
        ax[1].set_yscale("symlog", linthresh=1.0)
        ax[0].set_ylabel("arrivals (req/s)")
        ax[1].set_ylabel("queue wait (s); TTFT = wait + prefill")
        ax[2].set_ylabel("requests")
        ax[3].set_ylabel("replicas (desired dotted)")
        ax[4].set_ylabel("GPU nodes (lines: reclaims)")
        for a in ax[1:]:
            a.legend(loc="upper right", fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
