"""The render on untrusted input: hostile pull requests against the real kustomize (kubectl's).

Each case asserts the exact outcome (exit 2, the file and kustomization line named) and that the
danger did not happen: kustomize was not started (a stand-in command would leave a marker), a script
did not run, a file outside the repository was not read, nothing was downloaded, memory stayed bounded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tools.validate.cli import main
from tools.validate.loader import Limits, load_text
from tools.validate.render import RenderError, RenderOptions, kustomize_command, render
from tools.validate.sandbox import PATH_FIELDS, PLAIN_FIELDS, SandboxError, walk

REPOSITORY = Path(__file__).parents[2]
GATE = Path(sys.executable).parent / "gate"
ALIAS_BOMB_JSON = (
    '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb"},\n'
    ' "a": &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"],\n'
    ' "b": &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a],\n'
    ' "c": &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b],\n'
    ' "d": &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c],\n'
    ' "e": &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d],\n'
    ' "f": &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e],\n'
    ' "g": &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f],\n'
    ' "h": &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g],\n'
    ' "data": {"v": *h}}\n'
)


def overlay(tree: Path, kustomization: str, files: dict[str, str] | None = None) -> Path:
    """overlays/hostile in the fixture repository copy, with the given kustomization and files."""
    directory = tree / "overlays" / "hostile"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" + kustomization, encoding="utf-8"
    )
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def marker_command(marker: Path) -> tuple[str, ...]:
    """A stand-in for kustomize that leaves `marker` behind if it is ever started."""
    return (sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).touch()")


def gate_validate(directory: Path, repo_root: Path, capsys: pytest.CaptureFixture[str],
                  *extra: str) -> tuple[int, str, str]:
    code = main(["validate", str(directory), "--repo-root", str(repo_root), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def refused_before_kustomize(directory: Path, repo_root: Path, tmp_path: Path,
                             limits: Limits | None = None) -> str:
    marker = tmp_path / "kustomize-started"
    options = RenderOptions(command=marker_command(marker), limits=limits or Limits())
    with pytest.raises(RenderError) as caught:
        render(directory, repo_root, options)
    assert not marker.exists()
    return str(caught.value)


# --- bombs, depth, size: whatever the file's extension ------------------------------------------------


def test_a_json_alias_bomb_is_refused_before_kustomize_starts(tree: Path, tmp_path: Path) -> None:
    directory = overlay(tree, "resources:\n  - bomb.json\n", {"bomb.json": ALIAS_BOMB_JSON})

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/bomb.json:6: "
        "aliases expand to more than 100000 nodes (alias bomb?)"
    )


def test_the_alias_bomb_is_refused_faster_than_a_clean_render(tree: Path) -> None:
    directory = overlay(tree, "resources:\n  - bomb.json\n", {"bomb.json": ALIAS_BOMB_JSON})

    started = time.monotonic()
    render(tree / "overlays" / "dev", tree)
    clean_seconds = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"alias bomb"):
        render(directory, tree)
    assert time.monotonic() - started < clean_seconds


def test_the_alias_bomb_exits_2_and_the_gate_process_stays_small(tree: Path) -> None:
    directory = overlay(tree, "resources:\n  - bomb.json\n", {"bomb.json": ALIAS_BOMB_JSON})

    def run_gate(path: Path) -> tuple[int, str, int]:
        process = subprocess.Popen([str(GATE), "validate", str(path), "--repo-root", str(tree)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stderr is not None
        err = process.stderr.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return process.returncode, err, usage.ru_maxrss  # KiB, the gate and the kustomize it waited for

    clean_code, _, clean_kib = run_gate(tree / "overlays" / "dev")
    code, err, kib = run_gate(directory)

    assert clean_code == 1  # rendered and checked (the fixture has findings)
    assert (code, err) == (
        2, "gate: cannot render overlays/hostile: overlays/hostile/bomb.json:6: "
           "aliases expand to more than 100000 nodes (alias bomb?)\n",
    )
    assert kib < clean_kib * 1.5  # nothing was expanded


def test_kustomize_itself_is_held_to_its_memory_limit(tree: Path) -> None:
    # With the gate's own alias limit lifted (gate.yaml cannot do that), the bomb reaches kustomize:
    # the memory cap stops it.
    directory = overlay(tree, "resources:\n  - bomb.json\n", {"bomb.json": ALIAS_BOMB_JSON})
    options = RenderOptions(limits=Limits(max_alias_nodes=10**10, max_nodes=10**10), memory_limit=256 * 2**20)

    with pytest.raises(RenderError) as caught:
        render(directory, tree, options)
    message = "cannot render overlays/hostile: kustomize ran out of its 256 MiB memory limit"
    assert str(caught.value) == message


def test_kustomize_output_is_cut_at_the_size_limit() -> None:
    # every input file is under 700 bytes; what kustomize makes of them is not
    tree = Path(__file__).parent / "fixtures" / "tree"

    with pytest.raises(RenderError) as caught:
        render(tree / "overlays" / "dev", tree, RenderOptions(limits=Limits(max_bytes=1200)))
    assert str(caught.value) == "cannot render overlays/dev: kustomize's output is over the 1200-byte limit"


def test_a_json_file_nested_past_the_depth_limit_is_refused(tree: Path, tmp_path: Path) -> None:
    nested = '{"apiVersion": "v1", "kind": "ConfigMap", "data": ' + "[" * 500 + "]" * 500 + "}\n"
    directory = overlay(tree, "resources:\n  - deep.json\n", {"deep.json": nested})

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/deep.json:1: nested more than 128 levels deep"
    )


def test_a_deeply_nested_json_file_is_refused(tree: Path, tmp_path: Path) -> None:
    nested = '{"apiVersion": "v1", "kind": "ConfigMap", "data": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    directory = overlay(tree, "patches:\n  - path: deep.patch\nresources:\n  - ../../base/web\n",
                        {"deep.patch": nested})

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/deep.patch:1: "
        "invalid YAML: exceeded maximum nesting depth"
    )


def test_a_huge_file_with_an_unusual_extension_is_refused_unread(tree: Path, tmp_path: Path) -> None:
    directory = overlay(tree, "configMapGenerator:\n  - name: blob\n    files:\n      - model=weights.bin\n")
    with (directory / "weights.bin").open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MiB that cost nothing to make

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/weights.bin: "
        "file is 67108864 bytes, over the 20971520-byte limit"
    )


def test_the_files_of_one_render_are_limited_together(tree: Path, tmp_path: Path) -> None:
    files = {f"part{n}.txt": "x" * 600 for n in range(3)}
    generator = "".join(f"      - part{n}.txt\n" for n in range(3))
    directory = overlay(tree, f"configMapGenerator:\n  - name: parts\n    files:\n{generator}", files)

    message = refused_before_kustomize(directory, tree, tmp_path, Limits(max_total_bytes=1500))
    assert message == (
        "cannot render overlays/hostile: overlays/hostile/part2.txt: "
        "the files this render reads add up to more than 1500 bytes"
    )


# --- nothing remote ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        ("resources", "https://raw.githubusercontent.com/example/repo/main/deployment.yaml"),
        ("resources", "github.com/kubernetes-sigs/kustomize/examples/helloWorld?ref=v1.0.6"),
        ("resources", "git@github.com:example/repo.git//base?ref=main"),
        ("resources", "ssh://git@example.com/repo.git//base"),
        ("resources", "example.com/team/manifests"),
        ("components", "https://example.com/components/sidecar"),
        ("bases", "git::https://example.com/repo.git//base"),
        ("crds", "http://example.com/crd.yaml"),
    ],
)
def test_a_remote_reference_is_refused_and_never_fetched(tree: Path, tmp_path: Path, field: str,
                                                         entry: str) -> None:
    directory = overlay(tree, f"resources:\n  - ../../base/web\n{field}:\n  - {entry}\n"
                        if field != "resources" else f"resources:\n  - ../../base/web\n  - {entry}\n")

    line = 5 if field == "resources" else 6
    assert refused_before_kustomize(directory, tree, tmp_path) == (
        f"cannot render overlays/hostile: overlays/hostile/kustomization.yaml:{line}: {field}: {entry!r}: "
        "a remote reference: the gate downloads nothing, it renders the repository"
    )


def test_a_helm_chart_from_a_repository_is_refused(tree: Path, tmp_path: Path) -> None:
    directory = overlay(tree, "helmCharts:\n  - name: redis\n    repo: https://charts.example.com\n"
                        "    version: 1.0.0\n")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml:5: helmCharts.repo: "
        "names something to download or run; the gate renders only files of the repository"
    )


def test_a_missing_local_path_is_refused_rather_than_tried_as_remote(tree: Path, tmp_path: Path) -> None:
    directory = overlay(tree, "resources:\n  - ../../base/web\n  - missing-file.yaml\n")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml:5: resources: "
        "'missing-file.yaml': no such file or directory in the repository"
    )


# --- nothing outside the repository ------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A kustomization and a secret beside the repository copy, not in it."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text("resources:\n  - secret.yaml\n", encoding="utf-8")
    (directory / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: host}\nstringData: {password: TOP-SECRET-VALUE}\n",
        encoding="utf-8",
    )
    (directory / "passwd").write_text("root:TOP-SECRET-VALUE:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    return directory


def test_a_base_outside_the_repository_by_dot_dot_is_refused(
    tree: Path, outside: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = overlay(tree, "resources:\n  - ../../../outside\n")

    code, out, err = gate_validate(directory, tree, capsys)
    assert (code, out) == (2, "")
    assert err == (
        "gate: cannot render overlays/hostile: overlays/hostile/kustomization.yaml:4: resources: "
        "'../../../outside': resolves outside the repository\n"
    )
    assert refused_before_kustomize(directory, tree, tmp_path) == err.removeprefix("gate: ").rstrip()


def test_a_base_outside_the_repository_by_symlink_is_refused(tree: Path, outside: Path,
                                                            tmp_path: Path) -> None:
    (tree / "base" / "shared").symlink_to(outside, target_is_directory=True)
    directory = overlay(tree, "resources:\n  - ../../base/shared\n")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml:4: resources: "
        "'../../base/shared': resolves outside the repository"
    )


def test_a_symlinked_patch_outside_is_never_read_nor_shown(
    tree: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = overlay(tree, "resources:\n  - ../../base/web\npatches:\n  - path: passwd.yaml\n")
    (directory / "passwd.yaml").symlink_to(outside / "passwd")
    before = (outside / "passwd").stat().st_atime_ns

    code, out, err = gate_validate(directory, tree, capsys)

    assert (code, out) == (2, "")
    assert err == (
        "gate: cannot render overlays/hostile: overlays/hostile/kustomization.yaml:6: patches: "
        "'passwd.yaml': resolves outside the repository\n"
    )
    assert "TOP-SECRET-VALUE" not in out + err
    assert (outside / "passwd").stat().st_atime_ns == before


def test_a_kustomization_file_symlinked_outside_is_refused(tree: Path, outside: Path, tmp_path: Path) -> None:
    directory = tree / "overlays" / "hostile"
    directory.mkdir()
    (directory / "kustomization.yaml").symlink_to(outside / "kustomization.yaml")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml: "
        "a symlink that resolves outside the repository"
    )


def test_an_overlay_directory_symlinked_outside_is_refused(tree: Path, outside: Path, tmp_path: Path) -> None:
    (tree / "overlays" / "hostile").symlink_to(outside, target_is_directory=True)

    assert refused_before_kustomize(tree / "overlays" / "hostile", tree, tmp_path) == (
        "cannot render overlays/hostile: the directory resolves outside the repository"
    )


def test_a_gate_yaml_symlinked_outside_is_refused(
    tree: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "gate.yaml").symlink_to(outside / "passwd")

    code, out, err = gate_validate(tree / "overlays" / "dev", tree, capsys)

    assert (code, out) == (2, "")
    assert err == "gate: gate.yaml: a symlink that resolves outside the repository\n"


def test_crd_dirs_of_gate_yaml_stay_inside_the_repository(
    tree: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "gate.yaml").write_text("crd_dirs: [../outside]\n", encoding="utf-8")

    code, out, err = gate_validate(tree / "overlays" / "dev", tree, capsys)

    assert (code, out) == (2, "")
    assert err == "gate: gate.yaml: crd_dirs: '../outside': resolves outside the repository\n"


# --- the walker covers every field that names a file -------------------------------------------------


def test_an_unknown_kustomization_field_is_refused(tree: Path, tmp_path: Path) -> None:
    directory = overlay(tree, "resources:\n  - ../../base/web\nhelmChartHome: ../../../outside\n")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml:5: unknown kustomization field "
        "'helmChartHome': the gate cannot tell whether it names a file, so it does not render it"
    )


@pytest.mark.parametrize(
    ("kustomization", "line", "field"),
    [
        ("crds:\n  - {target}\n", 4, "crds"),
        ("configurations:\n  - {target}\n", 4, "configurations"),
        ("transformers:\n  - {target}\n", 4, "transformers"),
        ("generators:\n  - {target}\n", 4, "generators"),
        ("validators:\n  - {target}\n", 4, "validators"),
        ("patchesStrategicMerge:\n  - {target}\n", 4, "patchesStrategicMerge"),
        ("patchesJson6902:\n  - path: {target}\n    target: {{kind: Deployment, name: web}}\n", 4,
         "patchesJson6902"),
        ("replacements:\n  - path: {target}\n", 4, "replacements"),
        ("configMapGenerator:\n  - name: c\n    envs: [{target}]\n", 5, "configMapGenerator"),
        ("secretGenerator:\n  - name: s\n    env: {target}\n", 5, "secretGenerator"),
        ("secretGenerator:\n  - name: s\n    files: [key={target}]\n", 5, "secretGenerator"),
        ("openapi:\n  path: {target}\n", 4, "openapi"),
        ("helmGlobals:\n  chartHome: {target}\n", 4, "helmGlobals"),
        ("helmCharts:\n  - name: c\n    valuesFile: {target}\n", 5, "helmCharts"),
    ],
)
def test_every_path_field_is_held_to_the_repository(tree: Path, outside: Path, tmp_path: Path,
                                                    kustomization: str, line: int, field: str) -> None:
    directory = overlay(tree, kustomization.format(target="../../../outside/passwd"))

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        f"cannot render overlays/hostile: overlays/hostile/kustomization.yaml:{line}: {field}: "
        "'../../../outside/passwd': resolves outside the repository"
    )


def test_a_helm_chart_in_the_default_chart_home_may_not_link_outside(tree: Path, outside: Path,
                                                                     tmp_path: Path) -> None:
    directory = overlay(tree, "helmCharts:\n  - name: chart\n    releaseName: x\n",
                        {"charts/chart/Chart.yaml": "name: chart\nversion: 1.0.0\n"})
    (directory / "charts" / "chart" / "templates").mkdir()
    (directory / "charts" / "chart" / "templates" / "secret.yaml").symlink_to(outside / "secret.yaml")

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        "cannot render overlays/hostile: overlays/hostile/kustomization.yaml:3: helmCharts: the default "
        "chart home 'charts': overlays/hostile/charts/chart/templates/secret.yaml: a symlink that resolves "
        "outside the repository"
    )


@pytest.mark.parametrize(
    ("kustomization", "why"),
    [
        ("resources:\n  - ../../base/web\nresources:\n  - ../../../outside\n",
         "5: duplicate key 'resources'"),
        ("resources:\n  - ../../base/web\n---\nresources:\n  - ../../../outside\n",
         "6: a kustomization must be one YAML document"),
        ("RESOURCES:\n  - ../../../outside\n",
         "3: unknown kustomization field 'RESOURCES': the gate cannot tell whether it names a file, so it "
         "does not render it"),
        ("resources: ../../base/web\n", "3: resources: expected a list"),
        ("resources:\n  - /etc\n", "4: resources: '/etc': an absolute path; the gate renders only files of "
         "the repository"),
    ],
)
def test_a_kustomization_the_gate_and_kustomize_could_read_differently_is_refused(
    tree: Path, tmp_path: Path, kustomization: str, why: str
) -> None:
    directory = overlay(tree, kustomization)

    assert refused_before_kustomize(directory, tree, tmp_path) == (
        f"cannot render overlays/hostile: overlays/hostile/kustomization.yaml:{why}"
    )


def test_the_path_fields_and_the_plain_fields_are_kustomizes_whole_type() -> None:
    # kustomize's Kustomization type (api/types/kustomization.go, v5): adding a field there means
    # deciding here whether it names a file.
    declared = {f.name for f in PATH_FIELDS} | PLAIN_FIELDS
    assert declared == {
        "apiVersion", "kind", "metadata", "openapi", "namePrefix", "nameSuffix", "namespace",
        "commonLabels", "labels", "commonAnnotations", "patchesStrategicMerge", "patchesJson6902",
        "patches", "images", "imageTags", "replacements", "replicas", "vars", "sortOptions", "resources",
        "components", "crds", "bases", "configMapGenerator", "secretGenerator", "helmGlobals", "helmCharts",
        "helmChartInflationGenerator", "generatorOptions", "configurations", "generators", "transformers",
        "validators", "buildMetadata",
    }


def test_the_walk_of_a_clean_overlay_lists_exactly_the_files_kustomize_reads() -> None:
    tree = Path(__file__).parent / "fixtures" / "tree"
    walked = walk(tree / "overlays" / "dev", tree, Limits())

    assert sorted(p.relative_to(tree.resolve()).as_posix() for p in walked.yaml_files) == [
        "base/web/deployment.yaml", "base/web/kustomization.yaml", "base/web/service.yaml",
        "overlays/dev/kustomization.yaml", "overlays/dev/scale.yaml", "overlays/dev/sidecar-args.yaml",
    ]
    assert walked.other_files == []


def test_a_cycle_of_kustomizations_is_walked_once(tree: Path) -> None:
    directory = overlay(tree, "resources:\n  - ../hostile\n")

    assert [p.name for p in walk(directory, tree, Limits()).yaml_files] == ["kustomization.yaml"]


def test_a_symlink_loop_is_refused(tree: Path) -> None:
    directory = overlay(tree, "resources:\n  - loop\n")
    (directory / "loop").symlink_to(directory / "loop")

    with pytest.raises(SandboxError) as caught:
        walk(directory, tree, Limits())
    assert str(caught.value) == (
        "overlays/hostile/kustomization.yaml:4: resources: 'loop': resolves outside the repository"
    )


# --- gate.yaml cannot widen the gate's powers ---------------------------------------------------------


HELM_KUSTOMIZATION = "helmCharts:\n  - name: chart\n    releaseName: x\nhelmGlobals:\n  chartHome: charts\n"


@pytest.fixture
def helm_script(tree: Path) -> tuple[Path, Path]:
    """A script in the repository that leaves a marker when run, and the marker's path."""
    marker = tree.parent / "script-ran"
    script = tree / "tools" / "helm"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\n: > {marker}\nexit 1\n", encoding="utf-8")
    script.chmod(0o755)
    return script, marker


