"""Who may reach whom under the overlay's NetworkPolicies, and the connections the system needs.

NetworkPolicy semantics (networking.k8s.io/v1): a pod is isolated for ingress (egress) when a policy in
its namespace selects it and lists `Ingress` (`Egress`) in `policyTypes` (when `policyTypes` is absent:
`Ingress` always, `Egress` when the policy has `egress` rules). An isolated pod accepts (opens) a
connection only if some selecting policy has a rule whose peers match the other side and whose ports
match the port: no `from`/`to` matches every peer, no `ports` every port; a peer's `podSelector` alone
means pods of the policy's namespace, `namespaceSelector` alone every pod of the matching namespaces,
both together the matching pods in the matching namespaces; a named port is the destination
container's port of that name. `ipBlock` peers are taken to match sources outside the cluster (the load
balancer's addresses in the VPC) and, for egress, everything when the block is `0.0.0.0/0` with no
`except`; the cluster's pod addresses are not known here.

The connections the system needs (`required_connections`): the load balancer to each Ingress backend's
pods, a pod to the pods behind every in-cluster address it is configured with (env values, the
ConfigMaps it reads), the OpenTelemetry collector to every pod its Kubernetes scrape configs keep, on
the scrape port; and, from a pod whose egress is isolated, DNS to kube-system for an address by name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from tools.validate.config import EXTERNAL_ANNOTATION, SCRAPER_ANNOTATION
from tools.validate.edges import addresses, config_refs, find, pod_classes, selected_classes
from tools.validate.model import (
    Context,
    FieldPath,
    Resource,
    as_int,
    format_path,
    mapping,
    mappings,
    sequence,
)
from tools.validate.workloads import PodTemplate, canonical, pod_templates, selector_matches

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_NAMESPACE = "kube-system"
DNS_LABELS: Mapping[str, str] = {"k8s-app": "kube-dns"}
DNS_PORT = 53


@dataclass(frozen=True)
class Pods:
    """One side of a connection: the pods of a template, declared pods, or the world outside the cluster."""

    description: str
    namespace: str | None  # None: outside the cluster
    labels: Mapping[str, str]
    template: PodTemplate | None = None

    @property
    def signature(self) -> tuple[Any, ...]:
        """Pods alike for every policy: the same namespace, labels and named ports. Copies of a workload
        share it, so each class of pods is checked once."""
        ports: list[tuple[str, int]] = []
        for _, container in self.template.containers() if self.template else ():
            for port in sequence(container.get("ports")):
                if isinstance(port, dict) and port.get("name"):
                    ports.append((str(port["name"]), as_int(port.get("containerPort"), 0) or 0))
        return (self.namespace, tuple(sorted(self.labels.items())), tuple(sorted(ports)))

    def container_port(self, name: str) -> int | None:
        for _, container in self.template.containers() if self.template else ():
            for port in sequence(container.get("ports")):
                if isinstance(port, dict) and port.get("name") == name:
                    return as_int(port.get("containerPort"))
        return None


OUTSIDE = Pods("the load balancer (outside the cluster)", None, {})


@dataclass(frozen=True)
class Connection:
    """A connection the system needs: `source` opens it to `destination` on `port` (a number)."""

    source: Pods
    destination: Pods
    port: int
    protocol: str  # TCP or UDP
    why: str  # what needs it, for the reviewer: "Ingress/gateway backend", "GATEWAY_UPSTREAM_URL"
    holder: Resource  # the resource that asks for it (where a finding about a missing target points)
    holder_path: FieldPath


@dataclass(frozen=True)
class Cut:
    """A needed connection no policy lets through: which side isolates it and by which policies."""

    connection: Connection
    side: str  # ingress (the destination refuses) or egress (the source may not open it)
    policies: tuple[Resource, ...]


def namespace_labels(ctx: Context, namespace: str) -> dict[str, str]:
    def index() -> dict[str, dict[str, str]]:
        return {r.name: dict(r.labels) for r in ctx.of_kind("Namespace")}

    labels = dict(ctx.memo("network.namespace_labels", index).get(namespace, {}))
    labels[NAMESPACE_NAME_LABEL] = namespace
    return labels


def _policy_types(policy: Resource) -> set[str]:
    types = policy.get("spec", "policyTypes")
    if isinstance(types, list) and types:
        return {str(t) for t in types}
    return {"Ingress", "Egress"} if policy.get("spec", "egress") else {"Ingress"}


def _policies_by_namespace(ctx: Context) -> dict[tuple[str, str], list[Resource]]:
    def index() -> dict[tuple[str, str], list[Resource]]:
        out: dict[tuple[str, str], list[Resource]] = {}
        for policy in ctx.of_kind("NetworkPolicy"):
            for direction in _policy_types(policy):
                out.setdefault((policy.namespace, direction), []).append(policy)
        return out

    return ctx.memo("network.policies", index)


def isolating(ctx: Context, pods: Pods, direction: str) -> list[Resource]:
    """The policies that isolate these pods for `direction` (Ingress or Egress), once per class of pods."""
    if pods.namespace is None:
        return []
    cache: dict[tuple[Any, ...], list[Resource]] = ctx.extras.setdefault("network.isolating", {})
    key = (direction, pods.namespace, tuple(sorted(pods.labels.items())))
    if key not in cache:
        cache[key] = [
            policy for policy in _policies_by_namespace(ctx).get((pods.namespace, direction), [])
            if selector_matches(mapping(policy.get("spec", "podSelector")), pods.labels)
        ]
    return cache[key]


def _peer_label_pairs(peer: Mapping[str, Any]) -> set[tuple[str, str]] | None:
    """The label pairs a peer requires of a pod (any one of them narrows the candidates), or None when
    it may match a pod without any particular label."""
    selector = peer.get("podSelector")
    if "ipBlock" in peer or not isinstance(selector, dict):
        return None
    pairs = {(str(k), str(v)) for k, v in (mapping(selector.get("matchLabels"))).items()}
    return pairs or None


def _candidates(ctx: Context, direction: str, other: Pods) -> set[int]:
    """Ids of the policies whose `direction` rules could match `other` at all: each rule's peers indexed
    by the label pairs they require, plus every policy with a rule that requires none."""
    def index() -> tuple[dict[tuple[str, str], set[int]], set[int]]:
        by_pair: dict[tuple[str, str], set[int]] = {}
        open_to_any: set[int] = set()
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in ctx.of_kind("NetworkPolicy"):
            for rule in sequence(policy.get("spec", key)):
                peers = sequence(mapping(rule).get(peers_key))
                for peer in peers or [None]:
                    pairs = _peer_label_pairs(peer) if isinstance(peer, dict) else None
                    if pairs is None:
                        open_to_any.add(id(policy))
                    else:
                        by_pair.setdefault(min(pairs), set()).add(id(policy))
        return by_pair, open_to_any

    by_pair, open_to_any = ctx.memo(f"network.candidates.{direction}", index)
    found = set(open_to_any)
    for pair in other.labels.items():
        found |= by_pair.get((str(pair[0]), str(pair[1])), set())
    return found


def _peer_matches(ctx: Context, peer: Mapping[str, Any], policy: Resource, other: Pods, egress: bool) -> bool:
    if not isinstance(peer, dict):
        return False
    if "ipBlock" in peer:
        block = mapping(peer.get("ipBlock"))
        everything = block.get("cidr") in ("0.0.0.0/0", "::/0") and not block.get("except")
        return other.namespace is None or (egress and everything)
    if other.namespace is None:
        return False
    pod_selector, namespace_selector = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = other.namespace == policy.namespace
    else:
        in_namespace = selector_matches(namespace_selector, namespace_labels(ctx, other.namespace))
    return in_namespace and (pod_selector is None or selector_matches(pod_selector, other.labels))


def _port_matches(rule_port: Mapping[str, Any], connection: Connection) -> bool:
    if not isinstance(rule_port, dict) or str(rule_port.get("protocol") or "TCP") != connection.protocol:
        return False
    port = rule_port.get("port")
    if port is None:
        return True
    if isinstance(port, str) and not port.isdigit():
        return connection.destination.container_port(port) == connection.port
    first, last = as_int(port), as_int(rule_port.get("endPort", port))
    return first is not None and last is not None and first <= connection.port <= last


def _admits(ctx: Context, policy: Resource, connection: Connection, direction: str) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    other = connection.source if direction == "Ingress" else connection.destination
    for rule in mappings(policy.get("spec", key)):
        peers = sequence(rule.get(peers_key))
        ports = sequence(rule.get("ports"))
        peer_ok = not peers or any(
            _peer_matches(ctx, peer, policy, other, direction == "Egress") for peer in peers)
        port_ok = not ports or any(_port_matches(port, connection) for port in ports)
        if peer_ok and port_ok:
            return True
    return False


def cuts(ctx: Context, connection: Connection) -> Iterator[Cut]:
    """The sides on which the overlay's policies refuse `connection` (none when it goes through)."""
    for direction, pods in (("Egress", connection.source), ("Ingress", connection.destination)):
        policies = isolating(ctx, pods, direction)
        if not policies:
            continue
        other = connection.source if direction == "Ingress" else connection.destination
        candidates = _candidates(ctx, direction, other)
        admitting = (p for p in policies if id(p) in candidates)
        if not any(_admits(ctx, policy, connection, direction) for policy in admitting):
            yield Cut(connection, direction.lower(), _ranked(ctx, policies, direction.lower()))


