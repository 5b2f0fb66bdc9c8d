"""Load profiles: arrival rates over time, from a built-in shape, a CSV file or a k6 script.

- Built-ins: `spike` (the reference's audience spike), `ramp`, `diurnal` (one day).
- CSV: a header `t_seconds,requests_per_second`, then rows with increasing t; the rate is interpolated
  linearly between rows and the profile ends at the last row.
- k6: the `stages` of `export const options` (top level, or in `scenarios` with the `ramping-vus` or
  `ramping-arrival-rate` executor), read from the script's syntax tree (esprima), never by regex.
  Virtual users are closed-loop: each sends a request, waits for the answer, then sleeps. We turn VUs
  into an open arrival rate with `rate = VUs / (think_seconds + response_seconds)`, where the think time
  is the sum of the mean durations of the script's `sleep(...)` calls (numbers, arithmetic and
  `Math.random()`; otherwise the hardware profile's default) and the
  response time is the replica's service time at full batch. Arrival-rate executors are taken as given.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import esprima
import numpy as np


class LoadProfileError(ValueError):
    pass


@dataclass(frozen=True)
class LoadProfile:
    """Arrival rate (requests/s) at the points `times` (s), linear in between."""

    name: str
    times: np.ndarray
    rates: np.ndarray
    description: str = ""

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def sample(self, step_seconds: float) -> np.ndarray:
        """The mean rate over each step [k·dt, (k+1)·dt)."""
        steps = max(1, math.ceil(self.duration / step_seconds))
        mids = (np.arange(steps) + 0.5) * step_seconds
        return np.interp(mids, self.times, self.rates)


def _points(name: str, description: str, points: list[tuple[float, float]]) -> LoadProfile:
    times, rates = zip(*points, strict=True)
    return LoadProfile(name, np.array(times, float), np.array(rates, float), description)


def spike() -> LoadProfile:
    """The reference's audience spike: a quiet room, then a few hundred phones scan the QR code."""
    return _points(
        "spike",
        "0.5 req/s for 60 s, a jump to 20 req/s held 10 min, 2 req/s for 20 min",
        [(0, 0.5), (60, 0.5), (61, 20.0), (660, 20.0), (661, 2.0), (1860, 2.0)],
    )


def ramp() -> LoadProfile:
    return _points(
        "ramp",
        "0.5 -> 30 req/s over 30 min, held 15 min, back to 0.5 req/s for 15 min",
        [(0, 0.5), (1800, 30.0), (2700, 30.0), (2701, 0.5), (3600, 0.5)],
    )


def diurnal() -> LoadProfile:
    hours = np.arange(0, 24.25, 0.25)
    # Night floor 0.5 req/s, business-hours hump peaking at 25 req/s at 14:00.
    hump = np.clip(np.sin((hours - 8.0) / 12.0 * np.pi), 0.0, None) ** 2
    rates = 0.5 + 24.5 * hump
    return LoadProfile("diurnal", hours * 3600.0, rates, "one day: 0.5 req/s at night, 25 req/s at 14:00")


BUILTIN_LOADS: Mapping[str, Callable[[], LoadProfile]] = {"spike": spike, "ramp": ramp, "diurnal": diurnal}
DEFAULT_LOAD = "spike"


