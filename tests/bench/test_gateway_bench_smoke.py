"""Smoke test of the gateway benchmark: its quick mode runs end to end and yields a well-formed table.

It runs against the fast synthetic upstream and the gateway only. LiteLLM's proxy is left out because it
lives in its own virtual environment that the benchmark installs from PyPI (minutes, and network), and
the real vLLM because it needs its CPU build and ~50 s to start: both belong to the full benchmark run,
not to CI. Timing targets are not asserted here (a shared CI machine cannot hold them); the numbers must
only be plausible: present, positive, and ordered (p99 >= p50, total >= TTFT).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.gateway_bench import OVERHEAD_COLUMNS, TABLE_COLUMNS, main

EXPECTED_ROWS = [
    ("synthetic", 1, "direct"), ("synthetic", 1, "gateway"),
    ("synthetic", 50, "direct"), ("synthetic", 50, "gateway"),
    ("synthetic", 200, "direct"), ("synthetic", 200, "gateway"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("gateway-bench")
    json_path = out / "result.json"
    markdown_path = out / "result.md"
    code = main(["--quick", "--no-litellm", "--no-vllm", "--out-dir", str(out / "logs"),
                 "--json-out", str(json_path), "--markdown-out", str(markdown_path)])
    assert code == 0
    data = json.loads(json_path.read_text())
    data["markdown"] = markdown_path.read_text()
    return data


def test_table_has_one_row_per_stream_count_and_target(report: dict[str, object]) -> None:
    table = report["table"]
    assert table["columns"] == list(TABLE_COLUMNS)
    assert [(row[0], row[1], row[2]) for row in table["rows"]] == EXPECTED_ROWS


def test_every_cell_has_plausible_positive_latencies(report: dict[str, object]) -> None:
    for row in report["table"]["rows"]:
        cell = dict(zip(TABLE_COLUMNS, row, strict=True))
        where = f"{cell['upstream']}/{cell['streams']}/{cell['target']}"
        assert cell["errors"] == 0, where
        assert cell["requests"] >= cell["streams"], where
        assert cell["req_per_s"] > 0, where
        assert 0 < cell["ttft_p50_ms"] <= cell["ttft_p99_ms"], where
        assert 0 < cell["total_p50_ms"] <= cell["total_p99_ms"], where
        assert cell["ttft_p50_ms"] <= cell["total_p50_ms"], where
        # 32 chunks 20 ms apart on the upstream's clock: a stream cannot end in less than 31 intervals.
        assert cell["total_p50_ms"] >= 31 * 20, where
        if cell["target"] == "gateway":
            assert cell["proxy_cpu_ms_per_req"] > 0, where
            for column in ("added_ttft_p50_ms", "added_ttft_p99_ms", "added_total_p50_ms",
                           "added_total_p99_ms"):
                assert math.isfinite(cell[column]), (where, column)
        else:
            assert cell["proxy_cpu_ms_per_req"] is None, where


def test_overhead_table_and_targets_are_reported(report: dict[str, object]) -> None:
    overhead = report["overhead"]
    assert overhead["columns"] == list(OVERHEAD_COLUMNS)
    assert [(row[0], row[1]) for row in overhead["rows"]] == [("synthetic", 1), ("synthetic", 50),
                                                              ("synthetic", 200)]
    names = [check["name"] for check in report["targets"]]
    assert names == [
        "gateway added total p50 @50 streams (synthetic)",
        "gateway added total p99 @50 streams (synthetic)",
        "gateway added TTFT p50 @50 streams (synthetic)",
        "gateway added TTFT p99 @50 streams (synthetic)",
        "LiteLLM/gateway added total p50 @50 streams",
        "LiteLLM/gateway added TTFT p50 @50 streams",
        "gateway RSS growth over 300 requests",
    ]
    # Without LiteLLM the ratios are "not measured", never a pass.
    assert [check["met"] for check in report["targets"][4:6]] == [None, None]
    assert "| upstream | streams | target |" in report["markdown"]


def test_memory_is_sampled_over_the_whole_run(report: dict[str, object]) -> None:
    memory = report["memory"]
    assert memory["requests"] == 300
    assert memory["errors"] == 0
    assert len(memory["samples_mib"]) == 4  # the baseline, then after each of 3 chunks
    assert all(sample > 10 for sample in memory["samples_mib"])
    assert memory["baseline_rss_mib"] == memory["samples_mib"][0]
    assert memory["final_rss_mib"] == memory["samples_mib"][-1]


def test_bad_concurrency_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--no-litellm", "--no-vllm", "--concurrency", "0", "--out-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--concurrency values must be positive" in capsys.readouterr().err