def _ranked(ctx: Context, policies: list[Resource], rules_key: str) -> tuple[Resource, ...]:
    """The policy written for these pods (rules of this direction, a selector) first: where a fix goes.
    Once per list of isolating policies (`isolating` keeps each list), as every copy's pods share one."""
    cache: dict[tuple[int, str], tuple[list[Resource], tuple[Resource, ...]]] = ctx.extras.setdefault(
        "network.ranked", {})
    key = (id(policies), rules_key)
    if key not in cache:  # the list is kept beside its ranking, so its id stays its own
        ranked = sorted(policies, key=lambda p: (not p.get("spec", rules_key),
                                                 not (mapping(p.get("spec", "podSelector")))))
        cache[key] = (policies, tuple(ranked))
    return cache[key][1]


# ------------------------------------------------------------------------------- needed connections


def pods_of(template: PodTemplate) -> Pods:
    resource = template.resource
    return Pods(f"{resource.kind}/{resource.name}", resource.namespace, dict(template.labels), template)


def _target_port(service_port: Mapping[str, Any], destination: Pods) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, str) and not target.isdigit():
        return destination.container_port(target)
    return as_int(target)


def _service_connections(
    ctx: Context, source: Pods, service: Resource, port: Mapping[str, Any], why: str, holder: Resource,
    holder_path: FieldPath,
) -> Iterator[Connection]:
    if EXTERNAL_ANNOTATION in service.annotations:  # declared in gate.yaml: its pods' labels, when given
        if service.labels:
            yield Connection(source, Pods(f"Service/{service.name}", service.namespace, dict(service.labels)),
                             int(port.get("port", 0)), "TCP", why, holder, holder_path)
        return
    for pod_class in sequence(selected_classes(ctx, service)):
        destination = pods_of(pod_class.first)
        number = _target_port(port, destination)
        if number is not None:
            yield Connection(source, destination, number, "TCP", why, holder, holder_path)


