"""Output formats of the policy gate: one renderer per format, registered explicitly.

    render(report, "sarif")                                  -> str
    render(report, "text", RenderOptions(colour=True))       -> str
    FORMATS["json"](report)                                  -> str

docs/output.md describes every format and the fields of `json` and `sarif`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from tools.validate.model import Report
from tools.validate.report import github, json_format, junit, markdown, sarif, text
from tools.validate.report.common import DEFAULT_OPTIONS, RenderOptions

Formatter = Callable[..., str]
"""`(report, options=DEFAULT_OPTIONS) -> str`: every formatter can be called with the report alone."""

FORMATS: Mapping[str, Formatter] = MappingProxyType(
    {
        "text": text.render,
        "json": json_format.render,
        "sarif": sarif.render,
        "github": github.render,
        "junit": junit.render,
        "markdown": markdown.render,
    }
)


class UnknownFormatError(ValueError):
    pass


def render(report: Report, fmt: str, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    try:
        formatter = FORMATS[fmt]
    except KeyError:
        choices = ", ".join(FORMATS)
        raise UnknownFormatError(f"unknown output format {fmt!r} (choose from {choices})") from None
    return formatter(report, options)


__all__ = ["FORMATS", "Formatter", "RenderOptions", "UnknownFormatError", "render"]
