"""The repository's own reference edges, broken one at a time: renaming the object at either end of an
edge yields exactly the references rule for that edge, on exactly the resource that holds the reference.

The edges are found in the rendered overlays (not listed by hand), so a new edge in the manifests is
covered as soon as it exists; Hypothesis picks which edge and which end.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_fixtures import run_rule

from tools.validate.catalogue import load_catalogue
from tools.validate.config import load_config
from tools.validate.model import Context, Resource
from tools.validate.render import render
from tools.validate.rules import default_registry, references

REPO = Path(__file__).resolve().parents[3]
OVERLAYS = ("overlays/dev", "overlays/prod")
EXTERNAL = load_config(REPO / "gate.yaml", default_registry()).external


@dataclass(frozen=True)
class Edge:
    overlay: str
    rule_id: str
    holder: str  # Kind/name of the resource holding the reference
    target_kind: str
    target_name: str
    text: str = ""  # for an address written as text: the host name that names the target


@functools.cache
def rendered(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(REPO / overlay, REPO).resources)


def _edges(overlay: str) -> list[Edge]:
    """Name references found in the rendered overlay: pod -> ServiceAccount/ConfigMap/Secret, autoscaler ->
    workload, Ingress -> Service, NodePool -> EC2NodeClass."""
    found: list[Edge] = []
    for resource in rendered(overlay):
        holder = f"{resource.kind}/{resource.name}"
        spec = resource.get("spec", "template", "spec")
        if resource.kind in ("Deployment", "StatefulSet", "DaemonSet") and isinstance(spec, dict):
            if spec.get("serviceAccountName"):
                found.append(Edge(overlay, "references/service-account-exists", holder, "ServiceAccount",
                                  spec["serviceAccountName"]))
            for container in spec.get("containers") or []:
                for env_from in container.get("envFrom") or []:
                    for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                        ref = env_from.get(key)
                        if ref and not ref.get("optional"):
                            found.append(Edge(overlay, "references/config-exists", holder, kind, ref["name"]))
        if resource.kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            ref = resource.get("spec", "scaleTargetRef")
            found.append(Edge(overlay, "references/scale-target-exists", holder,
                              ref.get("kind", "Deployment"), ref["name"]))
        if resource.kind == "Ingress":
            for rule in resource.get("spec", "rules") or []:
                for path in rule["http"]["paths"]:
                    found.append(Edge(overlay, "references/ingress-backend-exists", holder, "Service",
                                      path["backend"]["service"]["name"]))
        if resource.kind == "NodePool":
            found.append(Edge(overlay, "references/node-class-exists", holder, "EC2NodeClass",
                              resource.get("spec", "template", "spec", "nodeClassRef", "name")))
    for address in references.addresses(context(overlay, rendered(overlay))):
        if references.find(context(overlay, rendered(overlay)), "Service", address.namespace,
                           address.service) in rendered(overlay):
            found.append(Edge(overlay, "references/in-cluster-url-resolves",
                              f"{address.holder.kind}/{address.holder.name}", "Service", address.service,
                              f"{address.service}.{address.namespace}.svc"))
    return found


def context(overlay: str, resources: Sequence[Resource]) -> Context:
    return Context(overlay, overlay.split("/")[1], list(resources), load_catalogue(),
                   external=[external.as_resource(overlay) for external in EXTERNAL])


def _renamed(resources: tuple[Resource, ...], edge: Edge, end: str) -> list[Resource]:
    out = []
    for i, resource in enumerate(resources):
        doc = copy.deepcopy(resource.doc)
        is_holder = f"{resource.kind}/{resource.name}" == edge.holder
        is_target = resource.kind == edge.target_kind and resource.name == edge.target_name
        if end == "target" and is_target:
            doc["metadata"]["name"] = f"{edge.target_name}-renamed"
        if end == "holder" and is_holder:
            _point_elsewhere(doc, edge)
        out.append(Resource(doc, resource.overlay, resource.origin, index=i))
    return out


def _point_elsewhere(doc: dict[str, Any], edge: Edge) -> None:
    """Change the reference inside the holder to a name nothing has."""
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if edge.text and isinstance(value, str) and edge.text in value:
                    node[key] = value.replace(edge.text, edge.text.replace(".", "-missing.", 1))
                elif not edge.text and key in ("name", "serviceAccountName") and value == edge.target_name:
                    node[key] = f"{value}-missing"
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc.get("spec") if "spec" in doc else doc.get("data"))


def _all_edges() -> list[Edge]:
    return [edge for overlay in OVERLAYS for edge in _edges(overlay)]


def test_the_repository_has_an_edge_of_every_reference_rule_it_exercises() -> None:
    rules = {edge.rule_id for edge in _all_edges()}
    assert rules == {
        "references/service-account-exists",
        "references/config-exists",
        "references/scale-target-exists",
        "references/ingress-backend-exists",
        "references/node-class-exists",
        "references/in-cluster-url-resolves",
    }


@settings(max_examples=40, deadline=None)
@given(edge=st.sampled_from(_all_edges()), end=st.sampled_from(["target", "holder"]))
def test_breaking_one_edge_yields_exactly_its_rule(edge: Edge, end: str) -> None:
    ctx = context(edge.overlay, _renamed(rendered(edge.overlay), edge, end))
    fired = {
        (rule.id, holder)
        for rule in references.RULES
        for holder, _path in run_rule(rule, ctx, dict(rule.options))
    }
    assert (edge.rule_id, edge.holder) in fired
    assert {rule_id for rule_id, _ in fired} == {edge.rule_id}
