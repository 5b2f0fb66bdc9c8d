"""The per-overlay indexes rules share: Context.of_kind, the GPU NodePools of `gpu.nodepools_for` and the
pod templates by label of `workloads.templates_with_labels`."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tools.validate.catalogue import load_catalogue
from tools.validate.gpu import nodepools_for
from tools.validate.model import Context, Resource
from tools.validate.workloads import pod_template, pod_templates, templates_with_labels


def _resource(kind: str, name: str, spec: dict[str, Any] | None = None) -> Resource:
    return Resource(doc={"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "spec": spec or {}},
                    overlay="overlays/test")


def _nodepool(name: str, category: list[str]) -> Resource:
    requirements = [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": category}]
    return _resource("NodePool", name, {"template": {"spec": {"requirements": requirements}}})


def test_of_kind_keeps_the_rendered_order_across_kinds() -> None:
    resources = [_resource("Service", "s1"), _resource("Deployment", "d1"), _resource("ConfigMap", "c1"),
                 _resource("Deployment", "d2"), _resource("Service", "s2")]
    ctx = Context(overlay="overlays/test", env=None, resources=resources)

    assert [r.name for r in ctx.of_kind("Deployment")] == ["d1", "d2"]
    assert [r.name for r in ctx.of_kind("Service", "Deployment")] == ["s1", "d1", "d2", "s2"]
    assert [r.name for r in ctx.of_kind("Deployment", "Deployment")] == ["d1", "d2"]
    assert list(ctx.of_kind("StatefulSet")) == []
    # asking again (the index is built once) gives the same answer
    assert [r.name for r in ctx.of_kind("Service")] == ["s1", "s2"]


def test_nodepools_for_reuses_the_gpu_pools_and_still_matches_each_pod() -> None:
    containers = [{"name": "c", "image": "i"}]
    wants_g = _resource("Deployment", "wants-g", {"template": {"spec": {
        "nodeSelector": {"karpenter.k8s.aws/instance-category": "g"}, "containers": containers}}})
    any_gpu = _resource("Deployment", "any", {"template": {"spec": {"containers": containers}}})
    pools = [_nodepool("gpu-g", ["g"]), _nodepool("gpu-p", ["p"]), _nodepool("cpu", ["m"])]
    resources = [pools[0], wants_g, pools[1], pools[2], any_gpu]
    ctx = Context(overlay="overlays/test", env=None, resources=resources, catalogue=load_catalogue())

    g_template, any_template = pod_template(wants_g), pod_template(any_gpu)
    assert g_template is not None and any_template is not None
    assert [p.name for p in nodepools_for(ctx, g_template)] == ["gpu-g"]
    assert [p.name for p in nodepools_for(ctx, any_template)] == ["gpu-g", "gpu-p"]
    assert [p.name for p in nodepools_for(ctx, g_template)] == ["gpu-g"]


_LABELS = st.dictionaries(st.sampled_from(["app", "tier", "copy"]), st.sampled_from(["a", "b", "1"]),
                          max_size=3)


def _deployment(name: str, namespace: str, labels: dict[str, str]) -> Resource:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
           "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c"}]}}}}
    return Resource(doc=doc, overlay="overlays/test")


@given(
    workloads=st.lists(st.tuples(st.sampled_from(["ns-a", "ns-b"]), _LABELS), max_size=12),
    questions=st.lists(st.tuples(st.sampled_from(["ns-a", "ns-b", "ns-c"]), _LABELS), min_size=1, max_size=6),
)
def test_templates_with_labels_answers_as_a_scan_of_every_template(
    workloads: list[tuple[str, dict[str, str]]], questions: list[tuple[str, dict[str, str]]]
) -> None:
    resources = [_deployment(f"d{i}", namespace, labels) for i, (namespace, labels) in enumerate(workloads)]
    ctx = Context(overlay="overlays/test", env=None, resources=resources)
    for namespace, selector in questions * 2:  # asked twice: the second answer comes from the cache
        scanned = [
            t.resource.name for t in pod_templates(ctx)
            if selector and t.resource.namespace == namespace
            and all(t.labels.get(key) == value for key, value in selector.items())
        ]
        assert [t.resource.name for t in templates_with_labels(ctx, namespace, selector)] == scanned
