"""Policy changes between two revisions: what a change does to the gate itself.

A pull request carries its own `gate.yaml` and its own suppression annotations, so it can weaken the
policy that judges it. Every such change is listed for the reviewer, in words that say which way it
goes: a rule disabled, a severity lowered, the fail level raised, a limit or build option changed, a
rule option changed, a suppression added, extended, or made permanent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.validate.config import DEFAULT_CONFIG_NAME
from tools.validate.loader import InputError, load_one_mapping, load_text
from tools.validate.model import Resource, Severity
from tools.validate.sandbox import contained
from tools.validate.suppress import SUPPRESS_ANNOTATION

ARROW = "→"


def read_gate_config(tree: Path) -> tuple[dict[str, Any], str | None]:
    """The tree's gate.yaml as plain values ({} when absent) and, when it cannot be read, why."""
    path = tree / DEFAULT_CONFIG_NAME
    if not path.is_file():
        return {}, None
    if contained(path, tree) is None:
        return {}, f"{DEFAULT_CONFIG_NAME}: a symlink that resolves outside the repository"
    try:
        return load_one_mapping(path, DEFAULT_CONFIG_NAME), None
    except InputError as exc:
        return {}, str(exc)


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Every changed setting of gate.yaml, saying when it weakens the gate."""
    old, new = _flatten(before), _flatten(after)
    changes: list[str] = []
    for key in sorted(set(old) | set(new), key=_order(list(old), list(new))):
        if old.get(key, _UNSET) == new.get(key, _UNSET):
            continue
        changes.append(_describe(key, old.get(key, _UNSET), new.get(key, _UNSET)))
    return changes


def suppression_changes(env: str, before: Sequence[Resource], after: Sequence[Resource]) -> list[str]:
    """Suppression annotations added, removed, extended or shortened between two renderings."""
    old, new = _suppressions(before), _suppressions(after)
    changes: list[str] = []
    for ref in sorted(set(old) | set(new)):
        was, now = old.get(ref, {}), new.get(ref, {})
        for rule in sorted(set(was) | set(now)):
            where = f"{env}: {ref}: suppression of {rule}"
            if rule not in was:
                changes.append(f"{where} added (weakens: {_until(now[rule])})")
            elif rule not in now:
                changes.append(f"{where} removed")
            elif was[rule] != now[rule]:
                longer = _later(now[rule], was[rule])
                verdict = "weakens: extended" if longer else "shortened"
                changes.append(f"{where} {verdict}, {_until(was[rule])} {ARROW} {_until(now[rule])}")
    return changes


_UNSET = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value} if prefix else {}


def _order(*key_lists: list[str]) -> Any:
    position: dict[str, int] = {}
    for keys in key_lists:
        for key in keys:
            position.setdefault(key, len(position))
    return lambda key: position[key]


def _fmt(value: Any) -> str:
    if value is _UNSET:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _describe(key: str, old: Any, new: Any) -> str:
    change = f"gate.yaml {key}: {_fmt(old)} {ARROW} {_fmt(new)}"
    last = key.rsplit(".", 1)[-1]
    verdict: str | None = None
    if key == "fail_level":
        if _severity(new, Severity.WARNING) > _severity(old, Severity.WARNING):
            verdict = "weakens: fewer findings fail the run"
    elif last == "enabled":
        if new is False:
            verdict = "weakens: rule disabled"
    elif last == "severity":
        if _severity(new, Severity.ERROR) < _severity(old, Severity.ERROR):
            verdict = "weakens: severity lowered"
    elif key.startswith("kustomize.build_options"):
        verdict = "changes how every overlay renders"
    elif key.startswith(("limits.", "kustomize.")) and _number(new) > _number(old):
        verdict = "weakens: limit raised"
    elif key.startswith(("rules.", "environments.")) and ".rules." in f".{key}":
        verdict = "rule option changed: check it does not loosen the rule"
    elif key.startswith("environments.") and ".slo." in key:
        if _number(new) > _number(old):
            verdict = "weakens: latency objective loosened, the comment scores against it"
    elif key.startswith("environments.") and key.endswith(".paths"):
        verdict = "changes which rules apply where"
    return f"{change} ({verdict})" if verdict else change


def _severity(value: Any, default: Severity) -> Severity:
    if value is _UNSET or not isinstance(value, str):
        return default
    try:
        return Severity.parse(value)
    except ValueError:
        return default


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("inf") if value is _UNSET else 0.0  # unset means the (highest) default


def _suppressions(resources: Iterable[Resource]) -> dict[str, dict[str, str | None]]:
    found: dict[str, dict[str, str | None]] = {}
    for resource in resources:
        text = resource.annotations.get(SUPPRESS_ANNOTATION)
        if text is None:
            continue
        try:
            documents = load_text(str(text), SUPPRESS_ANNOTATION).documents
        except InputError:
            continue
        entries = documents[0] if len(documents) == 1 and isinstance(documents[0], list) else []
        rules = found.setdefault(resource.ref(), {})
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("rule"), str):
                expires = entry.get("expires")
                rules[entry["rule"]] = None if expires is None else str(expires)
    return found


def _until(expires: str | None) -> str:
    return "no expiry" if expires is None else f"until {expires}"


def _later(now: str | None, was: str | None) -> bool:
    if now is None:
        return was is not None
    if was is None:
        return False
    try:
        return dt.date.fromisoformat(now) > dt.date.fromisoformat(was)
    except ValueError:
        return now != was
