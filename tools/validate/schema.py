"""Strict schema validation of rendered resources: core kinds, the project's CRD schemas, exported CRDs.

Three sources of schemas, by (apiVersion, kind):

1. Core Kubernetes kinds: the strict JSON Schemas `kubernetes-validate` ships per Kubernetes
   version (`_definitions.json`, indexed by `x-kubernetes-group-version-kind`).
2. The project's own hand-written schemas for the CRD kinds the repository uses
   (tools/validate/schemas/*.yaml, listed explicitly in `PROJECT_KINDS`).
3. CustomResourceDefinitions a user exported from a cluster (`crd_dirs`): each served version's
   openAPIV3Schema is converted to a strict JSON Schema with Kubernetes' structural-schema
   semantics and replaces the project's schema for that apiVersion/kind; its
   x-kubernetes-validations (CEL) rules are evaluated with cel-python when it is installed.

Validation runs on jsonschema-rs (compiled once per apiVersion/kind): on a Deployment it is
several hundred times faster than the pure-Python jsonschema (see bench/schema_validation.py).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import difflib
import importlib.util
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema_rs

from tools.validate.loader import InputError, Limits, load_file, load_text
from tools.validate.model import FieldPath, Resource, Violation

DEFAULT_KUBERNETES_VERSION = "1.33"

UNKNOWN_FIELD = "schema/unknown-field"
INVALID_VALUE = "schema/invalid-value"
UNKNOWN_KIND = "schema/unknown-kind"
CEL_RULE = "schema/cel-rule"

CORE_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
PROJECT_SCHEMA_BASE = "https://eks-llm-inference.invalid/schemas/"
CRD_SCHEMA_BASE = "https://eks-llm-inference.invalid/crd/"
OBJECT_META_REF = f"{CORE_DEFINITIONS_URI}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# The project's schemas: (apiVersion, kind) -> (file in tools/validate/schemas, name in its $defs).
PROJECT_SCHEMA_FILES = (
    "common.yaml",
    "karpenter.yaml",
    "keda.yaml",
    "argocd.yaml",
    "opentelemetry.yaml",
    "prometheus-operator.yaml",
    "ack.yaml",
)
PROJECT_KINDS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("karpenter.sh/v1", "NodePool"): ("karpenter.yaml", "NodePool"),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): ("karpenter.yaml", "EC2NodeClass"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("keda.yaml", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("keda.yaml", "TriggerAuthentication"),
    ("keda.sh/v1alpha1", "ClusterTriggerAuthentication"): ("keda.yaml", "TriggerAuthentication"),
    ("argoproj.io/v1alpha1", "Application"): ("argocd.yaml", "Application"),
    ("argoproj.io/v1alpha1", "AppProject"): ("argocd.yaml", "AppProject"),
    ("opentelemetry.io/v1beta1", "OpenTelemetryCollector"): ("opentelemetry.yaml", "OpenTelemetryCollector"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("prometheus-operator.yaml", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("prometheus-operator.yaml", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheus-operator.yaml", "PrometheusRule"),
    ("iam.services.k8s.aws/v1alpha1", "Policy"): ("ack.yaml", "Policy"),
    ("iam.services.k8s.aws/v1alpha1", "Role"): ("ack.yaml", "Role"),
    ("eks.services.k8s.aws/v1alpha1", "PodIdentityAssociation"): ("ack.yaml", "PodIdentityAssociation"),
    ("ecr.services.k8s.aws/v1alpha1", "PullThroughCacheRule"): ("ack.yaml", "PullThroughCacheRule"),
    ("cloudfront.services.k8s.aws/v1alpha1", "Distribution"): ("ack.yaml", "Distribution"),
}


class SchemaError(ValueError):
    """The schemas could not be loaded (unknown Kubernetes version, unreadable or invalid CRD file)."""


@dataclass(frozen=True)
class SchemaViolation(Violation):
    """A `Violation` that also names the schema rule it belongs to."""

    rule_id: str = INVALID_VALUE


def _kubernetes_schema_root() -> Path:
    """`kubernetes-validate`'s schema directory, found without importing the package: its `__init__`
    imports jsonschema and its validator, which the gate does not use (a tenth of a second)."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaError("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def available_kubernetes_versions() -> list[str]:
    """The Kubernetes minor versions `kubernetes-validate` ships strict schemas for, oldest first."""
    root = _kubernetes_schema_root()
    found = []
    for entry in root.iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if match:
            found.append((int(match[1]), int(match[2])))
    return [f"{major}.{minor}" for major, minor in sorted(found)]


