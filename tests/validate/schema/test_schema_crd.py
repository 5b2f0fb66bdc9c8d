"""--crd: CRDs exported from a cluster replace the project's schemas; their CEL rules are evaluated."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from schema_helpers import edited, example, found, renamed, resource, upstream_crds

from tools.validate.model import Context, format_path
from tools.validate.rules import default_registry
from tools.validate.schema import SchemaError, SchemaValidator

EXAMPLE_NAMES = [
    "nodepool",
    "ec2nodeclass",
    "scaledobject",
    "triggerauthentication",
    "application",
    "appproject",
    "opentelemetrycollector",
    "servicemonitor",
    "podmonitor",
    "prometheusrule",
]



@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_valid_example_passes_the_upstream_crd(upstream: SchemaValidator, name: str) -> None:
    doc = example(name)
    assert upstream.source_of(doc["apiVersion"], doc["kind"]).startswith("CRD ")
    assert upstream.validate(resource(doc)) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.disruption.consolidationPolicy", "WhenUnderutilized"),
        ("spec.disruption.budgets[0].nodes", "ten"),
    ],
)
def test_nodepool_mistake_fails_both_schemas(
    validator: SchemaValidator, upstream: SchemaValidator, path: str, value: str
) -> None:
    doc = edited(example("nodepool"), path, value)

    assert found(validator.validate(resource(doc))) == [("schema/invalid-value", path)]
    assert found(upstream.validate(resource(doc))) == [("schema/invalid-value", path)]


def test_unknown_field_under_a_crd_suggests_the_crd_field(upstream: SchemaValidator) -> None:
    doc = renamed(example("nodepool"), "spec.template.spec.nodeClassRef", "nodeClassReference")

    violations = upstream.validate(resource(doc))

    assert ("schema/unknown-field", "spec.template.spec.nodeClassReference") in found(violations)
    unknown = [v for v in violations if v.rule_id == "schema/unknown-field"]
    assert unknown[0].message == "unknown field `nodeClassReference` (did you mean `nodeClassRef`?)"


def test_cel_rule_restricting_requirement_keys_fires(upstream: SchemaValidator) -> None:
    doc = edited(example("nodepool"), "spec.template.spec.requirements[0].key", "karpenter.sh/spot")

    violations = upstream.validate(resource(doc))

    assert found(violations) == [("schema/cel-rule", "spec.template.spec.requirements[0].key")]
    assert violations[0].message == 'label domain "karpenter.sh" is restricted'


def test_cel_rule_alias_exclusivity_fires(upstream: SchemaValidator) -> None:
    terms = [{"alias": "bottlerocket@latest"}, {"id": "ami-0123456789abcdef0"}]
    doc = edited(example("ec2nodeclass"), "spec.amiSelectorTerms", terms)

    violations = upstream.validate(resource(doc))

    assert found(violations) == [("schema/cel-rule", "spec.amiSelectorTerms")]
    assert "'alias' is mutually exclusive" in violations[0].message


def test_transition_rules_are_skipped_and_counted(upstream: SchemaValidator) -> None:
    upstream.validate(resource(example("nodepool")))
    assert any(
        note.startswith("CEL rule skipped (") and "transition rule (uses oldSelf" in note
        for note in upstream.notes()
    )


def test_later_directory_replaces_earlier_one(tmp_path: Path) -> None:
    crds = upstream_crds()
    release = crds / "release" / "karpenter.sh_nodepools.yaml"
    if not release.is_file():
        pytest.skip("upstream release CRDs not available beside the checkout")
    first, second = tmp_path / "main", tmp_path / "release"
    first.mkdir()
    second.mkdir()
    for name in ("karpenter.sh_nodepools.yaml", "keda.sh_triggerauthentications.yaml"):
        shutil.copy(crds / name, first / name)
    shutil.copy(release, second / release.name)

    validator = SchemaValidator(crd_dirs=[first, second])

    assert validator.source_of("karpenter.sh/v1", "NodePool").endswith(
        f"from {second / release.name}:1"
    )
    assert validator.source_of("keda.sh/v1alpha1", "TriggerAuthentication").endswith(
        f"from {first / 'keda.sh_triggerauthentications.yaml'}:1"
    )


# A CRD of our own, to pin down the conversion of structural schemas.
WIDGET_CRDS = """\
apiVersion: v1
kind: List
items:
  - apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.example.com
    spec:
      group: example.com
      names: {kind: Widget, plural: widgets}
      scope: Namespaced
      versions:
        - name: v1
          served: true
          storage: true
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  required: [size]
                  x-kubernetes-validations:
                    - rule: "self.min <= self.max"
                      message: min must not exceed max
                    - rule: "self.endpoint.isURL()"
                      message: endpoint must be a URL
                  properties:
                    size: {x-kubernetes-int-or-string: true}
                    min: {type: integer, default: 0}
                    max: {type: integer, default: 10}
                    endpoint: {type: string, default: "http://example.com"}
                    note: {type: string, nullable: true}
                    mode: {type: string, enum: [fast, slow]}
                    settings:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
                    template:
                      type: object
                      x-kubernetes-embedded-resource: true
                      properties:
                        spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
        - name: v0
          served: false
          storage: false
          schema:
            openAPIV3Schema: {type: object}
  - apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: gadgets.example.com
    spec:
      group: example.com
      names: {kind: Gadget, plural: gadgets}
      scope: Cluster
      versions:
        - name: v1beta1
          served: true
          storage: true
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    labels: {type: object, additionalProperties: {type: string}}
"""


@pytest.fixture
def widgets(tmp_path: Path) -> SchemaValidator:
    (tmp_path / "crds.yaml").write_text(WIDGET_CRDS, encoding="utf-8")
    return SchemaValidator(crd_dirs=[tmp_path])


def widget(**spec: object) -> dict[str, object]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_crd_list_loads_every_served_version(widgets: SchemaValidator) -> None:
    assert widgets.source_of("example.com/v1", "Widget").startswith("CRD widgets.example.com from ")
    assert widgets.source_of("example.com/v1beta1", "Gadget").startswith("CRD gadgets.example.com from ")
    assert widgets.source_of("example.com/v0", "Widget") is None


def test_structural_schema_semantics(widgets: SchemaValidator) -> None:
    valid = widget(
        size="10%",
        note=None,
        settings={"anything": {"goes": [1, 2]}},
        template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}},
    )
    assert widgets.validate(resource(valid)) == []
    assert widgets.validate(resource(widget(size=3))) == []

    assert found(widgets.validate(resource(widget(size=[3])))) == [("schema/invalid-value", "spec.size")]
    assert found(widgets.validate(resource(widget(size=1, mode="quick")))) == [
        ("schema/invalid-value", "spec.mode")
    ]
    assert found(widgets.validate(resource(widget(size=1, colour="red")))) == [
        ("schema/unknown-field", "spec.colour")
    ]
    embedded = widget(size=1, template={"apiVersion": "v1", "kind": "Pod", "metadata": {"nmae": "p"}})
    assert found(widgets.validate(resource(embedded))) == [
        ("schema/unknown-field", "spec.template.metadata.nmae")
    ]
    extra = {**widget(size=1), "extra": 1}
    assert found(widgets.validate(resource(extra))) == [("schema/unknown-field", "extra")]


def test_cel_rule_sees_defaults_and_unknown_functions_are_skipped(widgets: SchemaValidator) -> None:
    violations = widgets.validate(resource(widget(size=1, min=20)))

    assert [(v.rule_id, format_path(v.segments), v.message) for v in violations] == [
        ("schema/cel-rule", "spec", "min must not exceed max")
    ]
    assert widgets.validate(resource(widget(size=1, min=5))) == []
    assert "CEL rule skipped (2x): function isURL() not available in cel-python: self.endpoint.isURL()" in (
        widgets.notes()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", ":2: invalid YAML: "),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "kind 'ConfigMap' is not a CustomResourceDefinition",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1beta1\nkind: CustomResourceDefinition\n",
            "apiVersion 'apiextensions.k8s.io/v1beta1' is not supported; "
            "export CRDs as apiextensions.k8s.io/v1",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            "metadata: {name: a.b}\nspec: {}\n",
            "CRD a.b has no spec.group or spec.names.kind",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\n"
            "spec: {group: b, names: {kind: A}, versions: [{name: v1, served: true}]}\n",
            "CRD a.b version v1 has no openAPIV3Schema",
        ),
        ("- just\n- a list\n", "expected a CustomResourceDefinition or a List of them"),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\n"
            "spec: {group: b, names: {kind: A}, versions: [v1]}\n",
            "CRD a.b has a version without a name",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\n"
            "spec: {group: b, names: {kind: A}, versions: [{name: v1, served: true, schema: {openAPIV3Schema:"
            " {type: object, properties: {code: {type: string, pattern: '(['}}}}}]}\n",
            "the schema of A b/v1 is invalid: ",
        ),
    ],
)
def test_invalid_crd_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent(content), encoding="utf-8")

    with pytest.raises(SchemaError) as raised:
        SchemaValidator(crd_dirs=[tmp_path])

    assert str(raised.value).startswith(f"{path}")
    assert message in str(raised.value)


def test_missing_or_empty_crd_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no such file or directory"):
        SchemaValidator(crd_dirs=[tmp_path / "nope"])
    with pytest.raises(SchemaError, match=r"no \.yaml, \.yml or \.json files in this directory"):
        SchemaValidator(crd_dirs=[tmp_path])


def test_a_single_crd_file_may_be_given(tmp_path: Path) -> None:
    path = tmp_path / "crds.yaml"
    path.write_text(WIDGET_CRDS, encoding="utf-8")

    validator = SchemaValidator(crd_dirs=[path])

    assert validator.validate(resource(widget(size=1))) == []


def test_without_cel_python_rules_are_not_evaluated_and_the_notes_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "celpy", None)  # makes `import celpy` fail
    (tmp_path / "crds.yaml").write_text(WIDGET_CRDS, encoding="utf-8")

    validator = SchemaValidator(crd_dirs=[tmp_path])

    assert validator.validate(resource(widget(size=1, min=20))) == []
    assert validator.notes() == [
        "CEL rules (x-kubernetes-validations) not evaluated: cel-python is not installed"
    ]


def test_schema_rules_put_the_validator_notes_in_the_context(widgets: SchemaValidator) -> None:
    ctx = Context(overlay="prod", env="prod", resources=[resource(widget(size=1))], schemas=widgets)
    rule = default_registry().get("schema/cel-rule")

    assert list(rule.check(ctx, rule.options)) == []
    assert ctx.extras["notes"] == [
        "CEL rule skipped (1x): function isURL() not available in cel-python: self.endpoint.isURL()"
    ]