def load_csv(path: Path) -> LoadProfile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadProfileError(f"{path}: cannot read ({exc.strerror})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["t_seconds", "requests_per_second"]:
        raise LoadProfileError(f"{path}:1: the header must be 't_seconds,requests_per_second'")
    points: list[tuple[float, float]] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise LoadProfileError(f"{path}:{line_no}: expected 2 columns, got {len(row)}")
        try:
            t, rate = float(row[0]), float(row[1])
        except ValueError:
            raise LoadProfileError(f"{path}:{line_no}: not a number in {','.join(row)!r}") from None
        if not (math.isfinite(t) and math.isfinite(rate)):
            raise LoadProfileError(f"{path}:{line_no}: values must be finite")
        if rate < 0:
            raise LoadProfileError(f"{path}:{line_no}: requests_per_second must be >= 0, got {rate:g}")
        if points and t <= points[-1][0]:
            raise LoadProfileError(
                f"{path}:{line_no}: t_seconds must increase ({t:g} after {points[-1][0]:g})"
            )
        if not points and t != 0:
            raise LoadProfileError(f"{path}:{line_no}: the first row must be at t_seconds 0")
        points.append((t, rate))
    if len(points) < 2:
        raise LoadProfileError(f"{path}: at least two rows are needed")
    return _points(path.stem, f"CSV {path.name}", points)


# --- k6 ---------------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def k6_duration(text: str) -> float:
    """k6 durations are Go durations (`30s`, `1m30s`, `2h`, `500ms`)."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise LoadProfileError(f"not a k6 duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _literal(node: Any, where: str) -> Any:
    kind = node.type
    if kind == "Literal":
        return node.value
    if kind == "TemplateLiteral" and not node.expressions:
        return "".join(q.value.cooked for q in node.quasis)
    if kind == "UnaryExpression" and node.operator == "-" and node.argument.type == "Literal":
        return -node.argument.value
    if kind == "ArrayExpression":
        return [_literal(e, f"{where}[{i}]") for i, e in enumerate(node.elements)]
    if kind == "ObjectExpression":
        out: dict[str, Any] = {}
        for prop in node.properties:
            if prop.type != "Property":
                raise LoadProfileError(f"{where}: spread or computed properties are not supported")
            key = prop.key.name if prop.key.type == "Identifier" else str(prop.key.value)
            out[key] = _literal(prop.value, f"{where}.{key}")
        return out
    raise LoadProfileError(f"{where}: must be a literal value (found {kind})")


def _nodes(node: Any) -> Iterator[Any]:
    """Every syntax-tree node below `node`."""
    if isinstance(node, list):
        for item in node:
            yield from _nodes(item)
        return
    if not hasattr(node, "type"):
        return
    yield node
    for value in vars(node).values():
        if isinstance(value, list) or hasattr(value, "type"):
            yield from _nodes(value)


def _mean_seconds(node: Any) -> float | None:
    """The mean of a sleep() argument built from numbers, + - * / and Math.random() (mean 0.5; exact for
    the linear expressions scripts use, e.g. `2 + Math.random() * 6`); None for anything else."""
    if node.type == "Literal" and isinstance(node.value, int | float):
        return float(node.value)
    if (
        node.type == "CallExpression"
        and node.callee.type == "MemberExpression"
        and getattr(node.callee.object, "name", None) == "Math"
        and getattr(node.callee.property, "name", None) == "random"
    ):
        return 0.5
    if node.type == "BinaryExpression" and node.operator in "+-*/":
        left, right = _mean_seconds(node.left), _mean_seconds(node.right)
        if left is None or right is None or (node.operator == "/" and right == 0):
            return None
        return {"+": left + right, "-": left - right, "*": left * right, "/": left / (right or 1.0)}[
            node.operator
        ]
    return None


@dataclass(frozen=True)
class K6Script:
    options: Mapping[str, Any]
    think_seconds: float | None  # sum of the sleep() calls' mean durations, None when there is none


def parse_k6_script(source: str, origin: str = "k6 script") -> K6Script:
    try:
        tree = esprima.parseModule(source)
    except esprima.Error as exc:
        raise LoadProfileError(f"{origin}: not valid JavaScript ({exc})") from None
    options = None
    sleeps: list[float] = []
    for node in _nodes(tree.body):
        if node.type == "VariableDeclarator" and node.id.type == "Identifier" and node.id.name == "options":
            if node.init is None or node.init.type != "ObjectExpression":
                raise LoadProfileError(f"{origin}: `options` must be an object literal")
            options = _literal(node.init, "options")
        if (
            node.type == "CallExpression"
            and node.callee.type == "Identifier"
            and node.callee.name == "sleep"
            and node.arguments
        ):
            mean = _mean_seconds(node.arguments[0])
            if mean is not None:
                sleeps.append(mean)
    if options is None:
        raise LoadProfileError(f"{origin}: no `export const options = {{...}}` found")
    return K6Script(options=options, think_seconds=sum(sleeps) if sleeps else None)


def _stages(stages: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(stages, list) or not stages:
        raise LoadProfileError(f"{where}: expected a non-empty list of {{duration, target}}")
    out = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or "duration" not in stage or "target" not in stage:
            raise LoadProfileError(f"{where}[{i}]: needs duration and target")
        try:
            out.append((k6_duration(str(stage["duration"])), float(stage["target"])))
        except LoadProfileError as exc:
            raise LoadProfileError(f"{where}[{i}].duration: {exc}") from None
    return out


def _ramp_points(
    start_value: float, stages: list[tuple[float, float]], offset: float
) -> list[tuple[float, float]]:
    t, points = offset, [(offset, start_value)]
    for duration, target in stages:
        t += duration
        points.append((t, target))
    return points


def k6_load(
    script: K6Script, name: str, response_seconds: float, default_think_seconds: float
) -> LoadProfile:
    """Arrival rates implied by the script's executors (see the module docstring for the VU mapping)."""
    think = script.think_seconds if script.think_seconds is not None else default_think_seconds
    per_vu = 1.0 / (think + response_seconds)
    curves: list[list[tuple[float, float]]] = []
    if "stages" in script.options:
        curves.append(
            [
                (t, v * per_vu)
                for t, v in _ramp_points(0.0, _stages(script.options["stages"], "options.stages"), 0.0)
            ]
        )
    for sc_name, scenario in (script.options.get("scenarios") or {}).items():
        where = f"options.scenarios.{sc_name}"
        executor = scenario.get("executor")
        offset = k6_duration(str(scenario.get("startTime", "0s")))
        stages = _stages(scenario.get("stages"), f"{where}.stages")
        if executor == "ramping-vus":
            points = _ramp_points(float(scenario.get("startVUs", 1)), stages, offset)
            curves.append([(t, v * per_vu) for t, v in points])
        elif executor == "ramping-arrival-rate":
            unit = k6_duration(str(scenario.get("timeUnit", "1s")))
            points = _ramp_points(float(scenario.get("startRate", 0)), stages, offset)
            curves.append([(t, v / unit) for t, v in points])
        else:
            raise LoadProfileError(
                f"{where}.executor: {executor!r} is not supported (ramping-vus, ramping-arrival-rate)"
            )
    if not curves:
        raise LoadProfileError("options: neither `stages` nor `scenarios` with stages")
    end = max(c[-1][0] for c in curves)
    grid = np.unique(np.concatenate([[0.0, end], *[[t for t, _ in c] for c in curves]]))
    total = np.zeros_like(grid)
    for curve in curves:
        ts, vs = np.array([t for t, _ in curve]), np.array([v for _, v in curve])
        inside = (grid >= ts[0]) & (grid <= ts[-1])
        total += np.where(inside, np.interp(grid, ts, vs), 0.0)
    desc = f"k6 {name}: think {think:g} s + response {response_seconds:.1f} s per VU iteration"
    return LoadProfile(name, grid, total, desc)


def load_profile(spec: str, response_seconds: float, default_think_seconds: float) -> LoadProfile:
    """A built-in name, a `.csv` file or a k6 `.js` file."""
    if spec in BUILTIN_LOADS:
        return BUILTIN_LOADS[spec]()
    path = Path(spec)
    if path.suffix == ".csv":
        return load_csv(path)
    if path.suffix in (".js", ".mjs"):
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise LoadProfileError(f"{path}: cannot read ({exc.strerror})") from None
        return k6_load(parse_k6_script(source, str(path)), path.stem, response_seconds, default_think_seconds)
    known = ", ".join(BUILTIN_LOADS)
    raise LoadProfileError(f"unknown profile {spec!r}: use a built-in ({known}), a .csv or a k6 .js file")