def test_a_helm_command_in_gate_yaml_does_not_run(tree: Path, helm_script: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, marker = helm_script
    chart = {"charts/chart/Chart.yaml": "name: chart\nversion: 1.0.0\n"}
    directory = overlay(tree, HELM_KUSTOMIZATION, chart)
    (tree / "gate.yaml").write_text(
        "kustomize:\n  build_options:\n    - --enable-helm\n    - --helm-command=tools/helm\n",
        encoding="utf-8",
    )

    code, out, err = gate_validate(directory, tree, capsys)

    assert (code, out) == (2, "")
    assert err == (
        "gate: gate.yaml:3: kustomize.build_options: '--enable-helm' is not allowed in gate.yaml: options "
        "that run programs, load plugins or change what kustomize may read are given on the command line "
        "(gate validate --build-option=...)\n"
    )
    assert not marker.exists()


def test_the_same_helm_command_given_on_the_command_line_runs(
    tree: Path, helm_script: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The control for the test above: the script and chart are real, only where the option comes from differs.
    script, marker = helm_script
    chart = {"charts/chart/Chart.yaml": "name: chart\nversion: 1.0.0\n"}
    directory = overlay(tree, HELM_KUSTOMIZATION, chart)

    code, _, err = gate_validate(directory, tree, capsys, "--build-option=--enable-helm",
                                 f"--build-option=--helm-command={script}")

    assert code == 2
    assert err.startswith("gate: cannot render overlays/hostile: kustomize said: ")
    assert marker.exists()


@pytest.mark.parametrize(
    ("options", "line", "why"),
    [
        ('["--helm-command", "./evil.sh"]', 2, "'--helm-command' is not allowed in gate.yaml"),
        ("[--enable-alpha-plugins]", 2, "'--enable-alpha-plugins' is not allowed in gate.yaml"),
        ("[--enable-exec]", 2, "'--enable-exec' is not allowed in gate.yaml"),
        ('["--mount=type=bind,src=/,dst=/host"]', 2,
         "'--mount=type=bind,src=/,dst=/host' is not allowed in gate.yaml"),
        ("[--network]", 2, "'--network' is not allowed in gate.yaml"),
        ("[--as-current-user]", 2, "'--as-current-user' is not allowed in gate.yaml"),
        ("[--load-restrictor, LoadRestrictionsNone]", 2,
         "--load-restrictor 'LoadRestrictionsNone' is not allowed in gate.yaml"),
        ("[--load-restrictor=LoadRestrictionsNone]", 2,
         "--load-restrictor 'LoadRestrictionsNone' is not allowed in gate.yaml"),
        ('["-o", "/tmp/anywhere"]', 2, "'-o' is not allowed in gate.yaml"),
        ('["--kubeconfig=/tmp/x"]', 2, "'--kubeconfig=/tmp/x' is not allowed in gate.yaml"),
        ('["--helm-kube-version=1.33", "--env", "A=B"]', 2, "'--env' is not allowed in gate.yaml"),
    ],
)
def test_build_options_outside_the_allow_list_are_refused_from_gate_yaml(
    tree: Path, capsys: pytest.CaptureFixture[str], options: str, line: int, why: str
) -> None:
    (tree / "gate.yaml").write_text(f"kustomize:\n  build_options: {options}\n", encoding="utf-8")

    code, out, err = gate_validate(tree / "overlays" / "dev", tree, capsys)

    assert (code, out) == (2, "")
    assert err.startswith(f"gate: gate.yaml:{line}: kustomize.build_options: {why}: options that run ")


def test_the_command_line_may_give_any_build_option(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate_validate(tree / "overlays" / "dev", tree, capsys,
                                   "--build-option=--load-restrictor=NoSuchRestrictor")

    assert (code, out) == (2, "")
    assert "NoSuchRestrictor" in err  # reached kustomize, which refused the value


def test_the_command_line_memory_limit_reaches_kustomize(tree: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gate_validate(tree / "overlays" / "dev", tree, capsys, "--render-memory-limit-mib=40")

    assert (code, err) == (
        2, "gate: cannot render overlays/dev: kustomize ran out of its 40 MiB memory limit\n"
    )


def test_at_the_deadline_kustomize_and_everything_it_started_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spawner = (sys.executable, "-c",
               "import pathlib, subprocess, sys, time; "
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
               f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(60)")
    tree = Path(__file__).parent / "fixtures" / "tree"

    with pytest.raises(RenderError, match="did not finish within 3 s"):
        render(tree / "overlays" / "dev", tree, RenderOptions(command=spawner, timeout=3))
    pid = int(pid_file.read_text())
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=5)  # psutil.TimeoutExpired (a failure) if it lives on
    assert not psutil.pid_exists(pid)


# --- a clean environment -----------------------------------------------------------------------------


def test_the_runners_kuberc_and_kubeconfig_do_not_change_the_render(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [r.doc for r in render(tree / "overlays" / "dev", tree).resources]
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "kuberc").write_text(
        "apiVersion: kubectl.config.k8s.io/v1beta1\nkind: Preference\ndefaults:\n- command: kustomize\n"
        "  options:\n  - name: load-restrictor\n    default: NoSuchRestrictor\n",
        encoding="utf-8",
    )
    command = kustomize_command()
    with_kuberc = subprocess.run([*command, str(tree / "overlays" / "dev")], capture_output=True,
                                 env={**os.environ, "HOME": str(home)}, check=False)
    assert b"NoSuchRestrictor" in with_kuberc.stderr  # this kuberc does change a plain kubectl's render

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere" / "config"))
    monkeypatch.setenv("KUBERC", str(home / ".kube" / "kuberc"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert [r.doc for r in render(tree / "overlays" / "dev", tree).resources] == expected


def test_kustomize_sees_only_the_clean_environment(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-kustomize")
    printer = (sys.executable, "-c",
               "import json, os; print(json.dumps({'apiVersion': 'v1', 'kind': 'ConfigMap', "
               "'metadata': {'name': 'env'}, 'data': dict(os.environ)}))")

    (resource,) = render(tree / "overlays" / "dev", tree, RenderOptions(command=printer)).resources
    seen = resource.doc["data"]
    assert sorted(seen) == [
        "GIT_CONFIG_NOSYSTEM", "GIT_TERMINAL_PROMPT", "HOME", "KUBECONFIG", "KUBECTL_KUBERC", "KUBERC",
        "LANG", "PATH", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    ]
    assert (seen["KUBECTL_KUBERC"], seen["KUBERC"]) == ("false", "off")
    assert seen["PATH"] == str(Path(seen["HOME"]) / "bin")  # an empty directory the render made
    assert not Path(seen["HOME"]).exists()  # and removed


# --- the repository itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["overlays/dev", "overlays/prod", "apps/dev", "apps/prod", "clusters/dev", "clusters/prod"]
)
def test_the_repositorys_own_kustomizations_render_as_argo_cd_renders_them(path: str) -> None:
    rendered = render(REPOSITORY / path, REPOSITORY)

    plain = subprocess.run([*kustomize_command(), str(REPOSITORY / path)], capture_output=True, check=True)
    assert [r.doc for r in rendered.resources] == load_text(plain.stdout.decode(), "plain build").documents