def _consumers(ctx: Context, config_map: Resource) -> list[PodTemplate]:
    """The pod templates that read a ConfigMap (env, envFrom, volumes) in its namespace."""
    def index() -> dict[tuple[str, str], list[PodTemplate]]:
        out: dict[tuple[str, str], list[PodTemplate]] = {}
        for template in pod_templates(ctx):
            for name in dict.fromkeys(r.name for r in config_refs(template) if r.kind == "ConfigMap"):
                out.setdefault((template.resource.namespace, name), []).append(template)
        return out

    return ctx.memo("network.config_map_consumers", index).get((config_map.namespace, config_map.name), [])


def _templates_of(ctx: Context, resource: Resource) -> list[PodTemplate]:
    def index() -> dict[int, list[PodTemplate]]:
        out: dict[int, list[PodTemplate]] = {}
        for template in pod_templates(ctx):
            out.setdefault(id(template.resource), []).append(template)
        return out

    return ctx.memo("network.templates_by_resource", index).get(id(resource), [])


def required_connections(ctx: Context) -> list[Connection]:
    """The connections the system needs, one per class of source and destination pods and port."""
    def build() -> list[Connection]:
        unique: dict[tuple[Any, ...], Connection] = {}
        for connection in _required(ctx):
            key = (connection.source.signature, connection.destination.signature, connection.port,
                   connection.protocol)
            unique.setdefault(key, connection)
        return list(unique.values())

    return ctx.memo("network.required", build)


