"""The edges between the objects of one rendered overlay: names, selectors, ports and in-cluster addresses.

One object reaches another by a name (a ServiceAccount, a ConfigMap, a scale target), a label selector
(a Service, a PodDisruptionBudget, a NetworkPolicy), a port (by number or by a container port's name) or
an address written as text (`name.namespace.svc:port` in an env value, a ConfigMap, a collector exporter,
a KEDA trigger). The references rules and the network paths (`network.py`) read the edges from here. An
object created elsewhere and declared in gate.yaml (`Context.external`) resolves like a rendered one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tools.validate.model import Context, FieldPath, Resource, mapping, mappings, sequence
from tools.validate.workloads import PodTemplate, pod_templates, selector_matches

CONTAINER_LISTS = ("initContainers", "containers")


def find(ctx: Context, kind: str, namespace: str, name: str) -> Resource | None:
    """The object of `kind` named `name` in `namespace`: rendered, else declared external."""

    def index() -> dict[tuple[str, str], Resource]:
        by_name: dict[tuple[str, str], Resource] = {}
        for resource in [*ctx.of_kind(kind), *(r for r in ctx.external if r.kind == kind)]:
            by_name.setdefault((resource.namespace, resource.name), resource)
        return by_name

    return ctx.memo(f"references.by_name.{kind}", index).get((namespace, name))


def containers_of(template: PodTemplate) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    """Init containers, then containers, each with its path below the pod spec."""
    for field_name in CONTAINER_LISTS:
        for i, container in enumerate(sequence(template.spec.get(field_name))):
            if isinstance(container, dict):
                yield (field_name, i), container


@dataclass(frozen=True)
class ConfigRef:
    kind: str  # ConfigMap or Secret
    name: str
    path: tuple[str | int, ...]


def config_refs(template: PodTemplate) -> Iterator[ConfigRef]:
    """Every required ConfigMap/Secret the pod reads: env valueFrom, envFrom, volumes (projected too)."""
    for prefix, container in containers_of(template):
        for i, env in enumerate(sequence(container.get("env"))):
            source = mapping(mapping(env).get("valueFrom"))
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = source.get(key)
                if isinstance(ref, dict) and not ref.get("optional"):
                    path = (*prefix, "env", i, "valueFrom", key, "name")
                    yield ConfigRef(kind, str(ref.get("name", "")), path)
        for i, env_from in enumerate(sequence(container.get("envFrom"))):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = mapping(env_from).get(key)
                if isinstance(ref, dict) and not ref.get("optional"):
                    yield ConfigRef(kind, str(ref.get("name", "")), (*prefix, "envFrom", i, key, "name"))
    for i, volume in enumerate(sequence(template.spec.get("volumes"))):
        volume = mapping(volume)
        config_map, secret = volume.get("configMap"), volume.get("secret")
        if isinstance(config_map, dict) and not config_map.get("optional"):
            path = ("volumes", i, "configMap", "name")
            yield ConfigRef("ConfigMap", str(config_map.get("name", "")), path)
        if isinstance(secret, dict) and not secret.get("optional"):
            path = ("volumes", i, "secret", "secretName")
            yield ConfigRef("Secret", str(secret.get("secretName", "")), path)
        for j, source in enumerate(mapping(volume.get("projected")).get("sources") or []):
            for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                ref = mapping(source).get(key)
                if isinstance(ref, dict) and not ref.get("optional"):
                    path = ("volumes", i, "projected", "sources", j, key, "name")
                    yield ConfigRef(kind, str(ref.get("name", "")), path)


@dataclass(frozen=True)
class PodClass:
    """Pod templates alike for every selector and port check: one namespace, the same pod labels and the
    same container ports. Copies of a workload fall in one class, so selectors are matched once per class,
    not once per template (an overlay of N copies would otherwise cost N x N)."""

    namespace: str
    labels: Mapping[str, str]
    templates: tuple[PodTemplate, ...]

    @property
    def first(self) -> PodTemplate:
        return self.templates[0]


def _port_signature(template: PodTemplate) -> tuple[Any, ...]:
    return tuple(
        (str(prefix[0]), str(port.get("name", "")), str(port.get("containerPort", "")))
        for prefix, container in containers_of(template) for port in container_ports(container)
    )


def pod_classes(ctx: Context, namespace: str) -> list[PodClass]:
    """The namespace's pod templates in classes, in rendered order of each class's first template."""
    def index() -> dict[str, list[PodClass]]:
        grouped: dict[tuple[Any, ...], list[PodTemplate]] = {}
        labels_of: dict[tuple[Any, ...], dict[str, str]] = {}
        for template in pod_templates(ctx):
            labels = dict(template.labels)
            key = (template.resource.namespace, tuple(sorted(labels.items())), _port_signature(template))
            grouped.setdefault(key, []).append(template)
            labels_of.setdefault(key, labels)
        by_namespace: dict[str, list[PodClass]] = {}
        for key, templates in grouped.items():
            by_namespace.setdefault(key[0], []).append(PodClass(key[0], labels_of[key], tuple(templates)))
        return by_namespace

    return ctx.memo("edges.pod_classes", index).get(namespace, [])


def service_selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Service's selector is a plain label map (not a LabelSelector): every pair must match."""
    return all(labels.get(str(key)) == str(value) for key, value in selector.items())


def selected_classes(ctx: Context, resource: Resource) -> list[PodClass] | None:
    """The classes of pod templates a Service, PDB or NetworkPolicy selects; None when it selects by no
    selector (a Service without one has hand-made endpoints; a policy with an empty podSelector covers
    all pods)."""
    classes = pod_classes(ctx, resource.namespace)
    if resource.kind == "Service":
        selector = resource.get("spec", "selector")
        if not isinstance(selector, dict) or not selector:
            return None
        return [c for c in classes if service_selects(selector, c.labels)]
    field_name = "podSelector" if resource.kind == "NetworkPolicy" else "selector"
    selector = resource.get("spec", field_name)
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        return None
    return [c for c in classes if selector_matches(selector, c.labels)]


