"""The tiny model is generated deterministically and serves as a Mistral-architecture model."""

from __future__ import annotations

import json
from pathlib import Path

from tools.stack.tiny_model import CACHE_PREFIX, file_hashes, run_generator, source_hash

EXPECTED_FILES = {
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def test_generation_is_byte_for_byte_deterministic(
    tiny_model: Path, vllm_python_path: Path, tmp_path: Path
) -> None:
    run_generator(vllm_python_path, tmp_path / "first")
    run_generator(vllm_python_path, tmp_path / "second")

    first, second = file_hashes(tmp_path / "first"), file_hashes(tmp_path / "second")
    assert set(first) == EXPECTED_FILES
    assert first == second
    # The cached copy (possibly from an earlier session) has the same bytes too.
    assert json.loads((tiny_model / "hashes.json").read_text()) == first
    assert tiny_model.name == f"{CACHE_PREFIX}-{source_hash()}"


def test_config_is_the_tiny_mistral_shape(tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())

    assert config["architectures"] == ["MistralForCausalLM"]
    assert config["hidden_size"] == 128
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (2, 1, 64)
    assert (config["num_hidden_layers"], config["vocab_size"]) == (2, 512)
    assert config["dtype"] == "bfloat16"


def test_tokenizer_has_the_special_tokens_and_a_chat_template(tiny_model: Path) -> None:
    tokenizer = json.loads((tiny_model / "tokenizer.json").read_text())
    added = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    template = (tiny_model / "chat_template.jinja").read_text()

    assert added == {"<pad>": 0, "<s>": 1, "</s>": 2}
    assert tokenizer["model"]["type"] == "BPE"
    assert 256 < len(tokenizer["model"]["vocab"]) <= 512
    assert "[INST]" in template and "eos_token" in template
