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
merge keys (`<<`) are honoured; explicit tags other than the YAML core scalar/map/seq tags are
refused. Every failure is an `InputError` naming the file and line.

Duplicate keys: `Loaded.duplicates` lists them and the last value wins. Callers decide: the config
file refuses them (`load_one_mapping` -> InputError -> exit 2); in rendered output they become
findings of `input/duplicate-key` (kustomize itself already refuses duplicate keys in the files it
reads, so in practice a duplicate there ends the run with kustomize's message).
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
DEFAULT_MAX_TOTAL_BYTES = 200 * 1024 * 1024

_STR_TAG = "tag:yaml.org,2002:str"
_CONTAINER_TAGS = ("!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
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
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES  # all the files one render reads


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
    __slots__ = ("anchor", "container", "is_list", "key", "key_line", "line", "merges", "nodes_at_start")

    def __init__(self, container: Any, is_list: bool, line: int, anchor: str | None,
                 nodes_at_start: int) -> None:
        self.container = container
        self.is_list = is_list
        self.key: Any = _NO_KEY
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
        # One loop over libyaml's events; the common cases (plain and quoted scalars, containers)
        # are inlined because this loop is the gate's hottest code.
        limits = self.limits
        max_depth = limits.max_depth
        max_nodes = limits.max_nodes
        with_lines = self.with_lines
        source = self.source
        plain_cache = self._plain_cache
        scalar = self._scalar
        out = Loaded(documents=[])
        documents = out.documents
        duplicates = out.duplicates
        stack: list[_Frame] = []
        anchors: dict[str, tuple[Any, int]] = {}
        nodes = 0
        alias_nodes = 0
        document = -1
        doc_line = 1
        top: _Frame | None = None
        scalar_event = ev.ScalarEvent
        mapping_start = ev.MappingStartEvent
        sequence_start = ev.SequenceStartEvent
        mapping_end = ev.MappingEndEvent
        sequence_end = ev.SequenceEndEvent

        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            cls = event.__class__
            if cls is scalar_event:
                nodes += 1
                if event.tag is None and event.anchor is None:
                    if event.implicit[0]:
                        raw = event.value
                        value = plain_cache[raw] if raw in plain_cache else scalar(event)
                    else:
                        value = event.value
                else:
                    value = scalar(event)
                    if event.anchor is not None:
                        anchors[event.anchor] = (Node(event.start_mark.line + 1, value) if with_lines
                                                 else value, 1)
                if top is None:
                    if value is not None:
                        documents.append(Node(event.start_mark.line + 1, value) if with_lines else value)
                        out.lines.append(doc_line)
                    continue
                if top.is_list:
                    top.container.append(Node(event.start_mark.line + 1, value) if with_lines else value)
                elif top.key is _NO_KEY:
                    top.key = value
                    top.key_line = event.start_mark.line + 1
                else:
                    self._set(top, Node(event.start_mark.line + 1, value) if with_lines else value,
                              duplicates, document)
            elif cls is mapping_start or cls is sequence_start:
                nodes += 1
                line = event.start_mark.line + 1
                if len(stack) + (top is not None) >= max_depth:
                    raise InputError(source, f"nested more than {max_depth} levels deep", line)
                if event.tag is not None and event.tag not in _CONTAINER_TAGS:
                    raise InputError(source, f"unsupported tag {event.tag}", line)
                is_list = cls is sequence_start
                container: Any = [] if is_list else {}
                value = Node(line, container) if with_lines else container
                if top is None:
                    documents.append(value)
                    out.lines.append(doc_line)
                elif top.is_list:
                    top.container.append(value)
                elif top.key is _NO_KEY:
                    raise InputError(source, "a mapping key must be a scalar", line)
                else:
                    self._set(top, value, duplicates, document)
                if top is not None:
                    stack.append(top)
                top = _Frame(container, is_list, line, event.anchor, nodes)
                if event.anchor is not None:
                    # the size is known at the container's end; until then an alias to it is recursive
                    anchors[event.anchor] = (value, -1)
            elif cls is mapping_end or cls is sequence_end:
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
                    raise InputError(source, f"unknown alias *{event.anchor}", line)
                value, size = anchors[event.anchor]
                if size < 0:
                    raise InputError(source, f"recursive alias *{event.anchor}", line)
                nodes += size
                alias_nodes += size
                if alias_nodes > limits.max_alias_nodes:
                    problem = f"aliases expand to more than {limits.max_alias_nodes} nodes (alias bomb?)"
                    raise InputError(source, problem, line)
                if top is None:
                    documents.append(value)
                    out.lines.append(doc_line)
                elif top.is_list:
                    top.container.append(value)
                elif top.key is _NO_KEY:
                    plain = value.value if with_lines else value
                    if isinstance(plain, (dict, list)):
                        raise InputError(source, "a mapping key must be a scalar", line)
                    top.key = plain
                    top.key_line = line
                else:
                    self._set(top, value, duplicates, document)
            elif cls is ev.DocumentStartEvent:
                document += 1
                doc_line = event.start_mark.line + 1
                anchors.clear()
            if nodes > max_nodes:
                raise InputError(source, f"more than {max_nodes} YAML nodes", None)
        return out

    def _set(self, frame: _Frame, value: Any, duplicates: list[DuplicateKey], document: int) -> None:
        key = frame.key
        frame.key = _NO_KEY
        if key is _MERGE:
            frame.merges = [*(frame.merges or []), value]
            return
        container = frame.container
        if key in container:
            duplicates.append(DuplicateKey(self.source, frame.key_line, str(key), document))
        if self.with_lines:
            value.key_line = frame.key_line
        container[key] = value

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
_NO_KEY = object()  # a mapping frame waiting for its next key
