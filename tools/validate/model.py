"""The data every stage of the gate shares: rendered resources, findings, severities."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    INFO = 10
    WARNING = 20
    ERROR = 30

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None


@dataclass(frozen=True)
class SourceLocation:
    """A line in a file of the repository (path relative to the repository root, line 1-based)."""

    file: str
    line: int


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one: rules read malformed resources (the schema
    rules report the shape) without crashing on them."""
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty one (see `mapping`)."""
    return value if isinstance(value, list) else []


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mapping items of a list (other items, and a value that is no list, give nothing)."""
    return [item for item in sequence(value) if isinstance(item, dict)]


@dataclass
class Resource:
    """One rendered object, with where it came from.

    `origin` is the repository-relative file kustomize loaded it from; `patches` are the
    repository-relative patch files kustomize applied to it, in order.
    """

    doc: dict[str, Any]
    overlay: str
    origin: str | None = None
    patches: tuple[str, ...] = ()
    index: int = 0

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def name(self) -> str:
        return str(mapping(self.doc.get("metadata")).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(mapping(self.doc.get("metadata")).get("namespace", "") or "")

    @property
    def annotations(self) -> Mapping[str, str]:
        return mapping(mapping(self.doc.get("metadata")).get("annotations"))

    @property
    def labels(self) -> Mapping[str, str]:
        return mapping(mapping(self.doc.get("metadata")).get("labels"))

    @property
    def gvk(self) -> str:
        return f"{self.api_version}/{self.kind}" if self.api_version else self.kind

    def ref(self) -> str:
        """`Kind/namespace/name` (or `Kind/name` when cluster-scoped), as findings print it."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    def get(self, *path: str | int, default: Any = None) -> Any:
        node: Any = self.doc
        for key in path:
            if isinstance(key, int):
                if not isinstance(node, list) or not -len(node) <= key < len(node):
                    return default
            elif not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node


@dataclass(frozen=True)
class Suppression:
    rule_id: str
    reason: str
    expires: str | None = None


@dataclass
class Finding:
    """One violation of one rule by one resource (or by the overlay as a whole when `resource` is None).

    `path` is a JSON-path-like string into the rendered object (`spec.template.spec.containers[0].args`);
    `location` is the line of the repository file that set it, filled in by the engine.
    """

    rule_id: str
    severity: Severity
    message: str
    overlay: str
    resource: Resource | None = None
    path: str = ""
    remediation: str = ""
    location: SourceLocation | None = None
    suppression: Suppression | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suppressed(self) -> bool:
        return self.suppression is not None


def walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair below `node`, paths in the same syntax as `Finding.path`."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{prefix}[{i}]")


@dataclass
class Report:
    """What one run of the gate produced; every output format renders this."""

    findings: list[Finding]
    overlays: list[str]
    resource_count: int
    rules: Any  # tools.validate.rules.base.Registry
    fail_level: Severity = Severity.WARNING
    # What the run could not check and why ("CEL rule skipped ...", "vLLM environment not installed: ..."),
    # each once, in the order first met; from the rules' `ctx.extras["notes"]`.
    notes: list[str] = field(default_factory=list)

    def failing(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed and f.severity >= self.fail_level]