def selected_templates(ctx: Context, resource: Resource) -> list[PodTemplate] | None:
    """`selected_classes`, as the pod templates themselves."""
    classes = selected_classes(ctx, resource)
    return None if classes is None else [t for c in classes for t in c.templates]


def container_ports(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return mappings(container.get("ports"))


def has_port(candidates: Sequence[Mapping[str, Any]], port: Any) -> bool:
    """Whether one of the containers declares `port`: a name, or a number (int or digits)."""
    for container in candidates:
        for declared in container_ports(container):
            if isinstance(port, str) and not port.isdigit():
                if declared.get("name") == port:
                    return True
            elif str(declared.get("containerPort")) == str(port):
                return True
    return False


# A Service's cluster DNS name, `name.namespace.svc[.cluster.local]`, with an optional scheme and port. The
# match only finds the candidates in free text; each one is then split by urllib.
SERVICE_HOST = re.compile(
    r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?"
    r"(?P<host>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.svc(?:\.cluster\.local)?)\.?"
    r"(?::(?P<port>[0-9]+))?(?![-a-z0-9.])"
)
SCHEME_PORTS = {"http": 80, "https": 443}
# Protocols a port may be declared to speak (a Service port's appProtocol, or its name or name prefix).
PROTOCOLS = ("http", "https", "h2c", "grpc", "otlp-grpc", "otlp-http", "keda-external-scaler")
# What the consumer of an address speaks, by where the address is written.
TRIGGER_PROTOCOLS = {"external": "keda-external-scaler", "kedify-otel": "keda-external-scaler",
                     "external-push": "keda-external-scaler", "prometheus": "http"}
EXPORTER_PROTOCOLS = {"otlp": "otlp-grpc", "otlphttp": "otlp-http", "prometheusremotewrite": "http"}


@dataclass(frozen=True)
class Address:
    """An in-cluster address written in a field: where it is, what it names, what must answer there."""

    holder: Resource
    path: FieldPath
    text: str
    service: str
    namespace: str
    port: int | None
    protocol: str | None  # what the consumer speaks, when the field says


def addresses_in(holder: Resource, path: FieldPath, value: Any, protocol: str | None) -> Iterator[Address]:
    if not isinstance(value, str) or ".svc" not in value:  # every match holds it; most texts do not
        return
    for match in SERVICE_HOST.finditer(value):
        host = match.group("host")
        name, namespace = host.split(".")[:2]
        scheme = match.group("scheme")
        port = int(match.group("port")) if match.group("port") else SCHEME_PORTS.get(scheme or "")
        spoken = protocol or ("http" if scheme in ("http", "https") else None)
        yield Address(holder, path, match.group(0), name, namespace, port, spoken)


def addresses(ctx: Context) -> list[Address]:
    """Every in-cluster Service address in env values, ConfigMap data, collector exporters and KEDA
    triggers of the overlay, in rendered order."""
    return ctx.memo("references.addresses", lambda: list(find_addresses(ctx)))


def find_addresses(ctx: Context) -> Iterator[Address]:
    for resource in ctx.resources:
        if resource.kind == "ConfigMap":
            for key, value in mapping(resource.get("data")).items():
                yield from addresses_in(resource, ("data", str(key)), value, None)
        elif resource.kind in ("ScaledObject", "ScaledJob"):
            for i, trigger in enumerate(sequence(resource.get("spec", "triggers"))):
                metadata = mapping(mapping(trigger).get("metadata"))
                speaks = TRIGGER_PROTOCOLS.get(str(mapping(trigger).get("type")))
                for key in ("scalerAddress", "serverAddress"):
                    protocol = speaks if key == "scalerAddress" else "http"
                    yield from addresses_in(resource, ("spec", "triggers", i, "metadata", key),
                                             metadata.get(key), protocol)
        elif resource.kind == "OpenTelemetryCollector":
            exporters = mapping(resource.get("spec", "config", "exporters"))
            for name, exporter in exporters.items():
                if not isinstance(exporter, dict):
                    continue
                protocol = EXPORTER_PROTOCOLS.get(str(name).split("/")[0])
                for key in ("endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint"):
                    path = ("spec", "config", "exporters", str(name), key)
                    yield from addresses_in(resource, path, exporter.get(key), protocol)
    for template in pod_templates(ctx):
        for prefix, container in containers_of(template):
            for i, env in enumerate(sequence(container.get("env"))):
                path = template.at(*prefix, "env", i, "value")
                yield from addresses_in(template.resource, path, mapping(env).get("value"), None)


def port_protocol(port: Mapping[str, Any]) -> str | None:
    """What a Service port says it speaks: its appProtocol, else its name or the name's prefix
    (`http-metrics` speaks http, `otlp-grpc-receiver` otlp-grpc)."""
    declared = str(port.get("appProtocol") or "").lower()
    if declared in PROTOCOLS:
        return declared
    name = str(port.get("name") or "").lower()
    for protocol in sorted(PROTOCOLS, key=len, reverse=True):
        if name == protocol or name.startswith(f"{protocol}-"):
            return protocol
    return None


def speaks(port: Mapping[str, Any], wanted: str) -> bool | None:
    """Whether the port speaks `wanted`; None when the port does not say."""
    declared = port_protocol(port)
    if declared is None:
        return None
    if wanted == "http":
        return declared in ("http", "https", "h2c", "otlp-http")
    return declared == wanted