def _required(ctx: Context) -> Iterator[Connection]:
    for ingress in ctx.of_kind("Ingress"):
        for i, rule in enumerate(sequence(ingress.get("spec", "rules"))):
            for j, path in enumerate(sequence(mapping(mapping(rule).get("http")).get("paths"))):
                backend = mapping(mapping(mapping(path).get("backend")).get("service"))
                service = find(ctx, "Service", ingress.namespace, str(backend.get("name", "")))
                wanted = mapping(backend.get("port"))
                port = next((p for p in mappings(service.get("spec", "ports")) if (
                    p.get("name") == wanted.get("name") if "name" in wanted
                    else str(p.get("port")) == str(wanted.get("number")))), None) if service else None
                if service is not None and port is not None:
                    yield from _service_connections(
                        ctx, OUTSIDE, service, port, f"Ingress/{ingress.name} backend", ingress,
                        ("spec", "rules", i, "http", "paths", j, "backend"))
    for address in addresses(ctx):
        service = find(ctx, "Service", address.namespace, address.service)
        port = next((p for p in (sequence(service.get("spec", "ports"))) if isinstance(p, dict)
                     and str(p.get("port")) == str(address.port)), None) if service else None
        if address.holder.kind == "ConfigMap":
            sources = [pods_of(t) for t in _consumers(ctx, address.holder)]
        elif address.holder.kind == "OpenTelemetryCollector":
            sources = [_collector_pods(address.holder)]
        else:
            sources = [pods_of(t) for t in _templates_of(ctx, address.holder)]
        for source in sources:
            why = f"{address.text} ({address.holder.kind}/{address.holder.name} {format_path(address.path)})"
            if isolating(ctx, source, "Egress"):
                dns = Pods("the cluster DNS (kube-system)", DNS_NAMESPACE, DNS_LABELS)
                yield Connection(source, dns, DNS_PORT, "UDP", f"DNS for {address.text}", address.holder,
                                 address.path)
            if service is not None and port is not None:
                yield from _service_connections(ctx, source, service, port, why, address.holder, address.path)
    for collector in ctx.of_kind("OpenTelemetryCollector"):
        yield from _scrape_connections(ctx, collector)
    yield from _monitor_connections(ctx)


def _monitor_namespaces(ctx: Context, monitor: Resource) -> list[str]:
    selector = mapping(monitor.get("spec", "namespaceSelector"))
    if selector.get("any") is True:
        return _all_namespaces(ctx)
    names = [str(n) for n in sequence(selector.get("matchNames"))]
    return names or [monitor.namespace]


@dataclass(frozen=True)
class _ServiceClass:
    """Services of one namespace alike for a monitor: the same labels (a ServiceMonitor selects all or
    none), selector and ports (the same pods behind the same ports), both rendered or both declared
    external (with the same labels). They give the same connections; the first in rendered order is the
    one that counts."""

    first: Resource
    labels: Mapping[str, Any]


def _service_classes(ctx: Context, namespace: str) -> list[_ServiceClass]:
    def index() -> dict[str, list[_ServiceClass]]:
        classes: dict[tuple[str, ...], _ServiceClass] = {}
        for service in ctx.of_kind("Service"):
            key = (service.namespace, canonical(service.labels), canonical(service.get("spec", "selector")),
                   canonical(service.get("spec", "ports")), str(EXTERNAL_ANNOTATION in service.annotations))
            classes.setdefault(key, _ServiceClass(service, service.labels))
        by_namespace: dict[str, list[_ServiceClass]] = {}
        for key, service_class in classes.items():
            by_namespace.setdefault(key[0], []).append(service_class)
        return by_namespace

    return ctx.memo("network.service_classes", index).get(namespace, [])


def _matching(selector: Mapping[str, Any], candidates: list[Any], labels_of: str) -> list[Any]:
    """The candidates whose labels (attribute `labels_of`) the LabelSelector matches, in order."""
    return [c for c in candidates if selector_matches(selector, getattr(c, labels_of))]


