"""The project's own CRD schemas (tools/validate/schemas): a valid document passes, mistakes fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from schema_helpers import edited, example, found, renamed, resource

from tools.validate.model import format_path
from tools.validate.schema import PROJECT_KINDS, SchemaValidator

EXAMPLES = {
    ("karpenter.sh/v1", "NodePool"): "nodepool",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "ec2nodeclass",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication",
    ("argoproj.io/v1alpha1", "Application"): "application",
    ("argoproj.io/v1alpha1", "AppProject"): "appproject",
    ("opentelemetry.io/v1beta1", "OpenTelemetryCollector"): "opentelemetrycollector",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule",
    ("iam.services.k8s.aws/v1alpha1", "Policy"): "iampolicy",
    ("iam.services.k8s.aws/v1alpha1", "Role"): "iamrole",
    ("eks.services.k8s.aws/v1alpha1", "PodIdentityAssociation"): "podidentityassociation",
    ("ecr.services.k8s.aws/v1alpha1", "PullThroughCacheRule"): "pullthroughcacherule",
    ("cloudfront.services.k8s.aws/v1alpha1", "Distribution"): "distribution",
}

HPA_BEHAVIOR = "spec.advanced.horizontalPodAutoscalerConfig.behavior"



def test_every_kept_schema_has_a_valid_example() -> None:
    assert set(PROJECT_KINDS) - {("keda.sh/v1alpha1", "ClusterTriggerAuthentication")} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES.values()))
def test_valid_example_passes_the_project_schema(validator: SchemaValidator, name: str) -> None:
    doc = example(name)
    assert validator.source_of(doc["apiVersion"], doc["kind"]) is not None
    assert validator.source_of(doc["apiVersion"], doc["kind"]).startswith("project schema")
    assert validator.validate(resource(doc)) == []


def _without(path: str, key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        node: Any = doc
        for token in path.split("."):
            node = node[int(token)] if token.isdigit() else node[token]
        del node[key]
        return doc

    return change


def _ec2_terms(*terms: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda doc: edited(doc, "spec.amiSelectorTerms", list(terms))


# (example, change, expected (rule id, path) list, expected message of the first one or None)
CASES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], list[tuple[str, str]], str | None]] = [
    # ServiceMonitor, PodMonitor, PrometheusRule
    (
        "servicemonitor",
        lambda d: renamed(d, "spec.endpoints[0].interval", "scrapeInterval"),
        [("schema/unknown-field", "spec.endpoints[0].scrapeInterval")],
        "unknown field `scrapeInterval` (did you mean `interval`?)",
    ),
    (
        "servicemonitor",
        lambda d: edited(d, "spec.endpoints[0].interval", "5 seconds"),
        [("schema/invalid-value", "spec.endpoints[0].interval")],
        'must be a Prometheus duration such as 30s, 5m or 1h30m (got string "5 seconds")',
    ),
    (
        "podmonitor",
        lambda d: renamed(d, "spec.podMetricsEndpoints", "endpoints"),
        [("schema/unknown-field", "spec.endpoints")],
        None,
    ),
    (
        "prometheusrule",
        lambda d: edited(d, "spec.groups[1].rules[0].record", "llm:backlog"),
        [("schema/invalid-value", "spec.groups[1].rules[0]")],
        "must set exactly one of `record` and `alert`",
    ),
    (
        "prometheusrule",
        lambda d: edited(d, "spec.groups[1].rules[0].for", "3 minutes"),
        [("schema/invalid-value", "spec.groups[1].rules[0].for")],
        None,
    ),
    # NodePool
    (
        "nodepool",
        lambda d: edited(d, "spec.disruption.consolidationPolicy", "WhenUnderutilized"),
        [("schema/invalid-value", "spec.disruption.consolidationPolicy")],
        "must be one of WhenEmpty, WhenEmptyOrUnderutilized, Balanced "
        "(got WhenUnderutilized — the v1beta1 name; v1 calls it WhenEmptyOrUnderutilized)",
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.disruption.budgets[0].nodes", "ten"),
        [("schema/invalid-value", "spec.disruption.budgets[0].nodes")],
        "must be a percentage such as 10% or a whole number of nodes such as 5, as a string "
        '(got string "ten")',
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.disruption.budgets[0].nodes", "110%"),
        [("schema/invalid-value", "spec.disruption.budgets[0].nodes")],
        None,
    ),
    (
        "nodepool",
        lambda d: renamed(d, "spec.template.spec.expireAfter", "expireAftr"),
        [("schema/unknown-field", "spec.template.spec.expireAftr")],
        "unknown field `expireAftr` (did you mean `expireAfter`?)",
    ),
    (
        # v1beta1 kept expireAfter under disruption; v1 moved it to the template.
        "nodepool",
        lambda d: edited(d, "spec.disruption.expireAfter", "720h"),
        [("schema/unknown-field", "spec.disruption.expireAfter")],
        "unknown field `expireAfter` (allowed: budgets, consolidateAfter, consolidationPolicy)",
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.expireAfter", "30d"),
        [("schema/invalid-value", "spec.template.spec.expireAfter")],
        'must be a duration in s, m or h (such as 720h) or Never (got string "30d")',
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.requirements[0].operator", "Equals"),
        [("schema/invalid-value", "spec.template.spec.requirements[0].operator")],
        "must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte, Lte (got Equals)",
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.requirements[0].key", "kubernetes.io/hostname"),
        [("schema/invalid-value", "spec.template.spec.requirements[0].key")],
        "kubernetes.io/hostname and karpenter.sh/nodepool are set by Karpenter, not requirement keys "
        '(got string "kubernetes.io/hostname")',
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.requirements[0].values", []),
        [("schema/invalid-value", "spec.template.spec.requirements[0].values")],
        None,
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.requirements[4].values", ["lots"]),
        [("schema/invalid-value", "spec.template.spec.requirements[4].values[0]")],
        None,
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.template.spec.taints[0].effect", "NoScheduel"),
        [("schema/invalid-value", "spec.template.spec.taints[0].effect")],
        "must be one of NoSchedule, PreferNoSchedule, NoExecute (got NoScheduel — did you mean NoSchedule?)",
    ),
    (
        "nodepool",
        lambda d: edited(d, "spec.weight", 0),
        [("schema/invalid-value", "spec.weight")],
        None,
    ),
    (
        "nodepool",
        lambda d: {**d, "spec": {**d["spec"], "limits": {"nvidia.com/gpu": "eight"}}},
        [("schema/invalid-value", "spec.limits.nvidia.com/gpu")],
        'must be a resource quantity such as 500m, 16Gi or 4 (got string "eight")',
    ),
    (
        "nodepool",
        _without("spec.disruption.budgets.1", "duration"),
        [("schema/invalid-value", "spec.disruption.budgets[1]")],
        None,
    ),
    (
        "nodepool",
        _without("spec.template.spec", "nodeClassRef"),
        [("schema/invalid-value", "spec.template.spec")],
        "missing required field `nodeClassRef`",
    ),
    # EC2NodeClass
    (
        "ec2nodeclass",
        _ec2_terms({"alias": "bottlerocket@latest"}, {"id": "ami-0123456789abcdef0"}),
        [("schema/invalid-value", "spec.amiSelectorTerms")],
        "an `alias` term (such as bottlerocket@latest) cannot be combined with other amiSelectorTerms",
    ),
    (
        "ec2nodeclass",
        _ec2_terms({"alias": "bottlerocket@latest", "owner": "amazon"}),
        [("schema/invalid-value", "spec.amiSelectorTerms[0]")],
        "an `alias` term cannot also set id, name, owner, tags or ssmParameter",
    ),
    (
        "ec2nodeclass",
        _ec2_terms({"alias": "ubuntu@latest"}),
        [("schema/invalid-value", "spec.amiSelectorTerms[0].alias")],
        None,
    ),
    (
        "ec2nodeclass",
        _ec2_terms({"id": "ami-0123456789abcdef0"}),
        [("schema/invalid-value", "spec")],
        "missing required field `amiFamily`: "
        "amiFamily is required unless an amiSelectorTerms `alias` is used",
    ),
    (
        "ec2nodeclass",
        lambda d: edited(d, "spec.instanceProfile", "KarpenterNodeInstanceProfile"),
        [("schema/invalid-value", "spec")],
        "set exactly one of `role` and `instanceProfile`",
    ),
    (
        "ec2nodeclass",
        _without("spec", "role"),
        [("schema/invalid-value", "spec")],
        "set exactly one of `role` and `instanceProfile`",
    ),
    (
        "ec2nodeclass",
        lambda d: edited(d, "spec.securityGroupSelectorTerms", [{"id": "sg-0123", "name": "nodes"}]),
        [("schema/invalid-value", "spec.securityGroupSelectorTerms[0]")],
        "a security group term with an `id` cannot also set `name` or `tags`",
    ),
    (
        "ec2nodeclass",
        lambda d: edited(d, "spec.metadataOptions.httpTokens", "requried"),
        [("schema/invalid-value", "spec.metadataOptions.httpTokens")],
        "must be one of required, optional (got requried — did you mean required?)",
    ),
    (
        "ec2nodeclass",
        lambda d: renamed(d, "spec.metadataOptions", "metadataOption"),
        [("schema/unknown-field", "spec.metadataOption")],
        "unknown field `metadataOption` (did you mean `metadataOptions`?)",
    ),
    (
        "ec2nodeclass",
        lambda d: edited(d, "spec.blockDeviceMappings[1].ebs.volumeSize", "150GB"),
        [("schema/invalid-value", "spec.blockDeviceMappings[1].ebs.volumeSize")],
        None,
    ),
    (
        "ec2nodeclass",
        lambda d: edited(d, "spec.kubelet.evictionHard", {"memory.availible": "5%"}),
        [("schema/invalid-value", "spec.kubelet.evictionHard")],
        "key `memory.availible`: must be one of memory.available, nodefs.available, nodefs.inodesFree, "
        "imagefs.available, imagefs.inodesFree, pid.available "
        "(got memory.availible — did you mean memory.available?)",
    ),
    # ScaledObject
    (
        "scaledobject",
        lambda d: edited(d, "spec.advanced.scalingModifiers.target", 25),
        [("schema/invalid-value", "spec.advanced.scalingModifiers.target")],
        'must be a number written as a string, such as "25" (got number 25)',
    ),
    (
        "scaledobject",
        lambda d: edited(d, "spec.triggers[1].metadata.threshold", 5),
        [("schema/invalid-value", "spec.triggers[1].metadata.threshold")],
        'trigger metadata values must be strings (quote numbers, such as "5") (got number 5)',
    ),
    (
        "scaledobject",
        lambda d: edited(d, "spec.triggers[1].metricType", "Average"),
        [("schema/invalid-value", "spec.triggers[1].metricType")],
        "must be one of AverageValue, Value, Utilization (got Average — did you mean AverageValue?)",
    ),
    (
        "scaledobject",
        lambda d: renamed(d, "spec.minReplicaCount", "minReplicas"),
        [("schema/unknown-field", "spec.minReplicas")],
        "unknown field `minReplicas` (did you mean `minReplicaCount`?)",
    ),
    (
        "scaledobject",
        _without("spec.advanced.scalingModifiers", "formula"),
        [("schema/invalid-value", "spec.advanced.scalingModifiers")],
        "missing required field `formula`",
    ),
    (
        "scaledobject",
        lambda d: edited(d, f"{HPA_BEHAVIOR}.scaleUp.policies[0].value", "9x"),
        [("schema/invalid-value", f"{HPA_BEHAVIOR}.scaleUp.policies[0].value")],
        None,
    ),
    # TriggerAuthentication
    (
        "triggerauthentication",
        lambda d: edited(d, "spec.podIdentity.provider", "aws-kiam"),
        [("schema/invalid-value", "spec.podIdentity.provider")],
        "must be one of none, azure-workload, aws, aws-eks, gcp "
        "(got aws-kiam — removed in KEDA 2.15; use aws (EKS Pod Identity or IRSA))",
    ),
    (
        "triggerauthentication",
        _without("spec.secretTargetRef.0", "key"),
        [("schema/invalid-value", "spec.secretTargetRef[0]")],
        "missing required field `key`",
    ),
    # Application
    (
        "application",
        lambda d: renamed(d, "spec.syncPolicy.automated.selfHeal", "selfheal"),
        [("schema/unknown-field", "spec.syncPolicy.automated.selfheal")],
        "unknown field `selfheal` (did you mean `selfHeal`?)",
    ),
    (
        "application",
        lambda d: edited(d, "spec.syncPolicy.syncOptions[0]", "CreateNamespaces=true"),
        [("schema/invalid-value", "spec.syncPolicy.syncOptions[0]")],
        None,
    ),
    (
        "application",
        lambda d: edited(d, "spec.sources", [d["spec"]["source"]]),
        [("schema/invalid-value", "spec")],
        "set `source` or `sources`, not both",
    ),
    (
        "application",
        _without("spec.destination", "server"),
        [("schema/invalid-value", "spec.destination")],
        "set the destination cluster, by `server` URL or by `name`",
    ),
    (
        "application",
        _without("spec", "project"),
        [("schema/invalid-value", "spec")],
        "missing required field `project`",
    ),
    # AppProject
    (
        "appproject",
        lambda d: edited(d, "spec.syncWindows[0].kind", "permit"),
        [("schema/invalid-value", "spec.syncWindows[0].kind")],
        "must be one of allow, deny (got permit)",
    ),
    (
        "appproject",
        lambda d: renamed(d, "spec.destinations[0].namespace", "namspace"),
        [("schema/unknown-field", "spec.destinations[0].namspace")],
        "unknown field `namspace` (did you mean `namespace`?)",
    ),
    # OpenTelemetryCollector
    (
        "opentelemetrycollector",
        lambda d: edited(d, "spec.mode", "Deployment"),
        [("schema/invalid-value", "spec.mode")],
        "must be one of daemonset, deployment, sidecar, statefulset "
        "(got Deployment — did you mean deployment?)",
    ),
    (
        "opentelemetrycollector",
        lambda d: renamed(d, "spec.config.service.pipelines.metrics.exporters", "exportrs"),
        [
            ("schema/invalid-value", "spec.config.service.pipelines.metrics"),
            ("schema/unknown-field", "spec.config.service.pipelines.metrics.exportrs"),
        ],
        None,
    ),
    (
        "opentelemetrycollector",
        lambda d: renamed(d, "spec.ports[0].port", "prot"),
        [
            ("schema/invalid-value", "spec.ports[0]"),
            ("schema/unknown-field", "spec.ports[0].prot"),
        ],
        "missing required field `port`",
    ),
    (
        "opentelemetrycollector",
        lambda d: edited(d, "spec.resources.requests.memory", "128MB"),
        [("schema/invalid-value", "spec.resources.requests.memory")],
        'must be a resource quantity such as 500m, 16Gi or 4 (got string "128MB")',
    ),
]


@pytest.mark.parametrize(("name", "change", "expected", "message"), CASES)
def test_mistake_fails_with_rule_and_path(
    validator: SchemaValidator,
    name: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    expected: list[tuple[str, str]],
    message: str | None,
) -> None:
    violations = validator.validate(resource(change(example(name))))

    assert found(violations) == expected
    if message is not None:
        first = min(violations, key=lambda v: (v.rule_id, format_path(v.segments)))
        assert first.message == message


def test_unknown_field_in_otel_port_suggests_the_service_port_field(validator: SchemaValidator) -> None:
    doc = renamed(example("opentelemetrycollector"), "spec.ports[0].port", "prot")
    unknown = [v for v in validator.validate(resource(doc)) if v.rule_id == "schema/unknown-field"]
    assert [v.message for v in unknown] == ["unknown field `prot` (did you mean `port`?)"]


def test_security_group_term_may_combine_name_and_tags(validator: SchemaValidator) -> None:
    terms = [{"name": "nodes", "tags": {"karpenter.sh/discovery": "llm"}}, {"id": "sg-0123"}]
    doc = edited(example("ec2nodeclass"), "spec.securityGroupSelectorTerms", terms)
    assert validator.validate(resource(doc)) == []


def test_collector_component_settings_are_free_form(validator: SchemaValidator) -> None:
    doc = edited(example("opentelemetrycollector"), "spec.config.receivers.otlp", {"protocols": {"grpc": {}}})
    assert validator.validate(resource(doc)) == []


def test_cluster_trigger_authentication_uses_the_same_shape(validator: SchemaValidator) -> None:
    doc = edited(example("triggerauthentication"), "kind", "ClusterTriggerAuthentication")
    del doc["metadata"]["namespace"]
    assert validator.validate(resource(doc)) == []
    typo = renamed(doc, "spec.podIdentity", "podIdentiy")
    assert found(validator.validate(resource(typo))) == [("schema/unknown-field", "spec.podIdentiy")]
