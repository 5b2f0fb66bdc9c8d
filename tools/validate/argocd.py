"""Argo CD: the Applications of an overlay and of apps/, their sources, sync waves and sync options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tools.validate.model import Context, FieldPath, Resource, sequence


def applications(ctx: Context) -> list[Resource]:
    """Argo CD Applications of the overlay plus those rendered from apps/ (`ctx.extras["applications"]`)."""
    seen: dict[tuple[str, str], Resource] = {}
    for app in [*ctx.of_kind("Application"), *(sequence(ctx.extras.get("applications")))]:
        if isinstance(app, Resource) and app.kind == "Application":
            seen.setdefault((app.namespace, app.name), app)
    return list(seen.values())


def app_sources(app: Resource) -> list[tuple[FieldPath, Mapping[str, Any]]]:
    """(path, source) for `spec.source` and each `spec.sources[i]`."""
    out = []
    if isinstance(app.get("spec", "source"), dict):
        out.append((("spec", "source"), app.get("spec", "source")))
    for i, source in enumerate(sequence(app.get("spec", "sources"))):
        if isinstance(source, dict):
            out.append((("spec", "sources", i), source))
    return out


def sync_wave(resource: Resource) -> int:
    try:
        return int(str(resource.annotations.get("argocd.argoproj.io/sync-wave", "0")).strip())
    except ValueError:
        return 0


def sync_options(app: Resource) -> set[str]:
    return {str(o) for o in sequence(app.get("spec", "syncPolicy", "syncOptions"))}
