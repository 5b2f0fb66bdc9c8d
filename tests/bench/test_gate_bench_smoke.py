"""Smoke test of the policy gate's benchmark (`bench.gate_bench`).

It runs the bench in `--quick` mode: the gate's stages only, on overlays/prod (render included) and
on a generated corpus of ~100 resources, one repeat. Checkov is left out on purpose: it lives in its
own virtualenv (created on first use with a network install), takes seconds just to start and
minutes on the real corpora, so it belongs to the full benchmark, not to a test. No timing target
is asserted here (the machine is shared; targets are judged by the full run, see bench/README.md):
only the table's shape and that every figure is a positive number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import gate_bench


def test_quick_run_reports_every_gate_stage_with_positive_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cores_before = os.sched_getaffinity(0)
    out = tmp_path / "results.json"

    assert gate_bench.main(["--quick", "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0

    assert os.sched_getaffinity(0) == cores_before  # the pin to one core is undone
    results = json.loads(out.read_text(encoding="utf-8"))
    rows = results["rows"]
    assert [(row["corpus"], row["stage"]) for row in rows] == [
        ("all", gate_bench.STAGE_STARTUP),
        *(("overlays-prod", stage) for stage in (*gate_bench.RENDER_STAGES, *gate_bench.CHECK_STAGES)),
        *(("generated-100", stage) for stage in (gate_bench.STAGE_PARSE, *gate_bench.CHECK_STAGES)),
    ]
    resources = {row["corpus"]: row["resources"] for row in rows}
    # prod renders 45 resources; the generated corpus is 3 copies of prod's 43 plus its 2 Namespaces.
    assert resources == {"all": 1, "overlays-prod": 45, "generated-100": 131}
    columns = {"corpus", "resources", "stage", "wall_s", "cpu_s", "per_s_wall", "per_s_cpu", "repeats"}
    assert set(rows[0]) == columns
    for row in rows:
        if row["stage"] == gate_bench.STAGE_ORIGINS:
            continue  # a difference of two timings: small, may round either way
        assert row["wall_s"] > 0 and row["cpu_s"] > 0, row
        assert row["per_s_wall"] > 0 and row["per_s_cpu"] > 0, row
        assert row["repeats"] == 1
    assert results["machine"]["checkov"] is False
    assert results["machine"]["nproc"] == os.cpu_count()

    printed = capsys.readouterr().out
    assert "| generated-100 | 131 | schema + policy |" in printed
    assert "generated-100: schema + policy" in printed
    assert "checkov" not in printed.lower()


def test_a_checkov_scan_stopped_at_the_time_limit_gives_a_lower_bound_ratio() -> None:
    rows = [
        gate_bench.Row("generated-10000", 10_019, gate_bench.STAGE_CLI, 4.0, 4.0, 2_504.75, 2_504.75, 1),
        gate_bench.Row("generated-10000", 10_019, gate_bench.STAGE_CHECKOV_STOPPED, 1_800.0, 1_500.0,
                       10_019 / 1_800.0, 10_019 / 1_500.0, 1),
        gate_bench.Row("generated-2000", 2_018, gate_bench.STAGE_CLI, 4.0, 2.0, 504.5, 1_009.0, 1),
        gate_bench.Row("generated-2000", 2_018, gate_bench.STAGE_CHECKOV, 30.0, 30.0, 2_018 / 30.0,
                       2_018 / 30.0, 1),
    ]

    assert gate_bench.verdicts(rows) == [
        "generated-10000: gate CLI vs Checkov at least 450.0x wall, at least 375.0x CPU "
        "(Checkov stopped at the time limit): 10x target met",
        "generated-2000: gate CLI vs Checkov 7.5x wall, 15.0x CPU: 10x target NOT met",
    ]