# Kubernetes' quantity syntax (resource.Quantity): the published OpenAPI says only "string or
# number", so without this `memory: 16GB` would pass here and be rejected by the API server.
QUANTITY_PATTERN = (
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)))?$"
)


def _core_definitions(version: str) -> dict[str, Any]:
    available = available_kubernetes_versions()
    wanted = version.removeprefix("v")
    minor = ".".join(wanted.split(".")[:2])
    if minor not in available:
        raise SchemaError(
            f"no schemas for Kubernetes {version!r} (available: {', '.join(available)})"
        )
    path = _kubernetes_schema_root() / f"v{minor}.0-local-strict" / "_definitions.json"
    definitions = json.loads(path.read_text(encoding="utf-8"))
    defs = definitions["$defs"]
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "type": ["string", "number", "null"],
        "pattern": QUANTITY_PATTERN,
        "x-message": "must be a resource quantity such as 500m, 16Gi or 4",
    }
    # Published as oneOf(string|null, integer|null), which rejects null although both allow it.
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer", "null"]}
    return definitions


def as_json_value(value: Any) -> Any:
    """`value` with what JSON cannot carry converted as kubectl converts YAML to JSON."""
    if isinstance(value, Mapping):
        return {str(k).lower() if isinstance(k, bool) else str(k): as_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json_value(v) for v in value]
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def _join(path: FieldPath, key: str) -> FieldPath:
    return (*path, key)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


# ---------------------------------------------------------------------------------------------
# CustomResourceDefinitions -> strict JSON Schema
# ---------------------------------------------------------------------------------------------

_COPIED_KEYWORDS = (
    "type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "required", "multipleOf", "description",
)  # fmt: skip


