from __future__ import annotations

import pytest

from tools.validate.model import Report
from tools.validate.report import FORMATS, RenderOptions, UnknownFormatError, render
from tools.validate.report import text as text_format


def test_formats_are_registered_explicitly() -> None:
    assert list(FORMATS) == ["text", "json", "sarif", "github", "junit", "markdown"]


def test_unknown_format_names_the_choices(report: Report) -> None:
    with pytest.raises(UnknownFormatError) as excinfo:
        render(report, "yaml")
    assert str(excinfo.value) == (
        "unknown output format 'yaml' (choose from text, json, sarif, github, junit, markdown)"
    )


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        FORMATS["csv"] = text_format.render  # type: ignore[index]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_render_equals_the_registered_formatter(report: Report, fmt: str) -> None:
    assert render(report, fmt) == FORMATS[fmt](report)


def test_options_reject_a_useless_limit() -> None:
    with pytest.raises(ValueError, match="max_findings must be at least 1, got 0"):
        RenderOptions(max_findings=0)
