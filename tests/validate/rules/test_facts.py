"""The parsing the rules rely on: KEDA formulas and queries, OTTL renames, label requirements, vLLM args,
the catalogue, and the vLLM argument-parser runner."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tools.validate.catalogue import GIB, load_catalogue
from tools.validate.karpenter import compatible, requirements_from
from tools.validate.keda import QueryError, formula_names, otel_query_metric, promql_metrics
from tools.validate.model import Context, Resource, format_path
from tools.validate.telemetry import exported_name, otel_renames
from tools.validate.vllm_args import VllmUnavailable, check_flags_with_vllm, find_vllm_python, vllm_commands

# ------------------------------------------------------------------------------------------ formulas


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("running + (waiting * 10)", ["running", "waiting"]),
        ("(a + b) / 2", ["a", "b"]),
        ("-a ** 2 % 3", ["a"]),
        ("a >= 2", ["a"]),
    ],
)
def test_formula_names_of_the_supported_subset(formula: str, names: list[str]) -> None:
    assert formula_names(formula) == names


@pytest.mark.parametrize(
    ("formula", "reason"),
    [
        ("running + (waiting * ", "does not parse"),
        ("a < 2 ? 5 : a", "does not parse"),  # expr-lang's ternary is outside the subset
        ("max(a, b)", "outside the supported subset"),
        ("a.b + 1", "outside the supported subset"),
        ("a + 'x'", "non-numeric literal"),
    ],
)
def test_formula_outside_the_subset_is_reported(formula: str, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        formula_names(formula)


# ------------------------------------------------------------------------------------------- queries


def test_otel_metric_query_grammar() -> None:
    assert otel_query_metric("sum(vllm_num_requests_running)") == "vllm_num_requests_running"
    assert otel_query_metric("avg( vllm:kv_cache_usage_perc{model_name=m, pod=vllm-0} )") == (
        "vllm:kv_cache_usage_perc"
    )
    for bad in ("median(x)", "sum(x{a!=b})", "sum(x", "x"):
        with pytest.raises(QueryError):
            otel_query_metric(bad)


def test_promql_metric_names() -> None:
    query = 'sum(rate(vllm:prompt_tokens_total{model_name="m"}[1m])) / sum(vllm_num_requests_running)'
    assert promql_metrics(query) == ["vllm:prompt_tokens_total", "vllm_num_requests_running"]
    with pytest.raises(QueryError):
        promql_metrics("sum(vllm:num_requests_running")


def _collector(statements: list[str]) -> Resource:
    doc = {
        "apiVersion": "opentelemetry.io/v1beta1",
        "kind": "OpenTelemetryCollector",
        "metadata": {"name": "c"},
        "spec": {
            "config": {"processors": {"transform/x": {"metric_statements": [{"statements": statements}]}}}
        },
    }
    return Resource(doc, "o")


@pytest.mark.parametrize(
    "statement",
    [
        'replace_pattern(name, "^vllm:", "vllm_")',
        'replace_pattern(metric.name, "vllm:(.*)", "vllm_$$1")',
        'replace_pattern(name, "vllm:(.*)", "vllm_$${1}")',
    ],
)
def test_ottl_rename_of_the_collector(statement: str) -> None:
    renames = otel_renames(Context("o", None, [_collector([statement])]))
    assert exported_name("vllm:num_requests_running", renames) == "vllm_num_requests_running"


def test_ottl_set_where_renames_one_metric() -> None:
    statement = 'set(name, "queue") where name == "vllm:num_requests_waiting"'
    renames = otel_renames(Context("o", None, [_collector([statement])]))
    assert exported_name("vllm:num_requests_waiting", renames) == "queue"
    assert exported_name("vllm:num_requests_running", renames) == "vllm:num_requests_running"


# -------------------------------------------------------------------------------------- requirements


@pytest.mark.parametrize(
    ("pod", "pool", "conflict"),
    [
        ([("k", "In", ["a"])], [("k", "In", ["a", "b"])], None),
        ([("k", "In", ["c"])], [("k", "In", ["a", "b"])], "k"),
        ([("k", "NotIn", ["a"])], [("k", "In", ["a"])], "k"),
        ([("k", "NotIn", ["a"])], [("k", "In", ["a", "b"])], None),
        ([("k", "Exists", [])], [("k", "DoesNotExist", [])], "k"),
        ([("custom", "Exists", [])], [], "custom"),  # a label the NodePool never sets
        ([("custom", "DoesNotExist", [])], [], None),
        ([("karpenter.k8s.aws/instance-generation", "Gt", ["4"])], [], None),  # well-known, unconstrained
        ([("n", "Gt", ["4"])], [("n", "Lt", ["5"])], "n"),
        ([("n", "Gt", ["4"])], [("n", "In", ["4", "8"])], None),
        ([("n", "Gt", ["4"])], [("n", "Lt", ["7"])], None),
    ],
)
def test_requirement_intersection(
    pod: list[tuple[str, str, list[str]]], pool: list, conflict: str | None
) -> None:
    def reqs(items: list) -> dict:
        return requirements_from({"key": k, "operator": o, "values": v} for k, o, v in items)

    assert compatible(reqs(pod), reqs(pool)) == conflict


# ------------------------------------------------------------------------------------------ vLLM args


def _deployment(container: dict) -> Resource:
    doc = {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }
    return Resource(doc, "o")


def test_vllm_args_with_command_and_positional_model() -> None:
    (cmd,) = vllm_commands(
        _deployment(
            {
                "name": "vllm",
                "image": "vllm/vllm-openai:v0.32.0",
                "command": ["vllm", "serve"],
                "args": ["/models/m", "--max-num-seqs", "32", "--enforce-eager", "--max-model-len=4096"],
            }
        )
    )
    assert cmd.model == "/models/m"
    assert cmd.args == ["/models/m", "--max-num-seqs", "32", "--enforce-eager", "--max-model-len=4096"]
    assert cmd.int_value("--max-num-seqs") == 32
    assert cmd.value("--enforce-eager") is None
    assert format_path(cmd.value_path("--max-num-seqs")) == "spec.template.spec.containers[0].args[2]"
    assert format_path(cmd.value_path("--max-model-len")) == "spec.template.spec.containers[0].args[4]"
    assert format_path(cmd.flag_path("--enforce-eager")) == "spec.template.spec.containers[0].args[3]"


def test_vllm_args_in_a_shell_script_and_the_module_entrypoint() -> None:
    (shell,) = vllm_commands(
        _deployment(
            {"name": "x", "image": "base:1", "command": ["sh", "-c", "exec vllm serve /m --max-num-seqs 8"]}
        )
    )
    assert shell.int_value("--max-num-seqs") == 8
    assert format_path(shell.value_path("--max-num-seqs")) == "spec.template.spec.containers[0].command[2]"
    (module,) = vllm_commands(
        _deployment(
            {
                "name": "x",
                "image": "python:3.11",
                "command": ["python", "-m", "vllm.entrypoints.openai.api_server"],
                "args": ["--model", "m-awq", "--port", "8000"],
            }
        )
    )
    assert module.model == "m-awq"
    assert module.args == ["--model", "m-awq", "--port", "8000"]


def test_non_vllm_containers_are_ignored() -> None:
    assert (
        list(vllm_commands(_deployment({"name": "gw", "image": "ghcr.io/x/gateway:1", "args": ["--x"]})))
        == []
    )


# ------------------------------------------------------------------------------------------ catalogue


def test_catalogue_figures() -> None:
    cat = load_catalogue()
    model = cat.model_for("s3://bucket/mistral-7b-instruct-awq")
    assert model is not None and model.kv_cache_bytes_per_token == 128 * 1024
    assert model.required_bytes(4096, 32) / GIB == pytest.approx(20.1)
    assert cat.gpus["t4"].compute_capability == 75 and cat.quantizations["awq_marlin"].min_capability == 80
    assert cat.gpu_of_family("g6e") == "l40s"
    assert cat.gpus_of_categories(["p"]) == {"k80", "v100", "a100", "h100", "h200"}
    assert cat.metric_status("vllm:prompt_tokens_total").state == "current"
    assert cat.metric_status("vllm:e2e_request_latency_seconds_bucket").state == "current"
    assert cat.metric_status("vllm:gpu_cache_usage_perc").state == "removed"
    assert cat.metric_status("vllm:time_per_output_token_seconds_sum").state == "deprecated"
    assert cat.metric_status("vllm:nope").state == "unknown"


def test_catalogue_rejects_a_family_with_an_unknown_gpu(tmp_path: Path) -> None:
    source = Path(load_catalogue.__code__.co_filename).parent / "data"
    for f in source.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text(gpus.read_text(encoding="utf-8").replace("gpu: t4}", "gpu: t5}"), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown GPU 't5'"):
        load_catalogue(tmp_path)


# --------------------------------------------------------------------------- the vLLM parser runner


def _fake_python(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\necho run >> {tmp_path}/calls\n{body}\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_parser_answers_are_cached_by_args(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, """echo '{"unknown": ["--x"], "errors": [], "version": "9.9"}'""")
    cache = tmp_path / "cache"
    first = check_flags_with_vllm(["--x"], python, cache_dir=cache)
    second = check_flags_with_vllm(["--x"], python, cache_dir=cache)
    check_flags_with_vllm(["--y"], python, cache_dir=cache)
    assert first == second and first.unknown == ("--x",) and first.version == "9.9"
    assert (tmp_path / "calls").read_text().count("run") == 2


def test_parser_failure_is_a_clear_error(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, "echo 'ModuleNotFoundError: No module named vllm' >&2; exit 1")
    with pytest.raises(VllmUnavailable, match="No module named vllm"):
        check_flags_with_vllm(["--x"], python, cache_dir=None)


def test_find_vllm_python_prefers_the_environment_variable(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, "true")
    assert find_vllm_python({"VLLM_PYTHON": str(python)}) == python
    assert find_vllm_python({"VLLM_PYTHON": str(tmp_path / "missing")}) is None


def test_vllm_args_after_the_images_entrypoint() -> None:
    (cmd,) = vllm_commands(
        _deployment(
            {"name": "vllm", "image": "vllm/vllm-openai:v0.32.0", "args": ["mistral-7b-awq", "--port", "80"]}
        )
    )
    assert cmd.model == "mistral-7b-awq"
    assert cmd.args == ["mistral-7b-awq", "--port", "80"]
