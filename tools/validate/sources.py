"""From a finding's path in a rendered resource to the line of the repository file that set it.

Order of lookup (`SourceMapper.locate`):
1. the patches and replacements kustomize applied to the resource, last first (the last one that
   sets the path wins): strategic-merge patches are walked like the resource, matching list items by
   their merge key (`name`, `containerPort`, `mountPath`) or, for lists of scalars, by value; JSON6902
   patches match an operation whose `path` is the finding's path or one of its parents (then the
   rest of the path is walked inside the operation's `value`); a replacement whose target field
   paths cover the path gives the line of its source field (e.g. the environment's ConfigMap value);
2. the origin file (the document of that kind and name in a multi-document file), walked the same
   way;
3. when the field is set nowhere (it is absent, or a default), the first line of the resource's
   document in its origin file.

Paths are `Finding.path` segments (keys and list indexes), so a key containing dots is one segment;
the printed form is accepted too (`resolve_path`). Every file is parsed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.validate.loader import InputError, Limits, Node, compose_with_lines, read_text
from tools.validate.model import FieldPath, Resource, Segment, SourceLocation, resolve_path
from tools.validate.render import PatchSource, split_field_path
from tools.validate.sandbox import contained

_IDENTIFYING: list[list[Segment]] = [
    ["apiVersion"], ["kind"], ["metadata", "name"], ["metadata", "namespace"]
]

MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "devicePath", "ip")

class SourceMapper:
    """Finds source lines; one instance per run (it caches every file it parses)."""

    def __init__(self, repo_root: Path, limits: Limits | None = None) -> None:
        self.repo_root = repo_root
        self.limits = limits or Limits()
        self._files: dict[str, list[Node]] = {}
        self._texts: dict[tuple[str, int, str], list[Node]] = {}
        self._indexes: dict[int, _DocumentIndex] = {}

    def locate(self, resource: Resource, path: FieldPath | str,
               patches: Sequence[PatchSource] = ()) -> SourceLocation | None:
        segments = list(resolve_path(resource.doc, path))
        for patch in reversed(patches):
            line = self._in_patch(resource, segments, patch) if segments else None
            if line is not None:
                return SourceLocation(patch.file, line)
        if resource.origin is None:
            return None
        document = self._find_document(self._nodes(resource.origin), resource)
        if document is None:
            return SourceLocation(resource.origin, 1)
        found = _walk(document, segments, resource.doc) if segments else None
        return SourceLocation(resource.origin, _line_of(found) if found is not None else document.line)

    def add_text(self, file: str, text: str) -> None:
        """Parse `text` as the content of `file` (standard input, a file outside the repository)."""
        try:
            self._files[file] = compose_with_lines(text, file, self.limits)
        except InputError:
            self._files[file] = []

    def document_line(self, resource: Resource) -> SourceLocation | None:
        return self.locate(resource, ())

    def _nodes(self, file: str) -> list[Node]:
        if file not in self._files:
            try:
                if contained(self.repo_root / file, self.repo_root) is None:
                    raise InputError(file, "outside the repository")  # never opened
                text = read_text(self.repo_root / file, file, self.limits)
                self._files[file] = compose_with_lines(text, file, self.limits)
            except InputError:
                self._files[file] = []
        return self._files[file]

    def _patch_nodes(self, patch: PatchSource) -> list[Node]:
        if patch.text is None:
            return self._nodes(patch.file)
        key = (patch.file, patch.line, patch.text)
        if key not in self._texts:
            try:
                nodes = compose_with_lines(patch.text, patch.file, self.limits)
            except InputError:
                nodes = []
            _shift_lines(nodes, patch.line - 1)
            self._texts[key] = nodes
        return self._texts[key]

    def _in_patch(self, resource: Resource, segments: list[Segment], patch: PatchSource) -> int | None:
        if patch.kind == "replacement":
            doc = resource.doc
            wrote = any(_field_path_covers(split_field_path(p), segments, doc) for p in patch.field_paths)
            return patch.line if wrote else None
        documents = self._patch_nodes(patch)
        if patch.kind == "json6902":
            operations = documents[0].value if documents and isinstance(documents[0].value, list) else []
            return _in_json6902(operations, segments, resource.doc)
        if segments in _IDENTIFYING:
            return None  # in a strategic-merge patch these say which resource to patch, they set nothing
        document = self._find_document(documents, resource)
        if document is None:
            return None
        found = _walk(document, segments, resource.doc)
        return _line_of(found) if found is not None else None

    def _find_document(self, documents: list[Node], resource: Resource) -> Node | None:
        key = id(documents)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = _DocumentIndex(documents)
        return index.find(resource)


def _shift_lines(nodes: list[Node], offset: int) -> None:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        node.line += offset
        if node.key_line:
            node.key_line += offset
        if isinstance(node.value, dict):
            stack.extend(node.value.values())
        elif isinstance(node.value, list):
            stack.extend(node.value)


def _line_of(node: Node) -> int:
    return node.key_line or node.line


def _scalar(node: Node | None) -> Any:
    return node.value if node is not None and not isinstance(node.value, (dict, list)) else None


class _DocumentIndex:
    """The documents of one file by kind and name."""

    def __init__(self, documents: list[Node]) -> None:
        self.mappings = [d for d in documents if isinstance(d.value, dict)]
        self.by_kind: dict[Any, list[tuple[str | None, Node]]] = {}
        self.exact: dict[tuple[Any, str], Node] = {}
        for document in self.mappings:
            kind = _scalar(document.value.get("kind"))
            metadata = document.value.get("metadata")
            name = _scalar(metadata.value.get("name")) if metadata is not None and isinstance(
                metadata.value, dict) else None
            name = name if isinstance(name, str) else None
            self.by_kind.setdefault(kind, []).append((name, document))
            if name is not None:
                self.exact.setdefault((kind, name), document)

    def find(self, resource: Resource) -> Node | None:
        """Same kind and name; else the longest name contained in the rendered one (prefixes, suffixes)."""
        exact = self.exact.get((resource.kind, resource.name))
        if exact is not None:
            return exact
        same_kind = self.by_kind.get(resource.kind, [])
        best: Node | None = None
        best_length = -1
        for name, document in same_kind:
            if name is not None and name in resource.name and len(name) > best_length:
                best, best_length = document, len(name)
        if best is not None:
            return best
        if same_kind:
            return same_kind[0][1]
        return self.mappings[0] if len(self.mappings) == 1 else None


def _walk(node: Node, segments: Sequence[Segment], rendered: Any) -> Node | None:
    """Follow `segments` in a source tree; list items are matched to the rendered item they became."""
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(node.value, list):
                return None
            item = rendered[segment] if isinstance(rendered, list) and 0 <= segment < len(rendered) else None
            index = _match_item(node.value, item, segment)
            if index is None:
                return None
            node = node.value[index]
            rendered = item
        else:
            if not isinstance(node.value, dict) or segment not in node.value:
                return None
            node = node.value[segment]
            rendered = rendered.get(segment) if isinstance(rendered, dict) else None
    return node


def _match_item(items: list[Node], rendered_item: Any, index: int) -> int | None:
    if isinstance(rendered_item, dict):
        for key in MERGE_KEYS:
            if key in rendered_item:
                for i, item in enumerate(items):
                    if isinstance(item.value, dict) and _scalar(item.value.get(key)) == rendered_item[key]:
                        return i
                return None
    elif rendered_item is not None and not isinstance(rendered_item, list):
        for i, item in enumerate(items):
            if item.value == rendered_item:
                return i
        return None
    return index if 0 <= index < len(items) else None


def _field_path_covers(tokens: list[str], segments: Sequence[Segment], rendered: Any) -> bool:
    """Whether a kustomize field path (tokens of `split_field_path`) names `segments` or a parent of it.

    `[key=value]` selects the list items with that field; `*` any item or key; a number an index.
    """
    if not tokens:
        return True
    if not segments:
        return False
    token, segment = tokens[0], segments[0]
    if isinstance(segment, int):
        if not isinstance(rendered, list) or not 0 <= segment < len(rendered):
            return False
        item = rendered[segment]
        if token.startswith("[") and token.endswith("]") and "=" in token:
            key, _, value = token[1:-1].partition("=")
            matched = isinstance(item, dict) and str(item.get(key)) == value
        else:
            matched = token in ("*", "-") or token == str(segment)
    else:
        if not isinstance(rendered, dict):
            return False
        item = rendered.get(segment)
        matched = token in ("*", segment)
    return matched and _field_path_covers(tokens[1:], segments[1:], item)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _in_json6902(operations: list[Node], segments: list[Segment], rendered: Any) -> int | None:
    for operation in reversed(operations):
        if not isinstance(operation.value, dict):
            continue
        op = _scalar(operation.value.get("op"))
        path_node = operation.value.get("path")
        if op not in ("add", "replace", "copy", "move") or path_node is None:
            continue
        pointer = _pointer(str(_scalar(path_node) or ""))
        if not pointer or len(pointer) > len(segments):
            continue
        if not all(p == str(s) or (p == "-" and isinstance(s, int)) for p, s in zip(pointer, segments,
                                                                                 strict=False)):
            continue
        value = operation.value.get("value")
        if len(pointer) == len(segments):
            return _line_of(value) if value is not None else _line_of(path_node)
        if value is None:
            continue
        context = rendered
        for segment in segments[: len(pointer)]:
            if isinstance(segment, int):
                context = context[segment] if isinstance(context, list) and segment < len(context) else None
            else:
                context = context.get(segment) if isinstance(context, dict) else None
        found = _walk(value, segments[len(pointer):], context)
        if found is not None:
            return _line_of(found)
    return None
