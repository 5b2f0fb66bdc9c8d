"""The gate's one config file (`gate.yaml` at the repository root) and per-environment rule options.

Shape (every key optional):

    fail_level: warning                 # error | warning | info: findings at or above fail the run
    kubernetes_version: "1.33"          # schemas of the core kinds
    crd_dirs: []                        # extra CRD YAML directories, as --crd
    kustomize:
      build_options: []                 # added to `kustomize build`, like Argo CD's kustomize.buildOptions;
                                        # only those in sandbox.ALLOWED_CONFIG_BUILD_OPTIONS
      timeout_seconds: 120
      memory_limit_mib: 2048            # heap kustomize may use
    limits:                             # for every YAML file the gate reads
      max_file_bytes: 20971520
      max_depth: 128
      max_nodes: 10000000               # YAML nodes per file or rendered overlay
      max_alias_nodes: 100000           # nodes YAML aliases may add (alias bombs)
      max_total_bytes: 209715200        # all the files one render reads
    rules:                              # for every environment
      <rule id>: {enabled: true, severity: error, <option>: <value>}
    external:                           # objects the overlays reference that something else creates
      - kind: Service                   # (a Helm chart of another Application), so references resolve
        namespace: keda
        name: keda-otel-scaler
        created_by: apps/base/keda-otel-scaler.yaml
        labels: {}                      # pod labels, for the kinds that run pods
        ports: [{name: otlp, port: 4317, protocol: otlp-grpc}]
    environments:
      prod:
        paths: [overlays/prod, clusters/prod]   # directories (and everything below) of this environment
        rules:
          <rule id>: {<option>: <value>, enabled: ..., severity: ...}
        external: []                    # as above, for this environment only
        slo: {ttft_seconds: 2, e2e_seconds: 30}  # latency objectives `gate diff` scores (share within both)

Options merge as: the rule's defaults < global `rules` < the environment's `rules`. An unknown rule
id, an unknown option name or a bad value is a `ConfigError` naming the file and the key (exit 2).
The environment of a rendered directory is the one whose `paths` contain it, else the directory's
last path segment (`overlays/prod` -> `prod`).

The file comes with the pull request under review, so it cannot widen the gate's powers: its build
options are limited to an allow-list (anything that runs a program, loads a plugin or lifts a load
restriction is given on the command line instead), its limits and the render's timeout and memory may
only be lowered from the defaults, and its `crd_dirs` stay inside the repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.validate.loader import InputError, Limits, compose_with_lines, load_one_mapping, read_text
from tools.validate.model import Resource, Rule, Severity
from tools.validate.render import DEFAULT_TIMEOUT_SECONDS
from tools.validate.rules.base import Registry
from tools.validate.sandbox import DEFAULT_MEMORY_LIMIT_BYTES, config_build_option_problem, config_line

DEFAULT_CONFIG_NAME = "gate.yaml"
DEFAULT_MEMORY_LIMIT_MIB = DEFAULT_MEMORY_LIMIT_BYTES // (1024 * 1024)
RESERVED_KEYS = ("enabled", "severity")
EXTERNAL_ANNOTATION = "gate.eks-llm-inference.io/created-by"
SCRAPER_ANNOTATION = "gate.eks-llm-inference.io/scrapes-monitors"


class ConfigError(Exception):
    """The config file is wrong; `str()` names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Ceilings as well as defaults: a pull request may tighten them, not loosen them.
class _Kustomize(_Strict):
    build_options: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=DEFAULT_TIMEOUT_SECONDS)
    memory_limit_mib: int = Field(default=DEFAULT_MEMORY_LIMIT_MIB, gt=0, le=DEFAULT_MEMORY_LIMIT_MIB)


class _Limits(_Strict):
    max_file_bytes: int = Field(default=Limits.max_bytes, gt=0, le=Limits.max_bytes)
    max_depth: int = Field(default=Limits.max_depth, gt=0, le=Limits.max_depth)
    max_nodes: int = Field(default=Limits.max_nodes, gt=0, le=Limits.max_nodes)
    max_alias_nodes: int = Field(default=Limits.max_alias_nodes, gt=0, le=Limits.max_alias_nodes)
    max_total_bytes: int = Field(default=Limits.max_total_bytes, gt=0, le=Limits.max_total_bytes)


class _ExternalPort(_Strict):
    port: int = Field(gt=0, lt=65536)
    name: str | None = None
    # What speaks on the port (http, grpc, otlp-grpc, otlp-http, keda-external-scaler, ...), when the
    # checks should tell one port of the object from another.
    protocol: str | None = None