def structural_to_json_schema(node: Mapping[str, Any], *, in_junctor: bool = False) -> dict[str, Any]:
    """One CRD openAPIV3Schema node as a strict JSON Schema (draft 2020-12).

    Kubernetes prunes fields a structural schema does not declare; here they are errors instead,
    except under `x-kubernetes-preserve-unknown-fields`. Value validations inside allOf/anyOf/oneOf/not
    cannot declare structure, so no strictness is added there.
    """
    out: dict[str, Any] = {key: node[key] for key in _COPIED_KEYWORDS if key in node}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("nullable"):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: structural_to_json_schema(v, in_junctor=in_junctor)
                             for k, v in node["properties"].items()}  # fmt: skip
    if isinstance(node.get("items"), Mapping):
        out["items"] = structural_to_json_schema(node["items"], in_junctor=in_junctor)
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = structural_to_json_schema(additional, in_junctor=in_junctor)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    for junctor in ("allOf", "anyOf", "oneOf"):
        if junctor in node:
            out[junctor] = [structural_to_json_schema(s, in_junctor=True) for s in node[junctor]]
    if "not" in node:
        out["not"] = structural_to_json_schema(node["not"], in_junctor=True)

    embedded = bool(node.get("x-kubernetes-embedded-resource"))
    if embedded:
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"$ref": OBJECT_META_REF}
    is_object = node.get("type") == "object" or "properties" in node
    if (
        is_object
        and not in_junctor
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass
class CelRule:
    rule: str
    message: str
    field_path: str
    program: Any  # a compiled celpy program


@dataclass
class CelNode:
    """The part of a CRD schema that carries x-kubernetes-validations, with what defaulting needs."""

    rules: list[CelRule] = field(default_factory=list)
    properties: dict[str, CelNode] = field(default_factory=dict)
    items: CelNode | None = None
    additional: CelNode | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class CrdKind:
    api_version: str
    kind: str
    source: str
    schema: dict[str, Any]
    openapi: Mapping[str, Any]  # as the CRD declares it: its CEL rules are compiled on first use
    where: str = ""  # file and document


class CelSupport:
    """x-kubernetes-validations evaluated with cel-python (module `celpy`) when it is installed.

    Kubernetes adds CEL libraries beyond the standard; the few its CRDs commonly use are provided
    here (regex `find`/`findAll`, strings `split`/`lowerAscii`/`upperAscii`). A rule that needs
    anything else cannot be evaluated and is counted in `skipped`, never guessed.
    """

    def __init__(self) -> None:
        self._celpy: Any = None
        self._imported = False
        self.skipped: Counter[str] = Counter()
        self._environment: Any = None

    @property
    def celpy(self) -> Any:
        """The `celpy` module (None when it is not installed), imported on first use: only CRDs carry CEL
        rules, and a run without them would otherwise pay its import (and pendulum's, lark's) at start-up."""
        if not self._imported:
            self._imported = True
            try:
                import celpy
            except ImportError:
                celpy = None
            self._celpy = celpy
        return self._celpy

    @property
    def available(self) -> bool:
        return self.celpy is not None

    def _functions(self) -> dict[str, Callable[..., Any]]:
        celtypes = self.celpy.celtypes

        def find(text: Any, pattern: Any) -> Any:
            match = re.search(str(pattern), str(text))
            return celtypes.StringType(match.group(0) if match else "")

        def find_all(text: Any, pattern: Any, limit: Any = -1) -> Any:
            found = [celtypes.StringType(m.group(0)) for m in re.finditer(str(pattern), str(text))]
            return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])

        def split(text: Any, separator: Any, limit: Any = -1) -> Any:
            count = int(limit)
            if count == 0:
                return celtypes.ListType([])
            parts = str(text).split(str(separator), count - 1 if count > 0 else -1)
            return celtypes.ListType([celtypes.StringType(p) for p in parts])

        return {
            "find": find,
            "findAll": find_all,
            "split": split,
            "lowerAscii": lambda text: celtypes.StringType(str(text).lower()),
            "upperAscii": lambda text: celtypes.StringType(str(text).upper()),
        }

    def compile(self, rule: Mapping[str, Any]) -> CelRule | None:
        expression = str(rule.get("rule", ""))
        if re.search(r"\boldSelf\b", expression):
            self.skipped["transition rule (uses oldSelf; there is no old object)"] += 1
            return None
        if self._environment is None:
            self._environment = self.celpy.Environment()
        environment = self._environment
        try:
            program = environment.program(environment.compile(expression), functions=self._functions())
        except self.celpy.CELParseError as error:
            self.skipped[f"does not parse with cel-python: {str(error).splitlines()[0]}"] += 1
            return None
        message = str(rule.get("message") or f"failed rule: {expression}")
        return CelRule(expression, message, str(rule.get("fieldPath", "")), program)

    def build(self, node: Mapping[str, Any]) -> CelNode | None:
        """The CEL-carrying skeleton of a structural schema (None when no rule is below `node`)."""
        result = CelNode()
        for rule in node.get("x-kubernetes-validations") or ():
            compiled = self.compile(rule)
            if compiled is not None:
                result.rules.append(compiled)
        for name, child in (node.get("properties") or {}).items():
            if "default" in child:
                result.defaults[name] = child["default"]
            built = self.build(child)
            if built is not None:
                result.properties[name] = built
        if isinstance(node.get("items"), Mapping):
            result.items = self.build(node["items"])
        if isinstance(node.get("additionalProperties"), Mapping):
            result.additional = self.build(node["additionalProperties"])
        if result.rules or result.properties or result.items or result.additional:
            return result
        return None

    def evaluate(self, node: CelNode, value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
        """(path, message) for every rule that evaluates to false below `value`."""
        if isinstance(value, dict) and node.defaults:
            value = {**copy.deepcopy(node.defaults), **value}
        if node.rules:
            activation = {"self": self.celpy.json_to_cel(value)}
            for rule in node.rules:
                outcome = self._run(rule, activation)
                if outcome is False:
                    yield _cel_path(path, rule.field_path), rule.message
        if isinstance(value, dict):
            for name, child in node.properties.items():
                if name in value and value[name] is not None:
                    yield from self.evaluate(child, value[name], _join(path, name))
            if node.additional is not None:
                for name, item in value.items():
                    yield from self.evaluate(node.additional, item, _join(path, name))
        elif isinstance(value, list) and node.items is not None:
            for index, item in enumerate(value):
                yield from self.evaluate(node.items, item, (*path, index))

    def _run(self, rule: CelRule, activation: dict[str, Any]) -> bool | None:
        try:
            result = rule.program.evaluate(activation)
        except (self.celpy.CELEvalError, TypeError, ValueError, KeyError, IndexError, re.error) as error:
            # cel-python reports most failures as CELEvalError, a few surface as Python errors;
            # either way the rule could not be evaluated, which the notes say.
            result = error
        if isinstance(result, Exception):
            missing = re.search(r"undeclared reference to '([^']+)'", str(result))
            reason = f"function {missing[1]}() not available in cel-python" if missing else "evaluation error"
            self.skipped[f"{reason}: {rule.rule}"] += 1
            return None
        return bool(result)


def _cel_path(path: FieldPath, field_path: str) -> FieldPath:
    """Append a rule's fieldPath (`.spec.foo['bar'][0]`) to `path`."""
    for match in re.finditer(r"\.([A-Za-z0-9_-]+)|\['([^']*)'\]|\[(\d+)\]", field_path):
        path = (*path, int(match[3])) if match[3] is not None else _join(path, match[1] or match[2])
    return path


def _iter_documents(path: Path, limits: Limits) -> Iterator[tuple[str, Any]]:
    """(`file:line`, document) for every document of a YAML or JSON file, with the gate's bounded loader:
    a file over `limits.max_bytes`, too deep, too many nodes or an alias bomb is a `SchemaError`."""
    try:
        loaded = load_file(path, limits=limits)
    except InputError as error:
        raise SchemaError(str(error)) from None
    for line, document in zip(loaded.lines, loaded.documents, strict=True):
        yield f"{path}:{line}", document


def _crd_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise SchemaError(f"--crd {location}: no such file or directory")
    files = sorted(p for p in location.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    if not files:
        raise SchemaError(f"--crd {location}: no .yaml, .yml or .json files in this directory")
    return files


def load_crds(locations: Sequence[Path], limits: Limits | None = None) -> dict[tuple[str, str], CrdKind]:
    """Every served version of every CRD in `locations`; later locations replace earlier ones."""
    kinds: dict[tuple[str, str], CrdKind] = {}
    for location in locations:
        for path in _crd_files(Path(location)):
            for where, document in _iter_documents(path, limits or Limits()):
                for crd in _crds_in(document, where):
                    for kind in _crd_kinds(crd, where):
                        kinds[(kind.api_version, kind.kind)] = kind
    return kinds


def _crds_in(document: Any, where: str) -> list[Mapping[str, Any]]:
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise SchemaError(f"{where}: expected a CustomResourceDefinition or a List of them")
    kind = str(document.get("kind") or "")
    if kind.endswith("List") and isinstance(document.get("items"), list):
        found: list[Mapping[str, Any]] = []
        for index, item in enumerate(document.get("items") or []):
            found.extend(_crds_in(item, f"{where} items[{index}]"))
        return found
    if kind != "CustomResourceDefinition":
        raise SchemaError(f"{where}: kind {document.get('kind')!r} is not a CustomResourceDefinition")
    if document.get("apiVersion") != "apiextensions.k8s.io/v1":
        raise SchemaError(
            f"{where}: apiVersion {document.get('apiVersion')!r} is not supported; "
            "export CRDs as apiextensions.k8s.io/v1"
        )
    return [document]


def _crd_kinds(crd: Mapping[str, Any], where: str) -> Iterator[CrdKind]:
    spec = crd.get("spec")
    name = (crd.get("metadata") or {}).get("name", "?")
    if not isinstance(spec, Mapping) or not spec.get("group") or not (spec.get("names") or {}).get("kind"):
        raise SchemaError(f"{where}: CRD {name} has no spec.group or spec.names.kind")
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise SchemaError(f"{where}: CRD {name} has no spec.versions")
    group, kind = spec["group"], spec["names"]["kind"]
    for version in versions:
        if not isinstance(version, Mapping) or not version.get("name"):
            raise SchemaError(f"{where}: CRD {name} has a version without a name")
        if not version.get("served", True):
            continue
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(openapi, Mapping):
            raise SchemaError(f"{where}: CRD {name} version {version['name']} has no openAPIV3Schema")
        api_version = f"{group}/{version['name']}"
        try:
            schema = structural_to_json_schema(openapi)
        except (AttributeError, TypeError) as error:  # a node that is not a schema object
            where_version = f"{where}: CRD {name} version {version['name']}"
            raise SchemaError(f"{where_version}: invalid schema ({error})") from None
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"const": api_version}
        properties["kind"] = {"const": kind}
        properties["metadata"] = {"$ref": OBJECT_META_REF}
        schema["$id"] = f"{CRD_SCHEMA_BASE}{group}/{version['name']}/{kind}.json"
        yield CrdKind(api_version, kind, f"CRD {name} from {where}", schema, openapi, where)


# ---------------------------------------------------------------------------------------------
# The validator
# ---------------------------------------------------------------------------------------------


@dataclass
class _Compiled:
    validator: Any  # jsonschema_rs validator
    source: str
    cel: CelNode | None = None


class SchemaValidator:
    """Validates resources strictly against the schema of their apiVersion/kind.

    Build once per run; validators are compiled lazily and cached per apiVersion/kind.
    Raises `SchemaError` for an unknown Kubernetes version or an unusable CRD file.
    """

    def __init__(self, kubernetes_version: str | None = None, crd_dirs: Sequence[Path] = (),
                 limits: Limits | None = None) -> None:
        self.kubernetes_version = kubernetes_version or DEFAULT_KUBERNETES_VERSION
        definitions = _core_definitions(self.kubernetes_version)
        self._core_kinds: dict[tuple[str, str], str] = {}
        for name, definition in definitions["$defs"].items():
            for gvk in definition.get("x-kubernetes-group-version-kind", ()):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self._core_kinds[(api_version, gvk["kind"])] = name
        self._documents: dict[str, Any] = {CORE_DEFINITIONS_URI: definitions}
        for filename in PROJECT_SCHEMA_FILES:
            text = resources.files("tools.validate.schemas").joinpath(filename).read_text(encoding="utf-8")
            document = load_text(text, f"tools/validate/schemas/{filename}").documents[0]
            document["$id"] = PROJECT_SCHEMA_BASE + filename
            self._documents[document["$id"]] = document
        self.cel = CelSupport()
        self._crds = load_crds(crd_dirs, limits)
        for crd in self._crds.values():
            self._documents[crd.schema["$id"]] = crd.schema
        self._registry = jsonschema_rs.Registry(list(self._documents.items()))
        self._compiled: dict[tuple[str, str], _Compiled | None] = {}
        # Compiled now, so that a CRD whose schema does not compile is an error before any resource.
        self._crd_validators: dict[tuple[str, str], Any] = {}
        for key, crd in self._crds.items():
            try:
                self._crd_validators[key] = self._validator(crd.schema["$id"])
            except ValueError as error:
                reason = str(error).splitlines()[0]
                message = f"the schema of {key[1]} {key[0]} is invalid: {reason}"
                raise SchemaError(f"{crd.where}: {message}") from None
        self._unknown_field_messages: dict[tuple[str, str], str] = {}

    # -- what is known -------------------------------------------------------------------------

    def known_kinds(self) -> set[tuple[str, str]]:
        return {*self._core_kinds, *PROJECT_KINDS, *self._crds}

    def source_of(self, api_version: str, kind: str) -> str | None:
        """Where the schema of apiVersion/kind comes from, in words (None when there is none)."""
        compiled = self._compiler(api_version, kind)
        return compiled.source if compiled else None

    def notes(self) -> list[str]:
        """What the validator could not check, for the report (CEL rules skipped and why)."""
        notes = []
        if self._crds and not self.cel.available:
            notes.append("CEL rules (x-kubernetes-validations) not evaluated: cel-python is not installed")
        for reason, count in sorted(self.cel.skipped.items()):
            notes.append(f"CEL rule skipped ({count}x): {reason}")
        return notes

    # -- validation ----------------------------------------------------------------------------

    def validate(self, resource: Resource) -> list[SchemaViolation]:
        if not isinstance(resource.doc, Mapping):
            message = f"a resource must be an object (got {_describe(resource.doc)})"
            return [SchemaViolation(resource, (), message, UNKNOWN_KIND)]
        api_version, kind = resource.api_version, resource.kind
        if not api_version or not kind:
            return [SchemaViolation(resource, (), "resource has no apiVersion or kind", UNKNOWN_KIND)]
        compiled = self._compiler(api_version, kind)
        if compiled is None:
            message = self._unknown_kind_message(api_version, kind)
            return [SchemaViolation(resource, (), message, UNKNOWN_KIND)]
        violations: list[SchemaViolation] = []
        document: Any = resource.doc
        try:
            valid = compiled.validator.is_valid(document)
        except ValueError:
            # Values JSON cannot carry (YAML timestamps, binary, non-string keys, huge integers):
            # validate what the API server would receive after kubectl's YAML-to-JSON conversion.
            document = as_json_value(document)
            valid = compiled.validator.is_valid(document)
        if not valid:
            for error in compiled.validator.iter_errors(document):
                violations.extend(self._explain(resource, error))
        if compiled.cel is not None:
            for path, message in self.cel.evaluate(compiled.cel, as_json_value(document), ()):
                violations.append(SchemaViolation(resource, path, message, CEL_RULE))
        return violations

    def _compiler(self, api_version: str, kind: str) -> _Compiled | None:
        key = (api_version, kind)
        if key not in self._compiled:
            self._compiled[key] = self._compile(api_version, kind)
        return self._compiled[key]

    def _compile(self, api_version: str, kind: str) -> _Compiled | None:
        key = (api_version, kind)
        if key in self._crds:
            crd = self._crds[key]
            cel = self.cel.build(crd.openapi) if self.cel.available else None
            return _Compiled(self._crd_validators[key], crd.source, cel)
        if key in PROJECT_KINDS:
            filename, name = PROJECT_KINDS[key]
            return _Compiled(
                self._validator(f"{PROJECT_SCHEMA_BASE}{filename}#/$defs/{name}"),
                f"project schema tools/validate/schemas/{filename}",
            )
        if key in self._core_kinds:
            return _Compiled(
                self._validator(f"{CORE_DEFINITIONS_URI}#/$defs/{self._core_kinds[key]}"),
                f"Kubernetes {self.kubernetes_version}",
            )
        return None

    def _validator(self, ref: str) -> Any:
        return jsonschema_rs.Draft202012Validator({"$ref": ref}, registry=self._registry)

    def _unknown_kind_message(self, api_version: str, kind: str) -> str:
        others = sorted(v for v, k in self.known_kinds() if k == kind and v != api_version)
        message = f"no schema for {kind} {api_version}"
        if others:
            return f"{message}: this gate knows {kind} as {', '.join(others)}"
        return f"{message} (not a Kubernetes {self.kubernetes_version} kind nor a kind of a known CRD)"

    # -- messages ------------------------------------------------------------------------------

    def _schema_at(self, location: str | None) -> Any:
        """The schema node an absolute keyword location (`uri#/json/pointer`) points to."""
        if not location or "#" not in location:
            return None
        uri, pointer = location.split("#", 1)
        node = self._documents.get(uri)
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(token)] if token.isdigit() and int(token) < len(node) else None
            elif isinstance(node, Mapping):
                node = node.get(token)
            if node is None:
                return None
        return node

    def _unknown_field_message(self, unexpected: str, location: str | None, owner: Any) -> str:
        # Cached: the same misspelling repeats across the resources of a run, difflib is not cheap.
        key = (unexpected, location or "")
        if key not in self._unknown_field_messages:
            base = location.split("#", 1)[0] if location else ""
            known = sorted(self._known_properties(owner, base))
            message = f"unknown field `{unexpected}`"
            close = difflib.get_close_matches(unexpected, known, n=1, cutoff=0.6)
            if close:
                message += f" (did you mean `{close[0]}`?)"
            elif known and len(known) <= 12:
                message += f" (allowed: {', '.join(known)})"
            self._unknown_field_messages[key] = message
        return self._unknown_field_messages[key]

    def _known_properties(self, schema: Any, base: str, depth: int = 0) -> set[str]:
        """Property names a schema declares, through $ref and allOf (for `did you mean`)."""
        if not isinstance(schema, Mapping) or depth > 8:
            return set()
        names = set(schema.get("properties") or {})
        if isinstance(schema.get("$ref"), str):
            target = urljoin(base, schema["$ref"])
            names |= self._known_properties(self._schema_at(target), target.split("#", 1)[0], depth + 1)
        for branch in schema.get("allOf") or ():
            names |= self._known_properties(branch, base, depth + 1)
        return names

    def _explain(self, resource: Resource, error: Any) -> Iterator[SchemaViolation]:
        path: FieldPath = tuple(error.instance_path)
        kind = error.kind
        name = type(kind).__name__
        location = error.absolute_keyword_location
        keyword_owner = self._schema_at(location.rsplit("/", 1)[0]) if location else None
        if name in ("AdditionalProperties", "UnevaluatedProperties"):
            for unexpected in kind.unexpected:
                message = self._unknown_field_message(unexpected, location, keyword_owner)
                yield SchemaViolation(resource, _join(path, unexpected), message, UNKNOWN_FIELD)
            return
        if name == "PropertyNames":
            # A key of a map that is not allowed: say which key, in the words of the key's schema.
            inner = kind.error
            message = f"key `{inner.instance}`: {self._message(inner)}"
            yield SchemaViolation(resource, path, message, INVALID_VALUE)
            return
        yield SchemaViolation(resource, path, self._message(error), INVALID_VALUE)

    def _message(self, error: Any) -> str:
        kind = error.kind
        name = type(kind).__name__
        location = error.absolute_keyword_location
        keyword_owner = self._schema_at(location.rsplit("/", 1)[0]) if location else None
        custom = keyword_owner.get("x-message") if isinstance(keyword_owner, Mapping) else None
        if name == "Required":
            missing = f"missing required field `{kind.property}`"
            return f"{missing}: {custom}" if custom else missing
        scalar = not isinstance(error.instance, dict | list)
        if custom and scalar and name in ("Enum", "Pattern", "Type", "Constant", "Not"):
            return f"{custom} (got {_describe(error.instance)})"
        return custom or self._value_message(kind, name, error, keyword_owner)

    def _value_message(self, kind: Any, name: str, error: Any, owner: Any) -> str:
        got = _describe(error.instance)
        if name == "Type":
            wanted = [t for t in kind.types if t != "null"] or list(kind.types)
            return f"must be {' or '.join(_TYPE_WORDS.get(t, t) for t in wanted)} (got {got})"
        if name == "Enum":
            options = ", ".join(str(o) for o in kind.options if o is not None)
            hints = owner.get("x-value-hints") if isinstance(owner, Mapping) else None
            hint = None
            if isinstance(hints, Mapping) and isinstance(error.instance, str):
                hint = hints.get(error.instance)
            if hint is None and isinstance(error.instance, str):
                strings = [o for o in kind.options if isinstance(o, str)]
                close = difflib.get_close_matches(error.instance, strings, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else None
            shown = error.instance if isinstance(error.instance, str) else got
            return f"must be one of {options} (got {shown}{f' — {hint}' if hint else ''})"
        if name == "Constant":
            return f"must be {json.dumps(kind.expected_value)} (got {got})"
        if name == "Pattern":
            return f"must match the pattern `{kind.pattern}` (got {got})"
        if name in ("AnyOf", "OneOfNotValid") and isinstance(owner, Mapping):
            branches = owner.get("anyOf") or owner.get("oneOf") or []
            types = [b.get("type") for b in branches if isinstance(b, Mapping)]
            if types and all(isinstance(t, str) for t in types) and all(set(b) == {"type"} for b in branches):
                return f"must be {' or '.join(_TYPE_WORDS.get(t, t) for t in types)} (got {got})"
            first = [str(e.message) for group in getattr(kind, "context", []) for e in group][:3]
            detail = f": {'; '.join(first)}" if first else ""
            return f"matches none of the allowed shapes{detail}"
        if name == "Not":
            return f"{got} is not allowed here"
        if name == "OneOfMultipleValid":
            return "matches more than one of the mutually exclusive shapes"
        # Bounds and the rest: jsonschema-rs' own wording, without echoing large values.
        text = str(error.message)
        return text if len(text) <= 200 else f"{text[:200]}…"
