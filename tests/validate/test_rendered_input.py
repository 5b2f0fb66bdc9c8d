"""`gate validate` on manifests rendered elsewhere (Helm, another tool): a file, a directory of files, or
standard input; findings point at the lines of those files."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.validate.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered_prod() -> str:
    completed = subprocess.run(
        [str(REPO / ".venv/bin/kubectl"), "kustomize", str(REPO / "overlays/prod")],
        capture_output=True, text=True, check=True,
    )
    return completed.stdout


def _cold_prod(text: str) -> tuple[str, int]:
    """The prod overlay with no warm replica, and the line that says so."""
    broken = text.replace("minReplicaCount: 2", "minReplicaCount: 0")
    return broken, broken.splitlines().index("  minReplicaCount: 0") + 1


def _findings(out: Path) -> list[tuple[object, ...]]:
    report = json.loads(out.read_text(encoding="utf-8"))
    return [(f["rule"], f["file"], f["line"], f["path"]) for f in report["findings"]]


def test_a_rendered_file_is_checked_and_findings_point_at_its_lines(
    rendered_prod: str, tmp_path: Path
) -> None:
    text, line = _cold_prod(rendered_prod)
    manifests = tmp_path / "prod.yaml"
    manifests.write_text(text, encoding="utf-8")
    out = tmp_path / "out.json"

    code = main(["validate", str(manifests), "--env", "prod", "--repo-root", str(REPO),
                 "--format", f"json={out}"])

    assert _findings(out) == [("scaling/min-warm-replicas", str(manifests), line, "spec.minReplicaCount")]
    assert code == 1


def test_a_directory_of_rendered_files_and_a_list_document(rendered_prod: str, tmp_path: Path) -> None:
    text, _ = _cold_prod(rendered_prod)
    documents = text.split("\n---\n")
    (tmp_path / "manifests/nested").mkdir(parents=True)
    (tmp_path / "manifests/a.yaml").write_text("\n---\n".join(documents[:10]) + "\n", encoding="utf-8")
    listed = {"apiVersion": "v1", "kind": "List", "items": []}
    listed["items"] = [yaml.safe_load(doc) for doc in documents[10:]]
    (tmp_path / "manifests/nested/rest.json").write_text(json.dumps(listed), encoding="utf-8")
    (tmp_path / "manifests/README.md").write_text("not a manifest", encoding="utf-8")
    out = tmp_path / "out.json"

    code = main(["validate", str(tmp_path / "manifests"), "--env", "prod", "--repo-root", str(REPO),
                 "--format", f"json={out}"])

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["summary"]["resources"] == len(documents)
    assert [(f["rule"], f["file"]) for f in report["findings"]] == [
        ("scaling/min-warm-replicas", str(tmp_path / "manifests/nested/rest.json"))]
    assert code == 1


def test_standard_input(rendered_prod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, line = _cold_prod(rendered_prod)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    out = tmp_path / "out.json"

    code = main(["validate", "-", "--env", "prod", "--repo-root", str(REPO), "--format", f"json={out}"])

    assert _findings(out) == [("scaling/min-warm-replicas", "<stdin>", line, "spec.minReplicaCount")]
    assert code == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- just\n- a list\n", "a document is not a mapping"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
         "alias"),
    ],
)
def test_bad_rendered_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")

    code = main(["validate", str(bad), "--repo-root", str(REPO)])

    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and message in err
    assert "Traceback" not in err


def test_a_path_that_does_not_exist_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tmp_path / "nope.yaml"), "--repo-root", str(REPO)])

    assert code == 2
    assert capsys.readouterr().err == f"gate: {tmp_path / 'nope.yaml'}: no such file or directory\n"
