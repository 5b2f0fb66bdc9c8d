"""Safe, fast YAML loading for everything the gate reads.

Documents are built from libyaml's event stream (PyYAML's C parser, the one `yaml.CSafeLoader` uses)
by a small iterative builder rather than by `yaml.load`, because:

- the C composer recurses once per nesting level and crashes the interpreter (SIGSEGV) on a few
  hundred thousand nested `[`; the builder keeps its own stack and stops at `max_depth`;
- aliases are bounded: each anchor remembers how many nodes it expands to, and a stream whose aliases
  add more than `max_alias_nodes` nodes is refused (the "billion laughs" attack needs only a few hundred
  bytes);
- duplicate mapping keys are reported (`DuplicateKey`) instead of silently keeping the last value;
- it is about twice as fast as `yaml.load_all(..., Loader=yaml.CSafeLoader)` on rendered manifests
  (plain scalars are resolved once per distinct value; quoted scalars are strings).

Scalars are resolved exactly as PyYAML's safe loader resolves them (YAML 1.1 implicit types) and
merge keys (`<<`) are honoured. Every failure is an `InputError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev
from yaml.nodes import ScalarNode

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_DEPTH = 128
DEFAULT_MAX_NODES = 10_000_000
DEFAULT_MAX_ALIAS_NODES = 100_000

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "binary")
)


class InputError(Exception):
    """A file the gate reads is not acceptable YAML. `str()` is a one-line message with file and line."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.message = message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_nodes: int = DEFAULT_MAX_NODES
    max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES  # nodes that aliases may add, per stream


@dataclass(frozen=True)
class DuplicateKey:
    source: str
    line: int
    key: str
    document: int


@dataclass
class Loaded:
    """The documents of one YAML stream (empty documents dropped) and the duplicate keys seen."""

    documents: list[Any]
    duplicates: list[DuplicateKey] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 1-based start line of each kept document


@dataclass
class Node:
    """A value with the 1-based line it starts on; `value` holds dict[key, Node] / list[Node] / scalar.

    Built by `compose_with_lines` for finding the line of a field in a source file.
    """

    line: int
    value: Any
    key_line: int = 0  # for a mapping value: the line of its key


