"""Telemetry: the metric renames OpenTelemetry collectors apply (OTTL `replace_pattern` and `set ... where`
statements of transform processors, read with Python's `ast`), and a metric's name once exported."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from tools.validate.loader import InputError, load_text
from tools.validate.model import Context, mapping, sequence


def otel_renames(ctx: Context) -> list[tuple[re.Pattern[str], str]]:
    """Metric renames the OpenTelemetryCollectors' transform processors apply, as (regex, replacement)."""
    out: list[tuple[re.Pattern[str], str]] = []
    for collector in ctx.of_kind("OpenTelemetryCollector"):
        config = collector.get("spec", "config")
        if isinstance(config, str):  # v1alpha1 keeps the collector config as a YAML string
            try:
                documents = load_text(config, f"{collector.ref()} spec.config").documents
            except InputError:
                continue  # not YAML (or over the loader's limits): it configures no rename
            config = documents[0] if documents else None
        processors = mapping(mapping(config).get("processors"))
        for name, processor in processors.items():
            if not str(name).startswith("transform") or not isinstance(processor, dict):
                continue
            for group in sequence(processor.get("metric_statements")):
                statements = sequence(group.get("statements")) if isinstance(group, dict) else [group]
                for statement in statements:
                    rename = _ottl_rename(str(statement))
                    if rename is not None:
                        out.append(rename)
    return out


def _ottl_rename(statement: str) -> tuple[re.Pattern[str], str] | None:
    """`replace_pattern(name, "re", "repl")` or `set(name, "new") where name == "old"` (OTTL) as a regex "
    "rename."""
    call_text, _, condition = statement.partition(" where ")
    try:
        call = ast.parse(call_text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or not call.args:
        return None
    target = ast.unparse(call.args[0])
    if target not in ("name", "metric.name"):
        return None
    literals = [a.value for a in call.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if call.func.id == "replace_pattern" and len(literals) == 2:
        # The collector config escapes `$` as `$$`; OTTL's `$1`/`${1}` become Python's `\g<1>`.
        replacement = literals[1].replace("$$", "$")
        replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement)
        return re.compile(literals[0]), replacement
    if call.func.id == "set" and len(literals) == 1 and condition:
        try:
            cond = ast.parse(condition.strip(), mode="eval").body
        except SyntaxError:
            return None
        if (
            isinstance(cond, ast.Compare)
            and isinstance(cond.ops[0], ast.Eq)
            and isinstance(cond.comparators[0], ast.Constant)
        ):
            return re.compile("^" + re.escape(str(cond.comparators[0].value)) + "$"), literals[0].replace(
                "\\", "\\\\"
            )
    return None


def exported_name(name: str, renames: Sequence[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replacement in renames:
        name = pattern.sub(replacement, name)
    return name
