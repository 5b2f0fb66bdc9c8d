"""The gate's pipeline for a set of directories: render, load, check, locate, suppress -> Report.

Everything expensive happens once per run: the catalogue, the schema validator, the source files
(`SourceMapper` caches them); each overlay is rendered and parsed once and every rule sees the same
parsed resources.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tools.validate import sandbox, suppress
from tools.validate.argocd import app_sources
from tools.validate.config import GateConfig
from tools.validate.environment_values import EXTRAS_KEY as ENVIRONMENT_VALUES_KEY
from tools.validate.environment_values import environment_values, values_of_environment
from tools.validate.loader import InputError, Limits, load_one_mapping
from tools.validate.model import Context, Finding, Report, Resource, Rule, Severity
from tools.validate.render import (
    KUSTOMIZATION_FILES,
    Rendered,
    RenderError,
    RenderOptions,
    is_kustomization_dir,
    render,
    repo_relative,
)
from tools.validate.rendered_input import RenderedInput
from tools.validate.rules.base import Registry
from tools.validate.sources import SourceMapper

TARGET_ROOTS = ("overlays", "apps", "clusters")
RULE_CRASHED = "input/rule-crashed"
STRICT_ENV = "GATE_RAISE_ON_RULE_CRASH"  # tests set it so a crashing check fails them with its traceback


class SchemaValidatorFactory(Protocol):
    """What the engine needs of `tools.validate.schema.SchemaValidator`: built once per run from
    the Kubernetes version and the `--crd` directories; the schema rules use it as `ctx.schemas`.
    CRD files are read within `limits` (gate.yaml's `limits`). It may raise
    `tools.validate.loader.InputError`, `OSError` or `ValueError` for bad CRD input."""

    def __call__(self, kubernetes_version: str | None, crd_dirs: Sequence[Path], limits: Limits) -> Any: ...


CatalogueLoader = Callable[[], Any]  # `tools.validate.catalogue.load_catalogue`, called once per run


class GateError(Exception):
    """The gate could not run (exit 2): a render failure, bad input, a bad config."""


@dataclass
class RunOptions:
    repo_root: Path
    config: GateConfig
    registry: Registry
    env: str | None = None  # forces the environment of every target
    crd_dirs: Sequence[Path] = ()
    kubernetes_version: str | None = None
    build_options: Sequence[str] = ()  # from the command line: trusted, unlike gate.yaml's
    render_memory_limit: int | None = None  # from the command line; None: gate.yaml's or the default
    render_cache_dir: Path | None = None  # kustomize's outputs kept between runs; None: render afresh
    today: dt.date | None = None
    schemas_factory: SchemaValidatorFactory | None = None  # None: tools.validate.schema if present
    catalogue_loader: CatalogueLoader | None = None  # None: tools.validate.catalogue if present
    raise_on_crash: bool = field(default_factory=lambda: os.environ.get(STRICT_ENV) == "1")


def discover_targets(repo_root: Path, limits: Limits | None = None) -> list[Path]:
    """What `gate validate` checks with no paths: the entry points of overlays/, apps/ and clusters/.

    Candidates are, for each of those directories, the directory itself when it holds a
    kustomization, else each immediate subdirectory that does. A candidate that is a kustomize
    `Component`, or that another kustomization in those trees includes (as a resource or a component),
    is a building block rather than something Argo CD syncs, and is left out.
    """
    limits = limits or Limits()
    candidates: list[Path] = []
    for name in TARGET_ROOTS:
        top = repo_root / name
        if not top.is_dir():
            continue
        if is_kustomization_dir(top):
            candidates.append(top)
            continue
        children = sorted(child for child in top.iterdir() if child.is_dir())
        candidates.extend(child for child in children if is_kustomization_dir(child))
    referenced: set[Path] = set()
    components: set[Path] = set()
    for name in TARGET_ROOTS:
        top = repo_root / name
        if not top.is_dir():
            continue
        # not rglob: it follows symlinked directories, which may lead anywhere
        kustomization_files = (
            Path(current, file_name)
            for current, _, file_names in os.walk(top, followlinks=False)
            for file_name in file_names
            if file_name in KUSTOMIZATION_FILES
        )
        for file in sorted(kustomization_files):
            if not file.is_file() or sandbox.contained(file, repo_root) is None:
                continue  # rendering it will report the problem
            try:
                spec = load_one_mapping(file, limits=limits)
            except InputError:
                continue  # rendering it will report the problem
            if spec.get("kind") == "Component":
                components.add(file.parent.resolve())
            for field_name in ("resources", "components", "bases"):
                for entry in spec.get(field_name) or []:
                    if isinstance(entry, str):
                        referenced.add((file.parent / entry).resolve())
    return [c for c in candidates if c.resolve() not in referenced and c.resolve() not in components]


def run(
    targets: Sequence[Path], options: RunOptions, rendered_inputs: Sequence[RenderedInput] = ()
) -> Report:
    """Render and check every target, then check every already rendered input (files, standard input);
    raises `GateError` when the gate cannot run."""
    today = options.today or suppress.today_utc()
    config = options.config
    render_options = RenderOptions(
        build_options=(*config.build_options, *options.build_options),
        timeout=config.render_timeout,
        limits=config.limits,
        memory_limit=options.render_memory_limit or config.render_memory_limit,
        cache_dir=options.render_cache_dir,
    )
    schemas = build_schemas(options)
    catalogue = build_catalogue(options)
    mapper = SourceMapper(options.repo_root, config.limits)
    findings: list[Finding] = []
    overlays: list[str] = []
    notes: list[str] = []
    resource_count = 0
    target_envs = [options.env or config.environment_of(repo_relative(t, options.repo_root)) for t in targets]
    context_dirs = _context_entry_points(targets, target_envs, options)
    everything = render_all([*targets, *context_dirs], options.repo_root, render_options)
    rendered_targets = everything[: len(targets)]
    target_values = [
        environment_values(t, options.repo_root, config.limits, rendered.inputs)
        for t, rendered in zip(targets, rendered_targets, strict=True)
    ]
    for given in rendered_inputs:
        for origin, text in given.texts.items():
            mapper.add_text(origin, text)
        everything.append(given.rendered)
        rendered_targets.append(given.rendered)
        target_envs.append(options.env)
        # rendered elsewhere: the values of the environment it is checked as, if one was named
        environment = config.environments.get(options.env or "")
        paths = environment.paths if environment is not None else ()
        target_values.append(values_of_environment(paths, options.repo_root, config.limits))
    apps_by_env = _applications_by_env(everything, config)
    sources = application_sources(everything, options.repo_root, render_options)
    for rendered, env, values in zip(rendered_targets, target_envs, target_values, strict=True):
        overlays.append(rendered.overlay)
        resource_count += len(rendered.resources)
        findings.extend(
            check(rendered, env, options, mapper=mapper, schemas=schemas, catalogue=catalogue, today=today,
                  applications=apps_by_env.get(env or "", []), notes=notes, application_sources=sources,
                  environment_values=values)
        )
    return Report(
        findings=findings,
        overlays=overlays,
        resource_count=resource_count,
        rules=options.registry,
        fail_level=config.fail_level,
        notes=notes,
    )


def _context_entry_points(
    targets: Sequence[Path], envs: Sequence[str | None], options: RunOptions
) -> list[Path]:
    """The Argo CD entry points of the targets' environments not already among the targets.

    For each environment, the config's `environments.E.paths` that are kustomizations (apps/E,
    clusters/E, ...): their Applications say how E's overlays are synced, so they are rendered even
    when only `overlays/E` was asked for. A path that turns out to hold no Application costs one
    render and contributes nothing.
    """
    already = {t.resolve() for t in targets}
    out: list[Path] = []
    for env in dict.fromkeys(e for e in envs if e):
        environment = options.config.environments.get(env)
        for configured in environment.paths if environment is not None else ():
            directory = (options.repo_root / configured.strip("/")).resolve()
            if directory in already or not directory.is_dir() or not is_kustomization_dir(directory):
                continue
            already.add(directory)
            out.append(directory)
    return out


def _applications_by_env(rendered: Sequence[Rendered], config: GateConfig) -> dict[str, list[Resource]]:
    """Every Argo CD Application rendered in this run, by the environment of the directory holding it."""
    out: dict[str, list[Resource]] = {}
    for one in rendered:
        env = config.environment_of(one.overlay)
        apps = [r for r in one.resources if r.kind == "Application" and r.group == "argoproj.io"]
        if env and apps:
            out.setdefault(env, []).extend(apps)
    return out


def application_sources(
    rendered: Sequence[Rendered], repo_root: Path, options: RenderOptions
) -> dict[str, str | None]:
    """What became of each repository path an Argo CD Application of this run syncs: None when it renders,
    else why not. Paths rendered in this run are not rendered again; a path outside the repository is
    never opened."""
    done = {one.overlay.strip("/") for one in rendered}
    root = repo_root.resolve()
    out: dict[str, str | None] = {}
    for one in rendered:
        for app in (r for r in one.resources if r.kind == "Application" and r.group == "argoproj.io"):
            for _, source in app_sources(app):
                path = str(source.get("path") or "").strip("/")
                if source.get("chart") or not path or path in out:
                    continue
                directory = (root / path).resolve()
                if not directory.is_relative_to(root):
                    out[path] = "is outside the repository"
                elif not directory.is_dir():
                    out[path] = "does not exist in the repository"
                elif path in done or not is_kustomization_dir(directory):
                    out[path] = None  # rendered above, or a plain directory of manifests
                else:
                    try:
                        render(directory, repo_root, options)
                        out[path] = None
                    except (RenderError, InputError) as exc:
                        out[path] = f"does not render: {exc}"
    return out


def render_all(targets: Sequence[Path], repo_root: Path, options: RenderOptions) -> list[Rendered]:
    """Render every target, kustomize processes running side by side (one per core).

    On failure, the error of the first failing target in `targets` order is raised.
    """
    workers = max(1, min(len(targets), os.cpu_count() or 1))
    if workers == 1:
        return [render(target, repo_root, options) for target in targets]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(render, target, repo_root, options) for target in targets]
        return [future.result() for future in futures]


def check(rendered: Rendered, env: str | None, options: RunOptions, *, mapper: SourceMapper,
          schemas: Any, catalogue: Any, today: dt.date,
          applications: Sequence[Resource] = (), notes: list[str] | None = None,
          application_sources: Mapping[str, str | None] | None = None,
          environment_values: Mapping[str, str] | None = None) -> list[Finding]:
    """Run every enabled rule whose scope matches on one rendered overlay.

    `applications` are the Argo CD Applications of the overlay's environment rendered elsewhere
    (apps/E, clusters/E): the gitops rules relate the overlay to the Application that syncs it.
    `environment_values` are the overlay's own (tools/validate/environment_values.py), None when
    the overlay was rendered elsewhere. The notes the rules leave in `ctx.extras["notes"]` (what they
    could not check) are appended to `notes`, each once.
    """
    registry = options.registry
    config = options.config
    ctx = Context(
        overlay=rendered.overlay,
        env=env,
        resources=rendered.resources,
        catalogue=catalogue,
        schemas=schemas,
        extras={
            "known_rules": registry,
            "today": today,
            "duplicates": rendered.duplicates,
            "applications": list(applications),
            "application_sources": dict(application_sources or {}),
            ENVIRONMENT_VALUES_KEY: environment_values,
        },
        external=[external.as_resource(rendered.overlay) for external in config.external_for(env)],
    )
    kinds = {resource.kind for resource in rendered.resources}
    findings: list[Finding] = []
    for rule in registry:
        if not config.enabled(rule, env) or (rule.scope and not kinds.intersection(rule.scope)):
            continue
        rule_options = config.options_for(rule, env)
        severity = config.severity(rule, env)
        crash = options.raise_on_crash
        findings.extend(_run_rule(rule, ctx, rule_options, severity, rendered, mapper, crash))
    suppress.apply(findings, registry, today)
    if notes is not None:
        notes.extend(note for note in dict.fromkeys(ctx.extras.get("notes") or []) if note not in notes)
    return findings


def _run_rule(rule: Rule, ctx: Context, rule_options: dict[str, Any], severity: Severity, rendered: Rendered,
              mapper: SourceMapper, raise_on_crash: bool) -> list[Finding]:
    findings: list[Finding] = []
    try:
        for violation in rule.check(ctx, rule_options):
            location = None
            if violation.resource is not None:
                patches = rendered.patch_sources.get(violation.resource.index, ())
                location = mapper.locate(violation.resource, violation.path, patches)
            findings.append(
                Finding(
                    rule_id=rule.id,
                    severity=severity,
                    message=violation.message,
                    overlay=rendered.overlay,
                    resource=violation.resource,
                    path=violation.segments,
                    remediation=rule.remediation,
                    location=location,
                )
            )
    except Exception as exc:  # a crashing check becomes a finding, never a traceback
        if raise_on_crash:
            raise
        findings.append(
            Finding(
                rule_id=RULE_CRASHED,
                severity=Severity.ERROR,
                message=f"the check of {rule.id} crashed on {rendered.overlay}: {type(exc).__name__}: {exc}",
                overlay=rendered.overlay,
                remediation="Report this to the gate's maintainers with the overlay that triggers it.",
                extra={"rule": rule.id, "traceback": traceback.format_exc(limit=8)},
            )
        )
    return findings


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def build_schemas(options: RunOptions) -> Any:
    factory = options.schemas_factory
    if factory is None:
        module = _optional("tools.validate.schema")
        if module is None:
            return None
        factory = module.SchemaValidator
    crd_dirs = [*options.crd_dirs, *(_repository_crd_dir(d, options) for d in options.config.crd_dirs)]
    version = options.kubernetes_version or options.config.kubernetes_version
    try:
        return factory(version, crd_dirs, limits=options.config.limits)
    except (InputError, OSError, ValueError) as exc:
        raise GateError(f"cannot load schemas: {exc}") from None


def _repository_crd_dir(configured: str, options: RunOptions) -> Path:
    """A `crd_dirs` entry of gate.yaml: it and every file below it stay inside the repository."""
    path = options.repo_root / configured
    where = f"{options.config.source}: crd_dirs: {configured!r}"
    if sandbox.contained(path, options.repo_root) is None:
        raise GateError(f"{where}: resolves outside the repository")
    if path.is_dir():
        for current, dirs, files in os.walk(path, followlinks=False):
            for name in [*files, *dirs]:
                if sandbox.contained(Path(current, name), options.repo_root) is None:
                    inner = repo_relative(Path(current, name), options.repo_root)
                    raise GateError(f"{where}: {inner} resolves outside the repository")
    return path


def build_catalogue(options: RunOptions) -> Any:
    loader = options.catalogue_loader
    if loader is None:
        module = _optional("tools.validate.catalogue")
        if module is None:
            return None
        loader = module.load_catalogue
    try:
        return loader()
    except (InputError, OSError, ValueError) as exc:
        raise GateError(f"cannot load the catalogue: {exc}") from None


__all__ = [
    "CatalogueLoader",
    "GateError",
    "RunOptions",
    "SchemaValidatorFactory",
    "check",
    "discover_targets",
    "run",
]
