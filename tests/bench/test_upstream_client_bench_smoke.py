"""Smoke test of the upstream client benchmark: both clients run against the synthetic upstream.

No timing is asserted (a shared CI machine cannot hold a ratio); each row must be present with a
positive figure, so a client that fails or reads nothing fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.upstream_client_bench import main


def test_both_clients_are_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--requests", "20", "--rounds", "1", "--out-dir", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    rows = dict(re.findall(r"^\| (aiohttp|UpstreamPool) \| (\d+) \| \d+ \|$", output, re.MULTILINE))
    assert set(rows) == {"aiohttp", "UpstreamPool"}
    assert all(int(cpu) > 0 for cpu in rows.values())
    assert re.search(r"^CPU ratio aiohttp / UpstreamPool: \d+\.\dx$", output, re.MULTILINE)


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--requests", "0"])
    assert exited.value.code == 2
    assert "must be positive" in capsys.readouterr().err
