"""Load profiles: built-ins, CSV files and k6 scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.validate.simulate.load import (
    LoadProfileError,
    k6_duration,
    k6_load,
    load_csv,
    load_profile,
    parse_k6_script,
)

REPO = Path(__file__).resolve().parents[3]
K6_FIXTURE = Path(__file__).parent / "fixtures" / "audience.js"


def test_builtin_spike_jumps_after_a_minute() -> None:
    rates = load_profile("spike", 3.0, 1.0).sample(1.0)
    assert rates[30] == 0.5 and rates[120] == 20.0 and len(rates) == 1860


def test_csv_is_interpolated(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text("t_seconds,requests_per_second\n0,0\n10,10\n20,10\n")
    rates = load_csv(path).sample(1.0)
    assert rates.tolist()[:3] == [0.5, 1.5, 2.5] and rates[15] == 10.0 and len(rates) == 20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,rate\n0,1\n", "day.csv:1: the header must be 't_seconds,requests_per_second'"),
        ("t_seconds,requests_per_second\n0,1\n5,x\n", "day.csv:3: not a number in '5,x'"),
        ("t_seconds,requests_per_second\n0,1\n5,-1\n", "day.csv:3: requests_per_second must be >= 0, got -1"),
        ("t_seconds,requests_per_second\n0,1\n5,1\n5,2\n", "day.csv:4: t_seconds must increase (5 after 5)"),
        ("t_seconds,requests_per_second\n0,1\n", "day.csv: at least two rows are needed"),
        ("t_seconds,requests_per_second\n3,1\n5,1\n", "day.csv:2: the first row must be at t_seconds 0"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "day.csv"
    path.write_text(text)
    with pytest.raises(LoadProfileError) as info:
        load_csv(path)
    assert str(info.value) == f"{tmp_path}/{message}"


def test_k6_durations() -> None:
    assert [k6_duration(d) for d in ("30s", "1m30s", "2h", "500ms")] == [30, 90, 7200, 0.5]
    with pytest.raises(LoadProfileError):
        k6_duration("3 minutes")


def test_k6_fixture_stages_and_think_time() -> None:
    script = parse_k6_script(K6_FIXTURE.read_text())
    assert script.options["stages"] == [
        {"duration": "30s", "target": 20},
        {"duration": "1m", "target": 100},
        {"duration": "30s", "target": 0},
    ]
    assert script.think_seconds == 2.0
    load = k6_load(script, "audience", response_seconds=3.0, default_think_seconds=1.0)
    # 100 VUs each looping every 2 s think + 3 s response = 20 requests/s at the top of the ramp.
    assert load.times.tolist() == [0, 30, 90, 120]
    assert np.allclose(load.rates, [0.0, 4.0, 20.0, 0.0])


def test_k6_arrival_rate_scenario() -> None:
    source = """
    export const options = {
      scenarios: {
        burst: {executor: 'ramping-arrival-rate', startRate: 0, timeUnit: '1m',
                stages: [{duration: '1m', target: 600}, {duration: '1m', target: 600}]},
      },
    };
    export default function () {}
    """
    load = k6_load(parse_k6_script(source), "burst", response_seconds=3.0, default_think_seconds=1.0)
    assert load.times.tolist() == [0, 60, 120] and load.rates.tolist() == [0, 10, 10]


def test_k6_options_must_be_literal() -> None:
    with pytest.raises(LoadProfileError, match=r"options.stages\[0\].target: must be a literal value"):
        parse_k6_script("const n = 5; export const options = {stages: [{duration: '1s', target: n}]};")


def test_k6_script_in_loadtest_parses() -> None:
    scripts = sorted((REPO / "loadtest").glob("*.js"))
    assert scripts, "loadtest/ holds the k6 script of the audience load"
    for path in scripts:
        script = parse_k6_script(path.read_text(), str(path))
        assert script.think_seconds is not None, f"{path}: no sleep() the simulator can read"
        load = load_profile(str(path), 3.0, 1.0)
        assert load.duration > 0 and load.rates.max() > 0, path


def test_k6_random_sleep_counts_at_its_mean() -> None:
    script = parse_k6_script("export const options = {stages: []}; sleep(2 + Math.random() * 6); sleep(1);")
    assert script.think_seconds == 6.0
