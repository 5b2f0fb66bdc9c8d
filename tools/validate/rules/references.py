"""references rules: every name, selector and port one rendered object uses to reach another resolves.

Each of these breaks production on the first sync while every object on its own is valid: a
ScaledObject scaling a Deployment that is not there, a Service selecting no pod, an Ingress naming a
port its Service does not have, a NodePool naming an EC2NodeClass that does not exist. The checks read
the whole rendered overlay. Objects that exist in the cluster but come from elsewhere (a Helm chart of
another Application) are declared once in `gate.yaml` under `external` (`ctx.external`), so a reference
to them resolves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate.edges import (
    addresses,
    config_refs,
    containers_of,
    find,
    has_port,
    port_protocol,
    selected_classes,
    speaks,
)
from tools.validate.model import (
    Context,
    FieldPath,
    Resource,
    Rule,
    Severity,
    Violation,
    mapping,
    mappings,
    sequence,
)
from tools.validate.network import cuts, describe, required_connections, scrape_jobs
from tools.validate.workloads import WORKLOAD_KINDS, pod_templates

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _known(ctx: Context, kind: str, namespace: str, name: str) -> bool:
    return find(ctx, kind, namespace, name) is not None


def _where(namespace: str) -> str:
    return f"in namespace {namespace!r}" if namespace else "in this overlay"


# ------------------------------------------------------------------------------------- pod templates


def check_service_account_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        name = template.spec.get("serviceAccountName")
        if not name or name == "default":
            continue
        namespace = template.resource.namespace
        if not _known(ctx, "ServiceAccount", namespace, str(name)):
            yield Violation(
                template.resource,
                template.at("serviceAccountName"),
                f"ServiceAccount {name!r} does not exist {_where(namespace)}: the pods are never created "
                "(the ReplicaSet reports 'serviceaccount not found')",
            )


def check_config_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        namespace = template.resource.namespace
        for ref in config_refs(template):
            if not _known(ctx, ref.kind, namespace, ref.name):
                yield Violation(
                    template.resource,
                    template.at(*ref.path),
                    f"{ref.kind} {ref.name!r} does not exist {_where(namespace)} and the reference is not "
                    "optional: the container never starts (CreateContainerConfigError)",
                )


def check_claim_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        namespace = template.resource.namespace
        for i, volume in enumerate(sequence(template.spec.get("volumes"))):
            claim = mapping(volume).get("persistentVolumeClaim")
            if not isinstance(claim, dict):
                continue
            name = str(claim.get("claimName", ""))
            if not _known(ctx, "PersistentVolumeClaim", namespace, name):
                yield Violation(
                    template.resource,
                    template.at("volumes", i, "persistentVolumeClaim", "claimName"),
                    f"PersistentVolumeClaim {name!r} does not exist {_where(namespace)}: the pods stay "
                    "Pending",
                )


# ------------------------------------------------------------------------------------ scale targets


def check_scale_target_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for scaler in ctx.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
        ref = scaler.get("spec", "scaleTargetRef")
        if not isinstance(ref, dict):
            yield Violation(scaler, ("spec",), f"{scaler.kind} has no scaleTargetRef: it scales nothing")
            continue
        default_kind = "Deployment" if scaler.kind == "ScaledObject" else ""
        kind, name = str(ref.get("kind") or default_kind), str(ref.get("name") or "")
        if not kind or not _known(ctx, kind, scaler.namespace, name):
            yield Violation(
                scaler,
                ("spec", "scaleTargetRef", "name") if "name" in ref else ("spec", "scaleTargetRef"),
                f"scaleTargetRef {kind or '(no kind)'}/{name} does not exist {_where(scaler.namespace)}: "
                f"the {scaler.kind} scales nothing and its metrics drive no replica",
            )


# ---------------------------------------------------------------------------------------- selectors


def check_selector_selects_pods(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for resource in ctx.of_kind("Service", "PodDisruptionBudget", "NetworkPolicy"):
        if selected_classes(ctx, resource) == []:
            field_name = "spec.podSelector" if resource.kind == "NetworkPolicy" else "spec.selector"
            effect = {
                "Service": "it has no endpoints and every connection to it is refused",
                "PodDisruptionBudget": "it protects nothing during node drains",
                "NetworkPolicy": "its rules apply to no pod",
            }[resource.kind]
            yield Violation(
                resource,
                field_name,
                f"{resource.kind} selector matches no pod template {_where(resource.namespace)}: {effect}",
            )


# -------------------------------------------------------------------------------------------- ports


def check_service_target_port_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for service in ctx.of_kind("Service"):
        classes = selected_classes(ctx, service)
        if not classes:
            continue  # no selector (hand-made endpoints), or none selected: references/selector-selects-pods
        for i, port in enumerate(sequence(service.get("spec", "ports"))):
            if not isinstance(port, dict):
                continue
            target = port.get("targetPort", port.get("port"))
            field_name = "targetPort" if "targetPort" in port else "port"
            for pod_class in classes:
                template = pod_class.first
                containers = [c for prefix, c in containers_of(template) if prefix[0] == "containers"]
                if not has_port(containers, target):
                    yield Violation(
                        service,
                        ("spec", "ports", i, field_name),
                        f"targetPort {target!r} is not a port of any container of "
                        f"{template.resource.kind}/{template.resource.name}: traffic to port "
                        f"{port.get('port')} is refused",
                    )


def _probe_ports(probe: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        action = probe.get(handler)
        if isinstance(action, dict) and "port" in action:
            yield (handler, "port"), action["port"]


def check_probe_port_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for prefix, container in containers_of(template):
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if not isinstance(probe, dict):
                    continue
                for path, port in _probe_ports(probe):
                    if not has_port([container], port):
                        yield Violation(
                            template.resource,
                            template.at(*prefix, probe_name, *path),
                            f"{probe_name} port {port!r} is not a port container {container.get('name')!r} "
                            "declares: the probe fails and the pod is never ready (or is restarted)",
                        )


def check_ingress_backend_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for ingress in ctx.of_kind("Ingress"):
        backends: list[tuple[FieldPath, Any]] = []
        default = ingress.get("spec", "defaultBackend", "service")
        if isinstance(default, dict):
            backends.append((("spec", "defaultBackend", "service"), default))
        for i, rule in enumerate(sequence(ingress.get("spec", "rules"))):
            for j, path in enumerate(sequence(mapping(mapping(rule).get("http")).get("paths"))):
                service = mapping(mapping(path).get("backend")).get("service")
                if isinstance(service, dict):
                    backends.append((("spec", "rules", i, "http", "paths", j, "backend", "service"), service))
        for where, backend in backends:
            name = str(backend.get("name", ""))
            service = find(ctx, "Service", ingress.namespace, name)
            if service is None:
                yield Violation(
                    ingress,
                    (*where, "name"),
                    f"backend Service {name!r} does not exist {_where(ingress.namespace)}: the load balancer "
                    "answers 503 on this path",
                )
                continue
            port = mapping(backend.get("port"))
            ports = mappings(service.get("spec", "ports"))
            if "name" in port:
                found = any(p.get("name") == port["name"] for p in ports)
                wanted = f"named {port['name']!r}"
            else:
                found = any(str(p.get("port")) == str(port.get("number")) for p in ports)
                wanted = str(port.get("number"))
            if not found:
                yield Violation(
                    ingress,
                    (*where, "port"),
                    f"Service {name!r} has no port {wanted}: the load balancer has no target for this path",
                )


# ------------------------------------------------------------------------------------ Karpenter, KEDA


def check_node_class_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for pool in ctx.of_kind("NodePool"):
        ref = pool.get("spec", "template", "spec", "nodeClassRef")
        if not isinstance(ref, dict):
            continue  # required by the schema: the schema check reports it
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if kind != "EC2NodeClass" or not _known(ctx, "EC2NodeClass", "", name):
            yield Violation(
                pool,
                ("spec", "template", "spec", "nodeClassRef", "name"),
                f"nodeClassRef {kind}/{name} does not exist in this overlay: Karpenter launches no node for "
                "this NodePool and its pods stay Pending",
            )


def check_trigger_authentication_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for scaled in ctx.of_kind("ScaledObject", "ScaledJob"):
        for i, trigger in enumerate(sequence(scaled.get("spec", "triggers"))):
            ref = mapping(trigger).get("authenticationRef")
            if not isinstance(ref, dict):
                continue
            kind, name = str(ref.get("kind") or "TriggerAuthentication"), str(ref.get("name", ""))
            namespace = "" if kind == "ClusterTriggerAuthentication" else scaled.namespace
            if not _known(ctx, kind, namespace, name):
                yield Violation(
                    scaled,
                    ("spec", "triggers", i, "authenticationRef", "name"),
                    f"{kind} {name!r} does not exist {_where(namespace)}: KEDA cannot read this trigger "
                    "and the ScaledObject never becomes ready",
                )


_WORKLOADS = WORKLOAD_KINDS


# ------------------------------------------------------------------------------------- in-cluster URLs

def check_in_cluster_url_resolves(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for address in addresses(ctx):
        service = find(ctx, "Service", address.namespace, address.service)
        if service is None:
            yield Violation(
                address.holder,
                address.path,
                f"{address.text!r} names Service {address.service!r} in namespace {address.namespace!r}, "
                "which this overlay does not render and gate.yaml does not declare under `external`: "
                "nothing answers there",
            )
            continue
        if address.port is None:
            continue  # a host name alone (a DNS lookup, a headless Service): the Service is enough
        ports = [p for p in sequence(service.get("spec", "ports")) if isinstance(p, dict)]
        port = next((p for p in ports if str(p.get("port")) == str(address.port)), None)
        offered = ", ".join(str(p.get("port")) for p in ports) or "none"
        if port is None:
            yield Violation(
                address.holder,
                address.path,
                f"Service {address.namespace}/{address.service} has no port {address.port} "
                f"(ports: {offered}): connections are refused",
            )
            continue
        if address.protocol and speaks(port, address.protocol) is False:
            right = [str(p.get("port")) for p in ports if speaks(p, address.protocol)]
            hint = f"; the port that speaks it is {', '.join(right)}" if right else ""
            yield Violation(
                address.holder,
                address.path,
                f"port {address.port} of Service {address.namespace}/{address.service} speaks "
                f"{port_protocol(port)}, but this field needs {address.protocol}{hint}",
            )


# ------------------------------------------------------------------------------------ network paths


def check_network_path_allowed(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    seen: set[tuple[str, str, int, str, str]] = set()
    # the names of each ranking of policies, joined once: copies' cuts share one ranking of every copy's
    # policies (kept beside the names, so that an id is never reused)
    names_of: dict[int, tuple[tuple[Resource, ...], str]] = {}
    for connection in required_connections(ctx):
        for cut in cuts(ctx, connection):
            key = (describe(connection.source), describe(connection.destination), connection.port,
                   connection.protocol, cut.side)
            if key in seen:
                continue
            seen.add(key)
            policy = cut.policies[0]
            rules_key = cut.side  # spec.ingress / spec.egress
            path = ("spec", rules_key) if policy.get("spec", rules_key) else ("spec", "podSelector")
            if id(cut.policies) not in names_of:
                names_of[id(cut.policies)] = (cut.policies, ", ".join(p.name for p in cut.policies))
            names = names_of[id(cut.policies)][1]
            refuses = (
                f"{describe(connection.destination)} accepts no such connection"
                if cut.side == "ingress"
                else f"{describe(connection.source)} may open no such connection"
            )
            yield Violation(
                policy,
                path,
                f"the path {describe(connection.source)} -> {describe(connection.destination)} port "
                f"{connection.port}/{connection.protocol}, needed by {connection.why}, is cut: under "
                f"NetworkPolicies {names} (isolating {cut.side}) {refuses}",
            )


def check_scrape_target_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for job in scrape_jobs(ctx):
        if not job.connections:
            yield Violation(
                job.collector,
                job.path,
                f"scrape job {job.name!r} keeps no pod port of this overlay: its metrics (and every KEDA "
                "trigger fed by them) read nothing",
            )


RULES = [
    Rule(
        id="references/service-account-exists",
        family="references",
        title="A pod's ServiceAccount exists",
        severity=Severity.ERROR,
        why=(
            "A pod template naming a ServiceAccount that is not in the namespace is accepted by the API, "
            "but the ReplicaSet controller cannot create a single pod from it."
        ),
        remediation=(
            "Add the ServiceAccount to the overlay, fix the name, or declare it under `external` in "
            "gate.yaml when another Application creates it."
        ),
        scope=_WORKLOADS,
        check=check_service_account_exists,
        example="spec:\n  template:\n    spec:\n      serviceAccountName: vllm  # no ServiceAccount vllm",
        use_instead="kind: ServiceAccount\nmetadata:\n  name: vllm",
    ),
    Rule(
        id="references/config-exists",
        family="references",
        title="Every ConfigMap and Secret a pod requires exists",
        severity=Severity.ERROR,
        why=(
            "A required ConfigMap or Secret (env valueFrom, envFrom, a volume) that does not exist keeps "
            "the container in CreateContainerConfigError or ContainerCreating."
        ),
        remediation=(
            "Render the ConfigMap/Secret in the overlay, fix the name, mark the reference `optional: true` "
            "if the pod works without it, or declare it under `external` in gate.yaml."
        ),
        scope=_WORKLOADS,
        check=check_config_exists,
        example="envFrom:\n- configMapRef: {name: gateway-settings}  # not rendered",
        use_instead="envFrom:\n- configMapRef: {name: gateway}  # the ConfigMap the overlay renders",
    ),
    Rule(
        id="references/claim-exists",
        family="references",
        title="Every PersistentVolumeClaim a pod mounts exists",
        severity=Severity.ERROR,
        why="A pod whose volume names a missing PersistentVolumeClaim is never scheduled.",
        remediation=(
            "Add the claim to the overlay, fix claimName, or declare it under `external` in gate.yaml."
        ),
        scope=_WORKLOADS,
        check=check_claim_exists,
        example="volumes:\n- name: cache\n  persistentVolumeClaim: {claimName: cache}  # not rendered",
        use_instead="kind: PersistentVolumeClaim\nmetadata:\n  name: cache",
    ),
    Rule(
        id="references/scale-target-exists",
        family="references",
        title="HPAs and ScaledObjects scale a workload that exists",
        severity=Severity.ERROR,
        why=(
            "An autoscaler whose scaleTargetRef names no rendered workload scales nothing: the queue it "
            "watches grows and no replica is added."
        ),
        remediation="Point scaleTargetRef at the workload's kind and name as rendered (after name prefixes).",
        scope=("HorizontalPodAutoscaler", "ScaledObject"),
        check=check_scale_target_exists,
        example="spec:\n  scaleTargetRef: {name: vllm-server}  # the Deployment is vllm",
        use_instead="spec:\n  scaleTargetRef: {name: vllm}",
    ),
    Rule(
        id="references/selector-selects-pods",
        family="references",
        title="Service, PDB and NetworkPolicy selectors match at least one pod template",
        severity=Severity.ERROR,
        why=(
            "A selector that matches no pod is valid and silent: the Service has no endpoints, the "
            "PodDisruptionBudget protects nothing, the NetworkPolicy applies to nothing."
        ),
        remediation="Make the selector match the labels of the pod template it is meant for.",
        scope=("Service", "PodDisruptionBudget", "NetworkPolicy"),
        check=check_selector_selects_pods,
        example="kind: Service\nspec:\n  selector: {app.kubernetes.io/name: vllm-server}",
        use_instead="kind: Service\nspec:\n  selector: {app.kubernetes.io/name: vllm}",
    ),
    Rule(
        id="references/service-target-port-exists",
        family="references",
        title="Every Service targetPort is a port of each selected container",
        severity=Severity.ERROR,
        why=(
            "A targetPort name the selected pods do not declare, or a number they do not listen on, "
            "leaves the Service without a working endpoint while the pods look healthy."
        ),
        remediation="Use the containerPort name (or number) the selected pods declare.",
        scope=("Service",),
        check=check_service_target_port_exists,
        example="ports:\n- port: 8000\n  targetPort: api  # the container's port is named http",
        use_instead="ports:\n- port: 8000\n  targetPort: http",
    ),
    Rule(
        id="references/probe-port-exists",
        family="references",
        title="Probe ports are ports the container declares",
        severity=Severity.ERROR,
        why=(
            "A probe on a port name the container does not declare fails outright; on an undeclared "
            "number it probes whatever listens there, usually nothing, and the pod never becomes ready."
        ),
        remediation="Probe the container's declared port, by its name or number.",
        scope=_WORKLOADS,
        check=check_probe_port_exists,
        example="readinessProbe:\n  httpGet: {path: /health, port: metrics}  # no port named metrics",
        use_instead="readinessProbe:\n  httpGet: {path: /health, port: http}",
    ),
    Rule(
        id="references/ingress-backend-exists",
        family="references",
        title="Ingress backends name a Service and one of its ports",
        severity=Severity.ERROR,
        why=(
            "An Ingress path whose Service or port does not exist gives the load balancer no target: "
            "users get 503 while every pod is healthy."
        ),
        remediation="Name the rendered Service and one of its ports (by name or number).",
        scope=("Ingress",),
        check=check_ingress_backend_exists,
        example="backend:\n  service: {name: gateway, port: {name: web}}  # the Service's port is http",
        use_instead="backend:\n  service: {name: gateway, port: {name: http}}",
    ),
    Rule(
        id="references/node-class-exists",
        family="references",
        title="A NodePool's nodeClassRef names an EC2NodeClass that exists",
        severity=Severity.ERROR,
        why="Karpenter launches nothing for a NodePool whose EC2NodeClass is missing: its pods stay Pending.",
        remediation="Point nodeClassRef at an EC2NodeClass the overlay renders (kind EC2NodeClass).",
        scope=("NodePool", "EC2NodeClass"),
        check=check_node_class_exists,
        example="nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}",
        use_instead="nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu-inference}",
    ),
    Rule(
        id="references/trigger-authentication-exists",
        family="references",
        title="KEDA triggers' authenticationRef names a TriggerAuthentication that exists",
        severity=Severity.ERROR,
        why="KEDA builds no scaler whose TriggerAuthentication is missing: the ScaledObject never scales.",
        remediation=(
            "Render the TriggerAuthentication (or ClusterTriggerAuthentication with `kind:`) in the overlay, "
            "or declare it under `external` in gate.yaml."
        ),
        scope=("ScaledObject", "ScaledJob", "TriggerAuthentication", "ClusterTriggerAuthentication"),
        check=check_trigger_authentication_exists,
        example="triggers:\n- type: prometheus\n  authenticationRef: {name: prom-auth}  # not rendered",
        use_instead="kind: TriggerAuthentication\nmetadata:\n  name: prom-auth",
    ),
    Rule(
        id="references/in-cluster-url-resolves",
        family="references",
        title="In-cluster addresses name a Service, one of its ports, and the port that speaks the protocol",
        severity=Severity.ERROR,
        why=(
            "An address such as `vllm.inference.svc:8000` in an env value, a ConfigMap, a collector "
            "exporter or a KEDA trigger is a reference written as text: no schema checks it. A wrong "
            "name or port fails only at run time (the gateway cannot reach vLLM, KEDA reads no metric), "
            "and the right Service on the wrong port (the OTLP receiver instead of the KEDA scaler) "
            "fails the same way."
        ),
        remediation=(
            "Name a Service the overlay renders (or declare it under `external` in gate.yaml, with its "
            "ports and the protocol each speaks) and one of its ports; where the field speaks a known "
            "protocol, the port that speaks it."
        ),
        scope=("ConfigMap", "ScaledObject", "ScaledJob", "OpenTelemetryCollector", *WORKLOAD_KINDS),
        check=check_in_cluster_url_resolves,
        example="scalerAddress: keda-otel-scaler.keda.svc:4317  # the OTLP receiver, not the KEDA scaler",
        use_instead="scalerAddress: keda-otel-scaler.keda.svc:4318",
    ),
    Rule(
        id="references/network-path-allowed",
        family="references",
        title="The NetworkPolicies let through every connection the system needs",
        severity=Severity.ERROR,
        why=(
            "A NetworkPolicy that isolates a pod refuses everything it does not list. The connections the "
            "system depends on (the load balancer to the gateway, the gateway to vLLM, the metrics collector "
            "to every pod it scrapes, DNS from a pod whose egress is isolated) are found in the overlay and "
            "checked against the policies; a policy that cuts one breaks serving or scaling on the first "
            "sync while every object is valid."
        ),
        remediation=(
            "Add an ingress (or egress) rule admitting the named source on the named port to a policy that "
            "selects the pods, or narrow the policy's podSelector so it does not isolate them."
        ),
        scope=("NetworkPolicy",),
        check=check_network_path_allowed,
        example=(
            "kind: NetworkPolicy\nspec:\n  podSelector: {matchLabels: {app.kubernetes.io/name: vllm}}\n"
            "  ingress:\n  - from: [{podSelector: {matchLabels: {app.kubernetes.io/name: web}}}]"
        ),
        use_instead=(
            "  ingress:\n  - from: [{podSelector: {matchLabels: {app.kubernetes.io/name: gateway}}}]\n"
            "    ports: [{port: 8000}]"
        ),
    ),
    Rule(
        id="references/scrape-target-exists",
        family="references",
        title="Every Kubernetes scrape job of the collector keeps at least one pod port",
        severity=Severity.ERROR,
        why=(
            "A scrape job whose namespaces and keep rules match no pod scrapes nothing and reports no error: "
            "the queue metrics KEDA scales on are simply absent."
        ),
        remediation="Make the job's namespaces and keep relabelings match the pods' labels and port name.",
        scope=("OpenTelemetryCollector",),
        check=check_scrape_target_exists,
        example=(
            "relabel_configs:\n- source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]\n"
            "  regex: vllm-server\n  action: keep"
        ),
        use_instead="  regex: vllm",
    ),
]
