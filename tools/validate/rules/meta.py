"""Rules about the gate's own inputs: suppression annotations, duplicate keys, crashed checks.

The suppression rules read the annotation syntax of `tools.validate.suppress`; the engine passes the
registry (`ctx.extras["known_rules"]`) and the date (`ctx.extras["today"]`). `input/duplicate-key`
reports the duplicate keys the loader saw in the rendered output (`ctx.extras["duplicates"]`).
`input/rule-crashed` has no check: the engine reports it when another rule's check raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate import suppress
from tools.validate.model import Context, Rule, Severity, Violation

_EXAMPLE = """metadata:
  annotations:
    gate.eks-llm-inference.io/suppress: |
      - rule: security/run-as-non-root"""

_USE_INSTEAD = """metadata:
  annotations:
    gate.eks-llm-inference.io/suppress: |
      - rule: security/run-as-non-root
        reason: the CPU test image runs as root; tracked in PLAT-123
        expires: 2027-01-31"""


def _suppression_problems(rule_id: str) -> Any:
    def check(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
        known = ctx.extras.get("known_rules", ())
        today = ctx.extras.get("today") or suppress.today_utc()
        for resource in ctx.resources:
            if suppress.SUPPRESS_ANNOTATION not in resource.annotations:
                continue
            for problem in suppress.parse(resource, known, today).problems:
                if problem.rule_id == rule_id:
                    yield Violation(resource, suppress.PATH, problem.message)

    return check


def _no_check(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    return iter(())


def _duplicate_keys(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for duplicate in ctx.extras.get("duplicates", ()):
        yield Violation(None, (), f"key {duplicate.key!r} appears twice in one mapping ({duplicate.source} "
                                  f"line {duplicate.line}); only the last value is used")


RULES: list[Rule] = [
    Rule(
        id=suppress.NEEDS_REASON,
        family="gitops",
        title="Every suppression says why",
        severity=Severity.ERROR,
        why="A suppression without a reason hides a finding with no record of why it was acceptable; the "
        "next reader cannot tell an informed exception from a silenced alarm. It does not apply.",
        remediation="Add `reason:` to the suppression entry (and an `expires:` date if it is temporary).",
        scope=(),
        check=_suppression_problems(suppress.NEEDS_REASON),
        example=_EXAMPLE,
        use_instead=_USE_INSTEAD,
    ),
    Rule(
        id=suppress.EXPIRED,
        family="gitops",
        title="Suppressions past their expiry date",
        severity=Severity.WARNING,
        why="An expiry date is a promise to revisit the exception. Past it, the suppression stops applying "
        "and the original finding is reported again.",
        remediation="Fix the underlying finding, or renew the suppression with a new date and reason.",
        scope=(),
        check=_suppression_problems(suppress.EXPIRED),
        example=_USE_INSTEAD.replace("2027-01-31", "2024-01-31"),
        use_instead=_USE_INSTEAD,
    ),
    Rule(
        id=suppress.UNKNOWN_RULE,
        family="gitops",
        title="Suppressions name rules that exist",
        severity=Severity.ERROR,
        why="A suppression naming a rule that does not exist (a typo, a renamed rule) suppresses nothing, "
        "while its author believes the finding is handled.",
        remediation="Use a rule id listed by `gate rules`.",
        scope=(),
        check=_suppression_problems(suppress.UNKNOWN_RULE),
        example=_USE_INSTEAD.replace("security/run-as-non-root", "security/run-as-nonroot"),
        use_instead=_USE_INSTEAD,
    ),
    Rule(
        id=suppress.MALFORMED,
        family="gitops",
        title="Suppression annotations are well-formed",
        severity=Severity.ERROR,
        why="A suppression annotation the gate cannot read suppresses nothing.",
        remediation="Write a YAML list of entries with `rule`, `reason` and, optionally, "
        "`expires: YYYY-MM-DD`.",
        scope=(),
        check=_suppression_problems(suppress.MALFORMED),
        example="metadata:\n  annotations:\n    gate.eks-llm-inference.io/suppress: security/run-as-non-root",
        use_instead=_USE_INSTEAD,
    ),
    Rule(
        id="input/duplicate-key",
        family="input",
        title="No duplicate keys in a mapping",
        severity=Severity.ERROR,
        why="YAML parsers disagree on duplicate keys (some keep the first, some the last, some refuse); the "
        "value the cluster sees may not be the one the reviewer read.",
        remediation="Remove one of the two keys.",
        scope=(),
        check=_duplicate_keys,
        example="spec:\n  replicas: 1\n  replicas: 2",
        use_instead="spec:\n  replicas: 2",
    ),
    Rule(
        id="input/rule-crashed",
        family="input",
        title="A rule's check failed with an internal error",
        severity=Severity.ERROR,
        why="A check that crashes checks nothing: the overlay has not been validated by that rule.",
        remediation="Report the message to the gate's maintainers; the input that triggered it is named.",
        scope=(),
        check=_no_check,
    ),
]
