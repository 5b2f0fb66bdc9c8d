"""`gate`: validate, rules, docs, simulate, diff.

    gate validate [PATHS...] [--env ENV] [--format FORMAT[=FILE]]... [--fail-level LEVEL]
                  [--config FILE] [--crd DIR]... [--kubernetes-version X.Y] [--repo-root DIR]
                  [--build-option OPTION]... [--render-memory-limit-mib MIB] [--no-render-cache]
    gate rules
    gate docs [--check]
    gate simulate ...      (tools.validate.simulate.command)
    gate diff ...          (tools.validate.diff.command)

`validate` with no PATHS checks every kustomization the repository deploys: for each of overlays/,
apps/ and clusters/, the directory itself when it holds a kustomization, else each immediate
subdirectory that does. `--env ENV` keeps only the discovered directories of that environment, and
forces the environment of PATHS given explicitly. A PATH that is not a kustomization is taken as
manifests already rendered (by Helm or another tool): a YAML or JSON file, a directory of them, or `-`
for standard input; findings then point at the lines of those files.

Exit status: 0 clean; 1 findings at or above the fail level (suppressed findings never count);
2 the gate could not run (a render failure, a bad config, unreadable input), with a one-line
message on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.validate import docs as rule_docs
from tools.validate import render_cache
from tools.validate.config import ConfigError, find_config, load_config
from tools.validate.engine import GateError, RunOptions, discover_targets, run
from tools.validate.loader import InputError
from tools.validate.model import Report, Severity, format_path
from tools.validate.render import RenderError, is_kustomization_dir
from tools.validate.rendered_input import STDIN, RenderedInput, read_stdin, read_target
from tools.validate.rules import default_registry

PROG = "gate"
DEFAULT_FORMATS_UNDER_GITHUB = ("github", "text")
SUBCOMMAND_MODULES = {"simulate": "tools.validate.simulate.command", "diff": "tools.validate.diff.command"}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMAND_MODULES:
        return _delegate(args_list[0], args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except (GateError, RenderError, ConfigError, InputError) as exc:
        print(f"{PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Policy gate for the Kustomize overlays.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser("validate", help="render and check overlays (default: every deployed one)")
    validate.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH",
        help="kustomization directories to render; or rendered manifests: a YAML/JSON file, a directory "
             "of them, or - for standard input",
    )
    validate.add_argument("--env", help="environment of the paths (and filter for discovered ones)")
    validate.add_argument(
        "--format", action="append", default=[], metavar="FORMAT[=FILE]",
        help="output format, to FILE or stdout; repeatable (default: text; github+text under GitHub Actions)",
    )
    validate.add_argument("--fail-level", choices=[s.name.lower() for s in Severity], help="default: config")
    _common(validate)
    validate.add_argument("--crd", action="append", default=[], type=Path, metavar="PATH",
                          help="CRD YAML file or directory to validate custom resources against; repeatable")
    validate.add_argument("--kubernetes-version", help="Kubernetes version of the core schemas")
    validate.add_argument(
        "--build-option", action="append", default=[], metavar="OPTION",
        help="added to `kustomize build` after gate.yaml's; any option (e.g. --build-option=--enable-helm), "
             "unlike gate.yaml, which comes with the change under review; repeatable",
    )
    validate.add_argument("--render-memory-limit-mib", type=int, metavar="MIB",
                          help="heap kustomize may use (default: gate.yaml's, else 2048)")
    validate.add_argument(
        "--no-render-cache", action="store_true",
        help="run kustomize for every target instead of reusing the output of an identical earlier build "
             f"(kept in ${render_cache.CACHE_DIR_ENV}, else $XDG_CACHE_HOME/eks-llm-inference/gate/renders)",
    )
    validate.set_defaults(handler=_validate)

    rules = sub.add_parser("rules", help="list the rules")
    rules.set_defaults(handler=_rules)

    docs = sub.add_parser("docs", help="write docs/rules.md from the rule registry")
    docs.add_argument("--check", action="store_true", help="exit 1 if docs/rules.md is stale, write nothing")
    _common(docs)
    docs.set_defaults(handler=_docs)

    for name in SUBCOMMAND_MODULES:
        sub.add_parser(name, help=f"{name} (see `{PROG} {name} --help`)", add_help=False)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default: <repo root>/gate.yaml)")
    parser.add_argument("--repo-root", type=Path, help="repository root (default: from the current dir)")


def _delegate(name: str, argv: list[str]) -> int:
    module_name = SUBCOMMAND_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        print(f"{PROG} {name}: not available in this build", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args))
    except (GateError, RenderError, ConfigError, InputError) as exc:
        print(f"{PROG} {name}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def find_repo_root(start: Path) -> Path:
    """The nearest directory upwards holding gate.yaml or .git; `start` itself when none does."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / "gate.yaml").is_file() or (directory / ".git").exists():
            return directory
    return start


