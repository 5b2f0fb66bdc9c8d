"""schema rules: every rendered resource must match the strict schema of its apiVersion/kind.

The work is done once per overlay by `tools.validate.schema.SchemaValidator` (core kinds from
kubernetes-validate, the project's CRD schemas, or CRDs passed with --crd); each rule yields the
violations of its own kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate.model import Context, Rule, Severity, Violation
from tools.validate.schema import (
    CEL_RULE,
    INVALID_VALUE,
    UNKNOWN_FIELD,
    UNKNOWN_KIND,
    SchemaValidator,
    SchemaViolation,
)

_CACHE_KEY = "schema.violations"


def _all_violations(ctx: Context) -> dict[int, list[SchemaViolation]]:
    """Schema violations of every resource of the overlay, computed once and shared by the rules."""
    cached = ctx.extras.get(_CACHE_KEY)
    if cached is None:
        validator = ctx.schemas if ctx.schemas is not None else SchemaValidator()
        cached = {id(resource): validator.validate(resource) for resource in ctx.resources}
        ctx.extras[_CACHE_KEY] = cached
        # What could not be checked (CEL rules skipped and why), where the run's notes are kept.
        notes: list[str] = ctx.extras.setdefault("notes", [])
        notes.extend(note for note in validator.notes() if note not in notes)
    return cached


def _of_rule(rule_id: str) -> Any:
    def check(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
        ignored = set(options.get("ignore_kinds") or ())
        violations = _all_violations(ctx)
        for resource in ctx.resources:
            if ignored and (resource.kind in ignored or f"{resource.api_version}/{resource.kind}" in ignored):
                continue
            for violation in violations.get(id(resource), ()):
                if violation.rule_id == rule_id:
                    yield violation

    return check


RULES: list[Rule] = [
    Rule(
        id=UNKNOWN_FIELD,
        family="schema",
        title="Field not in the schema",
        severity=Severity.ERROR,
        why=(
            "The API server silently drops fields its schema does not know (CRDs prune them; "
            "`kubectl apply` without strict validation only warns), so a misspelt or misplaced field "
            "(`imagePullPolcy`, a v1beta1 field in a v1 NodePool) is simply ignored: the setting you "
            "reviewed never takes effect."
        ),
        remediation="Fix the spelling or move the field to where the schema expects it (see the suggestion).",
        scope=(),  # every kind
        check=_of_rule(UNKNOWN_FIELD),
        options={"ignore_kinds": []},
        example="spec.template.spec.containers[0].imagePullPolcy: Always",
        use_instead="spec.template.spec.containers[0].imagePullPolicy: Always",
    ),
    Rule(
        id=INVALID_VALUE,
        family="schema",
        title="Value does not match the schema",
        severity=Severity.ERROR,
        why=(
            "A wrong type, a value outside the allowed set, a pattern mismatch or a missing required "
            "field is rejected by the API server (or by the controller's webhook): Argo CD then "
            "reports a sync failure long after the pull request was merged."
        ),
        remediation="Use a value of the documented type and form (the message names it).",
        scope=(),  # every kind
        check=_of_rule(INVALID_VALUE),
        options={"ignore_kinds": []},
        example="spec:\n  disruption:\n    consolidationPolicy: WhenUnderutilized   # the v1beta1 name",
        use_instead="spec:\n  disruption:\n    consolidationPolicy: WhenEmptyOrUnderutilized",
    ),
    Rule(
        id=UNKNOWN_KIND,
        family="schema",
        title="No schema for this apiVersion/kind",
        severity=Severity.ERROR,
        why=(
            "A resource whose apiVersion/kind has no schema cannot be checked at all; most often the "
            "apiVersion is outdated (karpenter.sh/v1beta1, keda.k8s.io/v1alpha1) and the cluster "
            "would refuse it, or it belongs to a CRD the gate was not given."
        ),
        remediation=(
            "Use the current apiVersion (the message lists the ones the gate knows), or pass the "
            "CRD exported from the cluster with --crd DIR."
        ),
        scope=(),  # every kind
        check=_of_rule(UNKNOWN_KIND),
        options={"ignore_kinds": []},
        example="apiVersion: karpenter.sh/v1beta1\nkind: NodePool",
        use_instead="apiVersion: karpenter.sh/v1\nkind: NodePool",
    ),
    Rule(
        id=CEL_RULE,
        family="schema",
        title="A CRD validation rule (CEL) fails",
        severity=Severity.ERROR,
        why=(
            "CRDs carry x-kubernetes-validations rules the API server enforces on create and update "
            "(for example: an EC2NodeClass `alias` AMI term cannot be combined with other terms; "
            "NodePool requirements may not use restricted karpenter.sh label keys). Evaluated only "
            "with --crd and cel-python installed; rules it cannot evaluate are counted in the notes."
        ),
        remediation="Change the resource so the rule holds; the message is the CRD's own.",
        scope=(),  # every kind
        check=_of_rule(CEL_RULE),
        options={"ignore_kinds": []},
        example="amiSelectorTerms:\n  - alias: bottlerocket@latest\n  - id: ami-0123456789abcdef0",
        use_instead="amiSelectorTerms:\n  - alias: bottlerocket@latest",
    ),
]