def read_text(path: Path, source: str | None = None, limits: Limits = Limits()) -> str:
    """Read a file as UTF-8 text within the size limit."""
    name = source or str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise InputError(name, f"file is {size} bytes, over the {limits.max_bytes}-byte limit")
        with path.open("rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise InputError(name, f"cannot read: {exc.strerror or exc}") from None
    return decode(data, name, limits)


def decode(data: bytes, source: str, limits: Limits = Limits()) -> str:
    if len(data) > limits.max_bytes:
        raise InputError(source, f"input is over the {limits.max_bytes}-byte limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(source, f"not valid UTF-8 (byte 0x{data[exc.start]:02x})", line) from None


def load_file(path: Path, source: str | None = None, limits: Limits = Limits()) -> Loaded:
    name = source or str(path)
    return load_text(read_text(path, name, limits), name, limits)


def load_text(text: str, source: str, limits: Limits = Limits()) -> Loaded:
    """Every non-empty document of a YAML stream as plain Python values."""
    if len(text) > limits.max_bytes:
        raise InputError(source, f"input is over the {limits.max_bytes}-byte limit")
    builder = _Builder(source, limits, with_lines=False)
    return builder.run(text)


def compose_with_lines(text: str, source: str, limits: Limits = Limits()) -> list[Node]:
    """Every non-empty document as a `Node` tree carrying line numbers."""
    if len(text) > limits.max_bytes:
        raise InputError(source, f"input is over the {limits.max_bytes}-byte limit")
    builder = _Builder(source, limits, with_lines=True)
    loaded = builder.run(text)
    return loaded.documents


def load_one_mapping(path: Path, source: str | None = None, limits: Limits = Limits()) -> dict[str, Any]:
    """A file that must hold exactly one mapping (a config file); duplicate keys are errors."""
    name = source or str(path)
    loaded = load_file(path, name, limits)
    if loaded.duplicates:
        dup = loaded.duplicates[0]
        raise InputError(name, f"duplicate key {dup.key!r}", dup.line)
    if len(loaded.documents) != 1:
        raise InputError(name, f"expected one YAML document, found {len(loaded.documents)}")
    doc = loaded.documents[0]
    if not isinstance(doc, dict):
        raise InputError(name, f"expected a mapping at the top level, found {_type_name(doc)}", 1)
    return doc


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


class _Frame:
    __slots__ = ("anchor", "container", "key", "key_line", "line", "merges", "nodes_at_start")

    def __init__(self, container: Any, line: int, anchor: str | None, nodes_at_start: int) -> None:
        self.container = container
        self.key: tuple[Any] | None = None
        self.key_line = 0
        self.line = line
        self.anchor = anchor
        self.nodes_at_start = nodes_at_start
        self.merges: list[Any] | None = None


class _Builder:
    def __init__(self, source: str, limits: Limits, with_lines: bool) -> None:
        self.source = source
        self.limits = limits
        self.with_lines = with_lines
        self._resolver = yaml.CSafeLoader("")
        self._plain_cache: dict[str, Any] = {}

    def run(self, text: str) -> Loaded:
        try:
            return self._run(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise InputError(self.source, f"invalid YAML: {problem}", line) from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            character = chr(exc.character) if isinstance(exc.character, int) else exc.character
            problem = f"not YAML text: character {character!r}: {exc.reason}"
            raise InputError(self.source, problem, line) from None
        except yaml.YAMLError as exc:
            raise InputError(self.source, f"invalid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise InputError(self.source, "invalid YAML: nested too deeply") from None

    def _scalar(self, event: ev.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None:
            if not event.implicit[0]:
                return event.value  # quoted or block scalar: a string
            text = event.value
            try:
                return self._plain_cache[text]
            except KeyError:
                pass
            resolved = self._resolver.resolve(ScalarNode, text, (True, False))
            try:
                value = self._construct(resolved, event)
            except InputError:
                value = text  # looks like a timestamp or number but is not one: keep the text
            self._plain_cache[text] = value
            return value
        if tag == "!":
            return event.value
        if tag not in _SCALAR_TAGS:
            raise InputError(self.source, f"unsupported tag {tag} on a scalar", event.start_mark.line + 1)
        return self._construct(tag, event)

    def _construct(self, tag: str, event: ev.ScalarEvent) -> Any:
        if tag == _STR_TAG:
            return event.value
        if tag == _MERGE_TAG:
            return _MERGE
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self._resolver.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            raise InputError(self.source, f"invalid YAML: {exc.problem}", event.start_mark.line + 1) from None
        except (ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError) as exc:
            problem = f"invalid {tag.rpartition(':')[2]} value {event.value!r}: {exc}"
            raise InputError(self.source, problem, event.start_mark.line + 1) from None

    def _run(self, text: str) -> Loaded:
        limits = self.limits
        with_lines = self.with_lines
        out = Loaded(documents=[])
        stack: list[_Frame] = []
        anchors: dict[str, tuple[Any, int]] = {}
        nodes = 0
        alias_nodes = 0
        document = -1
        doc_line = 1
        top: _Frame | None = None

        def place(value: Any, line: int) -> None:
            nonlocal top
            if top is None:
                if value is not None and not (with_lines and isinstance(value, Node) and value.value is None):
                    out.documents.append(value)
                    out.lines.append(doc_line)
                return
            container = top.container
            if isinstance(container, list):
                container.append(value)
            elif top.key is None:
                key = value.value if with_lines else value
                if key is _MERGE:
                    top.key = (_MERGE,)
                else:
                    if isinstance(key, (dict, list)):
                        raise InputError(self.source, "a mapping key must be a scalar", line)
                    top.key = (key,)
                top.key_line = line
            else:
                key = top.key[0]
                top.key = None
                if key is _MERGE:
                    top.merges = (top.merges or []) + [value]
                    return
                if key in container:
                    out.duplicates.append(DuplicateKey(self.source, top.key_line, str(key), document))
                if with_lines:
                    value.key_line = top.key_line
                container[key] = value

        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            cls = event.__class__
            if cls is ev.ScalarEvent:
                nodes += 1
                value = self._scalar(event)
                line = event.start_mark.line + 1
                if with_lines:
                    value = Node(line, value)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                place(value, line)
            elif cls is ev.MappingStartEvent or cls is ev.SequenceStartEvent:
                nodes += 1
                if len(stack) + (top is not None) >= limits.max_depth:
                    raise InputError(
                        self.source,
                        f"nested more than {limits.max_depth} levels deep",
                        event.start_mark.line + 1,
                    )
                if event.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                    raise InputError(self.source, f"unsupported tag {event.tag}", event.start_mark.line + 1)
                container: Any = {} if cls is ev.MappingStartEvent else []
                line = event.start_mark.line + 1
                value = Node(line, container) if with_lines else container
                place(value, line)
                if top is not None:
                    stack.append(top)
                top = _Frame(container, line, event.anchor, nodes)
                if event.anchor is not None:
                    # the size is known at the container's end; until then an alias to it is recursive
                    anchors[event.anchor] = (value, -1)
            elif cls is ev.MappingEndEvent or cls is ev.SequenceEndEvent:
                assert top is not None
                finished = top
                if finished.merges:
                    self._merge(finished, event.start_mark.line + 1)
                if finished.anchor is not None:
                    value, _ = anchors[finished.anchor]
                    anchors[finished.anchor] = (value, nodes - finished.nodes_at_start + 1)
                top = stack.pop() if stack else None
            elif cls is ev.AliasEvent:
                line = event.start_mark.line + 1
                if event.anchor not in anchors:
                    raise InputError(self.source, f"unknown alias *{event.anchor}", line)
                value, size = anchors[event.anchor]
                if size < 0:
                    raise InputError(self.source, f"recursive alias *{event.anchor}", line)
                nodes += size
                alias_nodes += size
                if alias_nodes > limits.max_alias_nodes:
                    raise InputError(
                        self.source,
                        f"aliases expand to more than {limits.max_alias_nodes} nodes (alias bomb?)",
                        line,
                    )
                place(value, line)
            elif cls is ev.DocumentStartEvent:
                document += 1
                doc_line = event.start_mark.line + 1
                anchors.clear()
            if nodes > limits.max_nodes:
                raise InputError(self.source, f"more than {limits.max_nodes} YAML nodes", None)
        return out

    def _merge(self, frame: _Frame, line: int) -> None:
        container = frame.container
        sources: list[Any] = []
        for merged in frame.merges or []:
            plain = merged.value if self.with_lines else merged
            if isinstance(plain, list):
                sources.extend(plain)
            else:
                sources.append(merged)
        for merged in sources:
            plain = merged.value if self.with_lines else merged
            if not isinstance(plain, dict):
                raise InputError(self.source, "a merge key (<<) must name mappings", line)
            for key, value in plain.items():
                container.setdefault(key, value)


class _MergeMarker:
    def __repr__(self) -> str:
        return "<<"


_MERGE = _MergeMarker()
