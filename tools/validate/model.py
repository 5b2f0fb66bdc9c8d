"""The data every stage of the gate shares: rendered resources, one overlay as the rules see it
(`Context`), rules as data with their documentation, violations and findings, severities."""

from __future__ import annotations

import enum
import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast

from tools.validate.quantity import parse_quantity

T = TypeVar("T")

Segment = str | int
# Where a finding points inside a rendered object: keys and list indexes, as segments, so that a key
# containing dots (`karpenter.sh/do-not-disrupt`) stays one segment. Only the reports turn it into text.
FieldPath = tuple[Segment, ...]

_PATH_TOKEN = re.compile(r"""\[(\d+)\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*'([^']*)'\s*\]|([^.\[\]]+)""")


class QuotedKey(str):
    """A key the reports print in brackets (`data["scaling.json"]`) rather than after a dot; it equals,
    and looks up like, the plain string."""

    __slots__ = ()


def format_path(path: Sequence[Segment]) -> str:
    """`("spec", "containers", 0, "args")` -> `spec.containers[0].args`, as the reports print a path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, QuotedKey):
            out += f'["{part}"]'
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def parse_path(text: str) -> list[Segment]:
    """The printed form back to segments: `a.b[0]["c.d"]` -> ["a", "b", 0, "c.d"]."""
    segments: list[Segment] = []
    for match in _PATH_TOKEN.finditer(text):
        index, double, single, plain = match.groups()
        if index is not None:
            segments.append(int(index))
        elif double is not None:
            segments.append(QuotedKey(double.replace('\\"', '"')))
        elif single is not None:
            segments.append(QuotedKey(single))
        else:
            segments.append(plain)
    return segments


def resolve_path(doc: Any, path: str | Sequence[Segment]) -> FieldPath:
    """A path as segments. Segments are kept as given; text is parsed, and its plain dotted keys are
    re-joined where the rendered object has such a key
    (`metadata.annotations.karpenter.sh/do-not-disrupt`)."""
    if not isinstance(path, str):
        return tuple(path)
    raw = parse_path(path)
    resolved: list[Segment] = []
    node = doc
    i = 0
    while i < len(raw):
        segment = raw[i]
        if isinstance(segment, str) and isinstance(node, dict) and segment not in node:
            for j in range(len(raw), i + 1, -1):
                parts = raw[i:j]
                if all(isinstance(p, str) for p in parts) and ".".join(map(str, parts)) in node:
                    segment = ".".join(map(str, parts))
                    i = j - 1
                    break
        resolved.append(segment)
        if isinstance(segment, int):
            node = node[segment] if isinstance(node, list) and 0 <= segment < len(node) else None
        else:
            node = node.get(segment) if isinstance(node, dict) else None
        i += 1
    return tuple(resolved)


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


def as_int(value: Any, default: int | None = None) -> int | None:
    """An integer field of a rendered resource (int or numeric string); `default` when absent or not a
    number (the schema stage reports the wrong type)."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):  # "INFINITY" parses as a float no int holds
        return default


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a Decimal, or None when absent or malformed."""
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


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
class Violation:
    """What a check yields. `path` is segments; a check may write it in the printed form
    (`spec.triggers[0].metadata.query`), which is read against the rendered object (`resolve_path`)."""

    resource: Resource | None
    path: FieldPath | str
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple):
            doc = self.resource.doc if self.resource is not None else None
            object.__setattr__(self, "path", resolve_path(doc, self.path))

    @property
    def segments(self) -> FieldPath:
        return cast(FieldPath, self.path)  # made segments by __post_init__


@dataclass
class Context:
    """Everything a check may look at: one overlay's rendered resources and the environment."""

    overlay: str
    env: str | None
    resources: Sequence[Resource]
    catalogue: Any = None  # tools.validate.catalogue.Catalogue, loaded once per run
    schemas: Any = None  # tools.validate.schema.SchemaValidator, built once per run
    extras: dict[str, Any] = field(default_factory=dict)
    # Objects the overlay references that something else creates (gate.yaml `external`).
    external: Sequence[Resource] = ()
    _by_kind: dict[str, list[tuple[int, Resource]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """`build()` once per overlay, kept in `extras` under `key`: derived data several rules ask for
        (indexes, parsed commands). What it returns is shared: callers read it and never change it."""
        if key not in self.extras:
            self.extras[key] = build()
        return cast(T, self.extras[key])

    def of_kind(self, *kinds: str) -> Iterator[Resource]:
        """The resources of these kinds, in rendered order.

        Rules ask for kinds once per workload, so the kinds are indexed on first use (a scan per call
        made the policy stage quadratic in the overlay's size); `resources` must not change afterwards.
        """
        if self._by_kind is None:
            by_kind: dict[str, list[tuple[int, Resource]]] = {}
            for position, resource in enumerate(self.resources):
                by_kind.setdefault(resource.kind, []).append((position, resource))
            self._by_kind = by_kind
        if len(kinds) == 1:
            return (resource for _, resource in self._by_kind.get(kinds[0], ()))
        lists = [self._by_kind.get(kind, []) for kind in dict.fromkeys(kinds)]
        return (resource for _, resource in heapq.merge(*lists, key=lambda item: item[0]))


Check = Callable[[Context, Mapping[str, Any]], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    """A rule as data: its id and family, severity and options with their defaults, the check, and its
    documentation beside it (title, why it matters, the fix, an example and what to write instead), from
    which `docs/rules.md` is generated. The registry (`rules/base.py`) lists every rule explicitly."""

    id: str
    family: str
    title: str
    severity: Severity
    why: str
    remediation: str
    scope: tuple[str, ...]
    check: Check
    options: Mapping[str, Any] = field(default_factory=dict)
    example: str = ""
    use_instead: str = ""

    def __post_init__(self) -> None:
        if not self.id.startswith(f"{self.family}/"):
            raise ValueError(f"rule {self.id}: id must start with its family, '{self.family}/'")


@dataclass(frozen=True)
class Suppression:
    rule_id: str
    reason: str
    expires: str | None = None


@dataclass
class Finding:
    """One violation of one rule by one resource (or by the overlay as a whole when `resource` is None).

    `path` is where in the rendered object, as segments (`("spec", "template", "spec", "containers",
    0, "args")`; the reports print it with `format_path`);
    `location` is the line of the repository file that set it, filled in by the engine.
    """

    rule_id: str
    severity: Severity
    message: str
    overlay: str
    resource: Resource | None = None
    path: FieldPath = ()
    remediation: str = ""
    location: SourceLocation | None = None
    suppression: Suppression | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suppressed(self) -> bool:
        return self.suppression is not None


def walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair below `node`, paths in the printed form (`format_path`)."""
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