def _monitor_connections(ctx: Context) -> Iterator[Connection]:
    """Prometheus (the objects gate.yaml declares `scrapes_monitors`) to every target of the overlay's
    ServiceMonitors (Service endpoint port -> the selected pods' target port) and PodMonitors
    (the selected pods' named container port). Targets made elsewhere are not known here.

    A connection's identity (`required_connections`) is its pods and port, not the monitor asking for
    it: a class of Services (or pods) already read for an endpoint port gives nothing new for that port,
    whichever monitor asks again (copies of a workload each bring a monitor selecting every copy)."""
    scrapers = [Pods(f"{e.kind}/{e.name}", e.namespace, dict(e.labels)) for e in ctx.external
                if e.annotations.get(SCRAPER_ANNOTATION) == "true"]
    if not scrapers:
        return
    read: set[tuple[int, str]] = set()
    for monitor in ctx.of_kind("ServiceMonitor"):
        selector = mapping(monitor.get("spec", "selector"))
        for namespace in _monitor_namespaces(ctx, monitor):
            for service_class in _matching(selector, _service_classes(ctx, namespace), "labels"):
                service = service_class.first
                for i, endpoint in enumerate(mappings(monitor.get("spec", "endpoints"))):
                    endpoint_read = (id(service), canonical(endpoint.get("port")))
                    if endpoint_read in read:
                        continue
                    read.add(endpoint_read)
                    port = next((p for p in mappings(service.get("spec", "ports"))
                                 if p.get("name") == endpoint.get("port")), None)
                    for scraper in scrapers if port is not None else []:
                        yield from _service_connections(
                            ctx, scraper, service, port, f"ServiceMonitor/{monitor.name} endpoint "
                            f"{endpoint.get('port')!r}", monitor, ("spec", "endpoints", i))
    for monitor in ctx.of_kind("PodMonitor"):
        selector = mapping(monitor.get("spec", "selector"))
        for namespace in _monitor_namespaces(ctx, monitor):
            for pod_class in _matching(selector, pod_classes(ctx, namespace), "labels"):
                destination = pods_of(pod_class.first)
                for i, endpoint in enumerate(mappings(monitor.get("spec", "podMetricsEndpoints"))):
                    endpoint_read = (id(pod_class), canonical(str(endpoint.get("port"))))
                    if endpoint_read in read:
                        continue
                    read.add(endpoint_read)
                    number = destination.container_port(str(endpoint.get("port")))
                    for scraper in scrapers if number is not None else []:
                        yield Connection(scraper, destination, number, "TCP",
                                         f"PodMonitor/{monitor.name} endpoint {endpoint.get('port')!r}",
                                         monitor, ("spec", "podMetricsEndpoints", i))


# Prometheus' meta label of a pod label: non-alphanumerics become underscores.
_POD_LABEL_META = "__meta_kubernetes_pod_label_"


