"""Smoke test of the router benchmark: both balancing modes run, the second replica joins each run.

No share or latency is asserted (a shared machine cannot hold one in a few seconds); each mode's row
must be there with its requests counted and no errors, so a mode that fails or measures nothing fails.
"""

from __future__ import annotations

import re

import pytest

from bench.router_bench import main


def test_both_modes_run_with_a_late_second_replica(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "10", "--second-at", "2", "--streams", "4", "--max-num-seqs", "2"]) == 0
    output = capsys.readouterr().out
    rows = re.findall(r"^\| (request|connection) \| (\d+\.\d) \| (\d+) \| (\d+)% \| .* \| (\d+) \|$", output,
                      re.MULTILINE)
    assert [row[0] for row in rows] == ["request", "connection"]
    for _mode, ready_at, after, _share, errors in rows:
        assert float(ready_at) >= 2.0
        assert int(after) > 0
        assert errors == "0"


def test_a_second_replica_outside_the_run_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "5", "--second-at", "5"]) == 2
    assert "--second-at must fall inside the run" in capsys.readouterr().err