def _repo_root(args: argparse.Namespace) -> Path:
    root = args.repo_root or find_repo_root(Path.cwd())
    if not root.is_dir():
        raise GateError(f"--repo-root {root}: not a directory")
    return root.resolve()


def _validate(args: argparse.Namespace) -> int:
    repo_root = _repo_root(args)
    registry = default_registry()
    config_path = find_config(repo_root, args.config)
    config = load_config(config_path, registry, _display(config_path, repo_root) if config_path else None)
    if args.fail_level:
        config.fail_level = Severity.parse(args.fail_level)
    outputs = _outputs(args.format)
    rendered_inputs: list[RenderedInput] = []
    if args.paths:
        targets = []
        for path in args.paths:
            if str(path) == STDIN:
                rendered_inputs.append(read_stdin(sys.stdin.read(), config.limits))
            elif path.is_dir() and is_kustomization_dir(path):
                targets.append(path.resolve())
            elif path.exists():
                rendered_inputs.append(read_target(path, repo_root, config.limits))
            else:
                raise GateError(f"{_display(path, repo_root)}: no such file or directory")
    else:
        targets = discover_targets(repo_root)
        if args.env:
            targets = [t for t in targets if config.environment_of(_display(t, repo_root)) == args.env]
        if not targets:
            raise GateError(f"no kustomization found under overlays/, apps/ or clusters/ in {repo_root}")
    for crd in args.crd:
        if not crd.exists():
            raise GateError(f"--crd {crd}: no such file or directory")
    report = run(
        targets,
        RunOptions(
            repo_root=repo_root,
            config=config,
            registry=registry,
            env=args.env if args.paths else None,
            crd_dirs=[crd.resolve() for crd in args.crd],
            kubernetes_version=args.kubernetes_version,
            build_options=tuple(args.build_option),
            render_memory_limit=_memory_limit(args.render_memory_limit_mib),
            render_cache_dir=None if args.no_render_cache else render_cache.default_directory(),
        ),
        rendered_inputs,
    )
    _write(report, outputs)
    return 1 if report.failing() else 0


def _memory_limit(mib: int | None) -> int | None:
    if mib is None:
        return None
    if mib <= 0:
        raise GateError(f"--render-memory-limit-mib {mib}: must be greater than 0")
    return mib * 1024 * 1024


def _display(path: Path, repo_root: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root).as_posix()
    except ValueError:
        return str(path)


def _formats() -> Mapping[str, Callable[..., str]]:
    try:
        module = importlib.import_module("tools.validate.report")
    except ModuleNotFoundError as exc:
        if exc.name != "tools.validate.report":
            raise
        return {"text": _plain_text}
    formats: Mapping[str, Callable[..., str]] = module.FORMATS
    return formats


def _plain_text(report: Report, options: Any = None) -> str:
    """Used only when the report package is absent: one line per finding."""
    lines = []
    for finding in report.findings:
        where = f"{finding.location.file}:{finding.location.line}" if finding.location else "-"
        ref = finding.resource.ref() if finding.resource else "(overlay)"
        state = " (suppressed)" if finding.suppressed else ""
        lines.append(
            f"{finding.severity.name} {finding.rule_id} {finding.overlay} {ref} {where} "
            f"{format_path(finding.path)}: "
            f"{finding.message}{state}"
        )
    lines.append(f"{len(report.failing())} failing finding(s) in {report.resource_count} resources")
    return "\n".join(lines) + "\n"


def _outputs(specs: list[str]) -> list[tuple[str, Path | None]]:
    if not specs:
        github = os.environ.get("GITHUB_ACTIONS") == "true"
        specs = list(DEFAULT_FORMATS_UNDER_GITHUB) if github else ["text"]
    formats = _formats()
    outputs: list[tuple[str, Path | None]] = []
    for spec in specs:
        name, _, file = spec.partition("=")
        if name not in formats:
            raise GateError(f"--format {spec}: unknown format {name!r} (choose from {', '.join(formats)})")
        outputs.append((name, Path(file) if file else None))
    return outputs


def _write(report: Report, outputs: list[tuple[str, Path | None]]) -> None:
    formats = _formats()
    for name, file in outputs:
        text = formats[name](report)
        if file is None:
            sys.stdout.write(text)
            continue
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise GateError(f"--format {name}={file}: cannot write: {exc.strerror or exc}") from None


def _rules(args: argparse.Namespace) -> int:
    for rule in default_registry():
        print(f"{rule.id:48} {rule.severity.name.lower():8} {rule.title}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    repo_root = _repo_root(args)
    target = repo_root / rule_docs.DOCS_PATH
    registry = default_registry()
    config_path = find_config(repo_root, args.config)
    config = load_config(config_path, registry, _display(config_path, repo_root) if config_path else None)
    text = rule_docs.generate(registry, config if config_path else None)
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if args.check:
        if current != text:
            print(f"{PROG}: {rule_docs.DOCS_PATH} is stale: run `{PROG} docs`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {rule_docs.DOCS_PATH}")
    return 0