def _sanitized(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


@dataclass(frozen=True)
class ScrapeJob:
    collector: Resource
    path: FieldPath
    name: str
    connections: tuple[Connection, ...]


def scrape_jobs(ctx: Context) -> list[ScrapeJob]:
    """Every Kubernetes pod-role scrape config of the overlay's collectors, with what it keeps."""
    def build() -> list[ScrapeJob]:
        jobs = []
        for collector in ctx.of_kind("OpenTelemetryCollector"):
            source = _collector_pods(collector)
            for path, scrape in _scrape_configs(collector):
                if _pod_namespaces(scrape) == set():
                    continue
                kept = tuple(_scrape_config_connections(ctx, collector, source, scrape, path))
                jobs.append(ScrapeJob(collector, path, str(scrape.get("job_name", "")), kept))
        return jobs

    return ctx.memo("network.scrape_jobs", build)


def _collector_pods(collector: Resource) -> Pods:
    return Pods(f"OpenTelemetryCollector/{collector.name}", collector.namespace,
                {"app.kubernetes.io/name": f"{collector.name}-collector",
                 "app.kubernetes.io/component": "opentelemetry-collector"})


def _scrape_configs(collector: Resource) -> Iterator[tuple[FieldPath, Mapping[str, Any]]]:
    receivers = mapping(collector.get("spec", "config", "receivers"))
    for receiver_name, receiver in receivers.items():
        if str(receiver_name).split("/")[0] != "prometheus" or not isinstance(receiver, dict):
            continue
        for k, scrape in enumerate(sequence(mapping(receiver.get("config")).get("scrape_configs"))):
            path = ("spec", "config", "receivers", str(receiver_name), "config", "scrape_configs", k)
            yield path, mapping(scrape)


def _pod_namespaces(scrape: Mapping[str, Any]) -> set[str] | None:
    """The namespaces a scrape config discovers pods in; None for all, an empty set for no pod role."""
    namespaces: set[str] | None = set()
    for sd in sequence(scrape.get("kubernetes_sd_configs")):
        if mapping(sd).get("role") != "pod":
            continue
        names = sequence(mapping(mapping(sd).get("namespaces")).get("names"))
        if not names:
            namespaces = None
        elif namespaces is not None:
            namespaces |= {str(n) for n in names}
    return namespaces


def _scrape_connections(ctx: Context, collector: Resource) -> Iterator[Connection]:
    for job in scrape_jobs(ctx):
        if job.collector is collector:
            yield from job.connections


def _scrape_config_connections(
    ctx: Context, collector: Resource, source: Pods, scrape: Mapping[str, Any], path: FieldPath
) -> Iterator[Connection]:
    """The collector's pods to every pod the scrape config keeps, on the kept ports.

    The OpenTelemetry operator labels a collector's pods `app.kubernetes.io/name: <name>-collector`.
    Only `keep` relabelings on pod labels and container port names/numbers are read; a config that
    relabels otherwise is taken to keep what those rules keep.
    """
    namespaces = _pod_namespaces(scrape)
    keeps = [r for r in mappings(scrape.get("relabel_configs")) if r.get("action", "replace") == "keep"]
    for namespace in namespaces if namespaces is not None else _all_namespaces(ctx):
        for pod_class in pod_classes(ctx, namespace):
            yield from _kept_ports(collector, source, scrape, path, keeps, pod_class.first)


def _all_namespaces(ctx: Context) -> list[str]:
    return ctx.memo("network.all_namespaces", lambda: list(
        dict.fromkeys(template.resource.namespace for template in pod_templates(ctx))))


def _kept_ports(
    collector: Resource, source: Pods, scrape: Mapping[str, Any], path: FieldPath,
    keeps: list[Mapping[str, Any]], template: PodTemplate,
) -> Iterator[Connection]:
    pods = pods_of(template)
    if not all(_keeps_pod(rule, pods.labels) for rule in keeps):
        return
    for _, container in template.containers():
        for port in sequence(container.get("ports")):
            if isinstance(port, dict) and all(_keeps_port(rule, port) for rule in keeps):
                yield Connection(source, pods, as_int(port.get("containerPort"), 0) or 0, "TCP",
                                 f"scrape job {scrape.get('job_name')!r}", collector, path)


def _kept(rule: Mapping[str, Any], value: str) -> bool:
    return _fullmatch(str(rule.get("regex", "(.*)")), value)


@functools.lru_cache(maxsize=4096)
def _fullmatch(pattern: str, value: str) -> bool:
    """Whether a keep relabeling keeps `value`. Its regex is compiled as Prometheus compiles it, by RE2
    (linear time on a pull request's pattern, where Python's backtracking engine could be made to run
    for ever); a pattern RE2 refuses keeps nothing, as Prometheus refuses to load it."""
    try:
        return re2.fullmatch(pattern, value) is not None
    except re2.error:
        return False


def _keeps_pod(rule: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    sources = [str(s) for s in sequence(rule.get("source_labels"))]
    if len(sources) != 1 or not sources[0].startswith(_POD_LABEL_META):
        return True
    wanted = sources[0][len(_POD_LABEL_META):]
    value = next((v for k, v in labels.items() if _sanitized(k) == wanted), "")
    return _kept(rule, value)


def _keeps_port(rule: Mapping[str, Any], port: Mapping[str, Any]) -> bool:
    sources = [str(s) for s in sequence(rule.get("source_labels"))]
    fields = {"__meta_kubernetes_pod_container_port_name": "name",
              "__meta_kubernetes_pod_container_port_number": "containerPort"}
    if len(sources) != 1 or sources[0] not in fields:
        return True
    return _kept(rule, str(port.get(fields[sources[0]], "")))


def describe(pods: Pods) -> str:
    if pods.namespace is None:
        return pods.description
    return f"{pods.description} ({pods.namespace})"
