"""The gateway benchmark's resolution line: direct against direct, odd rounds against even rounds."""

from __future__ import annotations

from bench.gateway_bench import Cell, noise_rows
from bench.gateway_loadgen import CellResult, Sample


def direct_cell(round_index: int, ttft_ms: float, total_ms: float, target: str = "direct") -> Cell:
    samples = [Sample(ttft=ttft_ms / 1000, total=total_ms / 1000)] * 10
    return Cell("synthetic", 50, target, round_index, CellResult(concurrency=50, samples=samples,
                                                                  wall_seconds=1.0), None)


def test_noise_is_the_difference_between_odd_and_even_direct_rounds() -> None:
    cells = [direct_cell(1, 5.0, 620.0), direct_cell(1, 9.0, 700.0, target="gateway"),
             direct_cell(2, 6.5, 623.0), direct_cell(3, 5.0, 620.0), direct_cell(4, 6.5, 623.0)]
    assert noise_rows(cells) == [["synthetic", 50, 4, 1.5, 1.5, 3.0, 3.0]]


def test_one_round_gives_no_resolution_row() -> None:
    assert noise_rows([direct_cell(1, 5.0, 620.0)]) == []
