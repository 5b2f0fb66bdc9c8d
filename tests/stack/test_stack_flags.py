"""The mapping from the dev overlay's vLLM flags to the local CPU server's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.stack.env import REPO_ROOT
from tools.stack.vllm import (
    FALLBACK_DEV_ARGS,
    SERVING_FLAG_RULES,
    OverlayError,
    UnknownFlagError,
    dev_overlay_args,
    flag_table_markdown,
    local_serving_args,
    render_overlay,
    served_model_name,
    split_flags,
    vllm_container_args,
)

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_DIR = Path("/cache/models/tiny-mistral-0123")


def test_rendered_overlay_maps_to_the_exact_local_args() -> None:
    overlay_args = vllm_container_args(render_overlay(FIXTURES / "vllm-dev"))

    assert overlay_args == [
        "--model=s3://eks-llm-inference-models-000000000000/mistral-7b-instruct-awq",
        "--served-model-name=mistral-7b-instruct",
        "--load-format=runai_streamer",
        "--quantization=awq_marlin",
        "--max-model-len=4096",
        "--max-num-seqs=16",
        "--gpu-memory-utilization=0.90",
        "--shutdown-timeout=30",
        "--port=8000",
        "--enable-prefix-caching",
    ]
    assert local_serving_args(overlay_args, model_dir=MODEL_DIR, port=8123) == [
        "--model", str(MODEL_DIR),
        "--served-model-name", "mistral-7b-instruct",
        "--max-model-len", "512",
        "--max-num-seqs", "16",
        "--shutdown-timeout", "30",
        "--port", "8123",
        "--enable-prefix-caching",
        "--dtype", "bfloat16",
        "--enforce-eager",
        "--host", "127.0.0.1",
    ]  # fmt: skip


def test_caller_overrides_max_num_seqs() -> None:
    args = local_serving_args(list(FALLBACK_DEV_ARGS), model_dir=MODEL_DIR, port=1, max_num_seqs=4)

    assert dict(split_flags(args))["--max-num-seqs"] == "4"


def test_caller_value_is_added_when_the_overlay_has_no_max_num_seqs() -> None:
    args = local_serving_args(["--served-model-name", "m"], model_dir=MODEL_DIR, port=1, max_num_seqs=4)

    assert args == [
        "--served-model-name", "m",
        "--model", str(MODEL_DIR),
        "--max-model-len", "512",
        "--max-num-seqs", "4",
        "--dtype", "bfloat16",
        "--enforce-eager",
        "--host", "127.0.0.1",
        "--port", "1",
    ]  # fmt: skip


def test_separate_values_and_positional_model_of_vllm_serve() -> None:
    overlay = ["s3://bucket/model", "--dtype", "float16", "--served-model-name", "m", "--quantization", "awq"]

    assert local_serving_args(overlay, model_dir=MODEL_DIR, port=9) == [
        "--model", str(MODEL_DIR),
        "--dtype", "bfloat16",
        "--served-model-name", "m",
        "--max-model-len", "512",
        "--enforce-eager",
        "--host", "127.0.0.1",
        "--port", "9",
    ]  # fmt: skip


def test_args_written_into_the_command_after_vllm_serve_count() -> None:
    documents = [
        {
            "kind": "Deployment",
            "metadata": {"name": "vllm"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                 "command": ["vllm", "serve", "s3://b/m"], "args": ["--max-num-seqs=8"]},
            ]}}},
        }
    ]  # fmt: skip

    assert vllm_container_args(documents) == ["s3://b/m", "--max-num-seqs=8"]


def test_unknown_flag_names_the_table_to_extend() -> None:
    expected = r"--speculative-config has no local mapping: add a FlagRule .* SERVING_FLAG_RULES"
    with pytest.raises(UnknownFlagError, match=expected):
        local_serving_args(["--speculative-config={}"], model_dir=MODEL_DIR, port=1)


def test_switch_given_a_value_is_rejected() -> None:
    with pytest.raises(UnknownFlagError, match="--enable-prefix-caching takes no value"):
        split_flags(["--enable-prefix-caching=true"])


def test_flag_missing_its_value_is_rejected() -> None:
    with pytest.raises(UnknownFlagError, match="--max-num-seqs needs a value"):
        split_flags(["--max-num-seqs"])


def test_overlay_without_a_vllm_container_is_an_error() -> None:
    pod = {"spec": {"containers": [{"name": "gateway", "image": "gw:1"}]}}
    documents = [{"kind": "Deployment", "metadata": {"name": "gateway"}, "spec": {"template": pod}}]

    with pytest.raises(OverlayError, match="found: none"):
        vllm_container_args(documents)


def test_render_error_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")

    with pytest.raises(OverlayError, match=r"rendering .* failed"):
        render_overlay(tmp_path)


def test_the_repository_dev_overlay_maps_cleanly() -> None:
    """Whatever overlays/dev says (or the fallback list before it exists), every flag has a mapping."""
    overlay_args, _source = dev_overlay_args(REPO_ROOT)
    local = dict(split_flags(local_serving_args(overlay_args, model_dir=MODEL_DIR, port=1, max_num_seqs=4)))

    assert local["--model"] == str(MODEL_DIR)
    assert local["--served-model-name"] == served_model_name(overlay_args)
    assert local["--max-num-seqs"] == "4"
    assert local["--dtype"] == "bfloat16"
    assert "--quantization" not in local
    assert "--load-format" not in local
    assert "--gpu-memory-utilization" not in local


def test_readme_table_matches_the_rules() -> None:
    readme = (REPO_ROOT / "tools" / "stack" / "README.md").read_text()

    assert flag_table_markdown() in readme
    assert len({rule.flag for rule in SERVING_FLAG_RULES}) == len(SERVING_FLAG_RULES)


def test_flag_table_cli_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.stack.vllm", "--flag-table"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert result.stdout == flag_table_markdown()