class External(_Strict):
    """An object the overlays reference that is created elsewhere, declared so the reference resolves."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    namespace: str = ""
    created_by: str = Field(min_length=1)  # where it comes from, for the reviewer: an Application, a chart
    labels: dict[str, str] = Field(default_factory=dict)
    ports: list[_ExternalPort] = Field(default_factory=list)
    # Its pods (`labels`) scrape the overlay's ServiceMonitors and PodMonitors (a Prometheus): the
    # NetworkPolicies must let them reach every target.
    scrapes_monitors: bool = False

    def as_resource(self, overlay: str) -> Resource:
        """The object as the rules see rendered ones: ports as a Service's, labels as its pods'."""
        ports = [
            {key: value for key, value in (("name", p.name), ("port", p.port), ("appProtocol", p.protocol))
             if value is not None}
            for p in self.ports
        ]
        doc: dict[str, Any] = {
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels),
                         "annotations": {EXTERNAL_ANNOTATION: self.created_by,
                                         **({SCRAPER_ANNOTATION: "true"} if self.scrapes_monitors else {})}},
            "spec": {"ports": ports},
        }
        return Resource(doc, overlay, origin=DEFAULT_CONFIG_NAME)


class _Slo(_Strict):
    """What users of the environment should feel (read by `gate diff`'s simulation)."""

    ttft_seconds: float = Field(default=2.0, gt=0)
    e2e_seconds: float = Field(default=30.0, gt=0)


class _Environment(_Strict):
    paths: list[str] = Field(default_factory=list)
    slo: _Slo | None = None
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    external: list[External] = Field(default_factory=list)


class _File(_Strict):
    fail_level: str = "warning"
    kubernetes_version: str | None = None
    crd_dirs: list[str] = Field(default_factory=list)
    kustomize: _Kustomize = Field(default_factory=_Kustomize)
    limits: _Limits = Field(default_factory=_Limits)
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    external: list[External] = Field(default_factory=list)
    environments: dict[str, _Environment] = Field(default_factory=dict)


@dataclass
class GateConfig:
    source: str = "(defaults)"
    fail_level: Severity = Severity.WARNING
    kubernetes_version: str | None = None
    crd_dirs: tuple[str, ...] = ()
    build_options: tuple[str, ...] = ()
    render_timeout: float = DEFAULT_TIMEOUT_SECONDS
    render_memory_limit: int = DEFAULT_MEMORY_LIMIT_BYTES
    limits: Limits = field(default_factory=Limits)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    external: tuple[External, ...] = ()
    environments: dict[str, _Environment] = field(default_factory=dict)

    def external_for(self, env: str | None) -> list[External]:
        """The objects declared external for every environment, then those of `env`."""
        environment = self.environments.get(env or "")
        return [*self.external, *(environment.external if environment is not None else ())]

    def environment_of(self, directory: str) -> str | None:
        """The environment of a repository-relative directory."""
        path = PurePosixPath(directory)
        best: tuple[int, str] | None = None
        for name, environment in self.environments.items():
            for configured in environment.paths:
                root = PurePosixPath(configured.strip("/"))
                if (path == root or root in path.parents) and (best is None or len(root.parts) > best[0]):
                    best = (len(root.parts), name)
        if best is not None:
            return best[1]
        return path.name or None

    def _overrides(self, rule_id: str, env: str | None) -> list[tuple[str, Mapping[str, Any]]]:
        layers: list[tuple[str, Mapping[str, Any]]] = []
        if rule_id in self.rules:
            layers.append((f"rules.{rule_id}", self.rules[rule_id]))
        environment = self.environments.get(env or "")
        if environment is not None and rule_id in environment.rules:
            layers.append((f"environments.{env}.rules.{rule_id}", environment.rules[rule_id]))
        return layers

    def options_for(self, rule: Rule, env: str | None) -> dict[str, Any]:
        """The rule's options: its defaults < global `rules` < the environment's `rules`."""
        options = dict(rule.options)
        for where, override in self._overrides(rule.id, env):
            for key, value in override.items():
                if key in RESERVED_KEYS:
                    continue
                if key not in rule.options:
                    known = ", ".join(sorted(rule.options)) or "none"
                    raise ConfigError(
                        f"{self.source}: {where}.{key}: unknown option of {rule.id} (options: {known})"
                    )
                options[key] = value
        return options

    def enabled(self, rule: Rule, env: str | None) -> bool:
        enabled = True
        for _, override in self._overrides(rule.id, env):
            if "enabled" in override:
                enabled = bool(override["enabled"])
        return enabled

    def severity(self, rule: Rule, env: str | None) -> Severity:
        severity = rule.severity
        for where, override in self._overrides(rule.id, env):
            if "severity" in override:
                severity = _severity(str(override["severity"]), f"{self.source}: {where}.severity")
        return severity

    def check(self, registry: Registry) -> None:
        """Raise `ConfigError` on any unknown rule id, option name or bad reserved value."""
        layers = [("rules", self.rules)] + [
            (f"environments.{name}.rules", env.rules) for name, env in self.environments.items()
        ]
        for where, rules in layers:
            for rule_id, override in rules.items():
                if rule_id not in registry:
                    raise ConfigError(f"{self.source}: {where}.{rule_id}: unknown rule id (see `gate rules`)")
                rule = registry.get(rule_id)
                for key, value in override.items():
                    if key == "enabled" and not isinstance(value, bool):
                        raise ConfigError(f"{self.source}: {where}.{rule_id}.enabled: must be true or false")
                    if key == "severity":
                        _severity(str(value), f"{self.source}: {where}.{rule_id}.severity")
                    if key not in RESERVED_KEYS and key not in rule.options:
                        known = ", ".join(sorted(rule.options)) or "none"
                        raise ConfigError(
                            f"{self.source}: {where}.{rule_id}.{key}: unknown option of {rule_id} "
                            f"(options: {known})"
                        )
                    default = rule.options.get(key)
                    if key not in RESERVED_KEYS and not _same_type(default, value):
                        raise ConfigError(
                            f"{self.source}: {where}.{rule_id}.{key}: expected {type(default).__name__}, "
                            f"got {value!r}"
                        )


def _same_type(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _severity(text: str, where: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def find_config(repo_root: Path, explicit: Path | None) -> Path | None:
    """`--config` when given (the command line is trusted), else the repository's gate.yaml, which must
    be a file of the repository (a symlink out of it is refused without reading its target)."""
    if explicit is not None:
        return explicit
    default = repo_root / DEFAULT_CONFIG_NAME
    if not default.is_file():
        return None
    root = repo_root.resolve()
    if root not in default.resolve().parents:
        raise ConfigError(f"{DEFAULT_CONFIG_NAME}: a symlink that resolves outside the repository")
    return default


def load_config(path: Path | None, registry: Registry, source: str | None = None) -> GateConfig:
    """Read and validate the config (defaults when `path` is None)."""
    if path is None:
        return GateConfig()
    name = source or str(path)
    if not path.is_file():
        raise ConfigError(f"{name}: no such config file")
    try:
        raw = load_one_mapping(path, name)
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] == "less_than_equal":
            message += " (the config file may lower a limit, not raise it)"
        raise ConfigError(f"{name}: {key}: {message}") from None
    _check_build_options(path, name, list(parsed.kustomize.build_options))
    config = GateConfig(
        source=name,
        fail_level=_severity(parsed.fail_level, f"{name}: fail_level"),
        kubernetes_version=parsed.kubernetes_version,
        crd_dirs=tuple(parsed.crd_dirs),
        build_options=tuple(parsed.kustomize.build_options),
        render_timeout=parsed.kustomize.timeout_seconds,
        render_memory_limit=parsed.kustomize.memory_limit_mib * 1024 * 1024,
        limits=Limits(
            max_bytes=parsed.limits.max_file_bytes,
            max_depth=parsed.limits.max_depth,
            max_nodes=parsed.limits.max_nodes,
            max_alias_nodes=parsed.limits.max_alias_nodes,
            max_total_bytes=parsed.limits.max_total_bytes,
        ),
        rules=parsed.rules,
        external=tuple(parsed.external),
        environments=dict(parsed.environments),
    )
    config.check(registry)
    return config


def _check_build_options(path: Path, name: str, options: list[str]) -> None:
    """Refuse a build option the config file may not give, naming the file and its line."""
    problem = config_build_option_problem(options)
    if problem is None:
        return
    index, why = problem
    line = config_line(compose_with_lines(read_text(path, name), name), "kustomize", "build_options", index)
    where = f"{name}:{line}" if line else name
    raise ConfigError(
        f"{where}: kustomize.build_options: {why}: options that run programs, load plugins or change "
        "what kustomize may read are given on the command line (gate validate --build-option=...)"
    )
