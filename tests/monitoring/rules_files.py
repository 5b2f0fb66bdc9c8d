"""The repository's Prometheus rules as a plain rules file, taken from the rendered PrometheusRule.

Tests never keep a copy of the rules: they render the overlay (kubectl's kustomize), take the
PrometheusRule's `spec` (a Prometheus rules file: `groups`) and write it where promtool or Prometheus
reads it. `scaled` shortens every duration of the file (group intervals, `for:`, range selectors) by
one factor and changes nothing else — the end-to-end test runs the real alerts on seconds, not minutes.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from tests.manifests.rendered_manifests import render

RULE_NAME = "llm-inference"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_RANGE = re.compile(r"\[(\d+[hms](?:\d+[ms])?)\]")


def rules_document(overlay: str = "overlays/prod") -> dict[str, Any]:
    """The PrometheusRule's spec (`{"groups": [...]}`) as the overlay renders it."""
    return copy.deepcopy(render(overlay).one("PrometheusRule", RULE_NAME)["spec"])


def write_rules(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def alerts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}


def _seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    if not match or not duration:
        raise ValueError(f"unsupported duration {duration!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _scaled_duration(duration: str, factor: int) -> str:
    return f"{max(1, _seconds(duration) // factor)}s"


def scaled(document: dict[str, Any], factor: int) -> dict[str, Any]:
    """A copy of the rules file with every duration divided by `factor` (at least 1 s)."""
    result = copy.deepcopy(document)
    for group in result["groups"]:
        if "interval" in group:
            group["interval"] = _scaled_duration(group["interval"], factor)
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = _scaled_duration(rule["for"], factor)
            expr = str(rule["expr"])
            rule["expr"] = _RANGE.sub(lambda m: f"[{_scaled_duration(m.group(1), factor)}]", expr)
    return result
