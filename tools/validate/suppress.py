"""Suppressions: only through an annotation on the resource, only with a reason, optionally until a date.

    metadata:
      annotations:
        gate.eks-llm-inference.io/suppress: |
          - rule: security/run-as-non-root
            reason: the CPU test image runs as root; the production image does not
            expires: 2027-01-31

The value is a YAML (or JSON) list of entries `{rule, reason, expires?}`. An entry applies to the
findings of that rule on that resource until the end of its `expires` day (UTC). A suppressed finding
stays in the report with its `suppression` set; it no longer fails the run.

An entry that does not apply is itself a finding (rules in `tools.validate.rules.meta`):
`gitops/suppression-needs-reason` (no reason), `gitops/suppression-expired` (past its date),
`gitops/suppression-unknown-rule` (no such rule), `gitops/suppression-malformed` (not a list of
entries, unknown keys, a date that is not YYYY-MM-DD). Findings of these rules and internal errors
cannot be suppressed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Iterable
from dataclasses import dataclass

from tools.validate.loader import InputError, load_text
from tools.validate.model import FieldPath, Finding, QuotedKey, Resource, Suppression

SUPPRESS_ANNOTATION = "gate.eks-llm-inference.io/suppress"
ENTRY_KEYS = ("rule", "reason", "expires")

NEEDS_REASON = "gitops/suppression-needs-reason"
EXPIRED = "gitops/suppression-expired"
UNKNOWN_RULE = "gitops/suppression-unknown-rule"
MALFORMED = "gitops/suppression-malformed"
UNSUPPRESSIBLE = frozenset({NEEDS_REASON, EXPIRED, UNKNOWN_RULE, MALFORMED, "input/rule-crashed"})

PATH: FieldPath = ("metadata", "annotations", QuotedKey(SUPPRESS_ANNOTATION))


@dataclass(frozen=True)
class Problem:
    """Why one suppression entry does not apply."""

    rule_id: str  # one of the gitops/suppression-* rules
    message: str


@dataclass(frozen=True)
class Parsed:
    active: dict[str, Suppression]
    problems: list[Problem]


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse(resource: Resource, known_rules: Container[str], today: dt.date) -> Parsed:
    """The suppressions on `resource` that apply today, and the problems with the others."""
    text = resource.annotations.get(SUPPRESS_ANNOTATION)
    if text is None:
        return Parsed({}, [])
    try:
        documents = load_text(str(text), SUPPRESS_ANNOTATION).documents
    except InputError as exc:
        return Parsed({}, [Problem(MALFORMED, f"the suppression annotation is not YAML: {exc.message}")])
    entries = documents[0] if len(documents) == 1 else None
    if not isinstance(entries, list):
        problem = "the suppression annotation must be a list of {rule, reason, expires}"
        return Parsed({}, [Problem(MALFORMED, problem)])
    active: dict[str, Suppression] = {}
    problems: list[Problem] = []
    for number, entry in enumerate(entries, start=1):
        suppression, problem = _entry(entry, number, known_rules, today)
        if problem is not None:
            problems.append(problem)
        if suppression is not None:
            active[suppression.rule_id] = suppression
    return Parsed(active, problems)


def _entry(entry: object, number: int, known_rules: Container[str],
           today: dt.date) -> tuple[Suppression | None, Problem | None]:
    if not isinstance(entry, dict):
        return None, Problem(MALFORMED, f"suppression #{number} is not a mapping with rule and reason")
    unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if unknown:
        return None, Problem(MALFORMED, f"suppression #{number} has unknown keys: {', '.join(unknown)}")
    rule_id = entry.get("rule")
    if not isinstance(rule_id, str) or not rule_id:
        return None, Problem(MALFORMED, f"suppression #{number} names no rule")
    if rule_id not in known_rules:
        return None, Problem(UNKNOWN_RULE, f"suppression #{number} names unknown rule {rule_id!r}")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problem = f"suppression of {rule_id} has no reason: say why it is acceptable"
        return None, Problem(NEEDS_REASON, problem)
    expires = entry.get("expires")
    expiry: dt.date | None = None
    if expires is not None:
        expiry = _date(expires)
        if expiry is None:
            problem = f"suppression of {rule_id}: expires {expires!r} is not YYYY-MM-DD"
            return None, Problem(MALFORMED, problem)
        if today > expiry:
            return None, Problem(EXPIRED, f"suppression of {rule_id} expired on {expiry.isoformat()}")
    suppression = Suppression(rule_id, reason.strip(), expiry.isoformat() if expiry else None)
    return suppression, None


def _date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def apply(findings: Iterable[Finding], known_rules: Container[str], today: dt.date) -> None:
    """Set `Finding.suppression` where an active suppression on the finding's resource names its rule."""
    cache: dict[int, Parsed] = {}
    for finding in findings:
        resource = finding.resource
        if resource is None or finding.rule_id in UNSUPPRESSIBLE:
            continue
        key = id(resource)
        if key not in cache:
            cache[key] = parse(resource, known_rules, today)
        suppression = cache[key].active.get(finding.rule_id)
        if suppression is not None:
            finding.suppression = suppression
