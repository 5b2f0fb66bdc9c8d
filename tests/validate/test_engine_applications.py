"""The engine gives each overlay the Argo CD Applications of its environment (apps/E, clusters/E).

On copies of this repository: `gate validate overlays/prod` alone still relates the overlay to the
Application in apps/prod that syncs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.validate.conftest import edit, finding_key
from tools.validate.cli import main
from tools.validate.engine import application_sources
from tools.validate.model import Resource
from tools.validate.render import Rendered, RenderOptions

REPLICAS_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm
spec:
  replicas: 3
"""
IGNORE_VLLM_REPLICAS = """\
    - group: apps
      kind: Deployment
      name: vllm
      namespace: inference
      jsonPointers:
        - /spec/replicas
"""


def add_replicas_patch(root: Path) -> None:
    (root / "overlays/prod/vllm-replicas.yaml").write_text(REPLICAS_PATCH, encoding="utf-8")
    edit(root, "overlays/prod/kustomization.yaml", "  - path: disruption-budgets.yaml\n",
         "  - path: disruption-budgets.yaml\n  - path: vllm-replicas.yaml\n")


def validate_prod(root: Path, out: Path) -> tuple[int, list[dict[str, object]]]:
    code = main(
        ["validate", str(root / "overlays/prod"), "--repo-root", str(root), "--format", f"json={out}"]
    )
    return code, json.loads(out.read_text(encoding="utf-8"))["findings"]


def test_replicas_ignored_by_the_prod_application_is_not_a_finding(repo_copy: Path, tmp_path: Path) -> None:
    add_replicas_patch(repo_copy)
    code, findings = validate_prod(repo_copy, tmp_path / "out.json")
    assert [f["rule"] for f in findings] == []
    assert code == 0


def test_replicas_the_prod_application_does_not_ignore_is_reported_at_the_patch_line(
    repo_copy: Path, tmp_path: Path
) -> None:
    add_replicas_patch(repo_copy)
    edit(repo_copy, "apps/base/inference.yaml", IGNORE_VLLM_REPLICAS, "")
    code, findings = validate_prod(repo_copy, tmp_path / "out.json")
    assert [finding_key(f) for f in findings] == [
        ("gitops/scaled-replicas-ignored", "Deployment/inference/vllm", "overlays/prod/vllm-replicas.yaml", 6)
    ]
    assert findings[0]["path"] == "spec.replicas"
    assert findings[0]["overlay"] == "overlays/prod"
    assert code == 1


def test_the_applications_are_rendered_once_per_run(repo_copy: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.validate import engine

    rendered: list[str] = []
    real_render = engine.render

    def counting_render(directory: Path, *args: object, **kwargs: object) -> object:
        rendered.append(directory.resolve().relative_to(repo_copy.resolve()).as_posix())
        return real_render(directory, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "render", counting_render)
    code = main(["validate", str(repo_copy / "overlays/prod"), str(repo_copy / "apps/prod"),
                 "--repo-root", str(repo_copy), "--format", f"json={tmp_path / 'out.json'}"])
    assert code == 0
    assert sorted(rendered) == ["apps/prod", "clusters/prod", "overlays/prod"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [("deploy/environment-name", "does not exist in the repository"),
     ("../outside/environment-name", "is outside the repository")],
)
def test_an_application_path_that_is_not_in_the_repository_is_reported(
    repo_copy: Path, tmp_path: Path, path: str, problem: str
) -> None:
    edit(repo_copy, "apps/base/inference.yaml", "path: overlays/environment-name", f"path: {path}")
    out = tmp_path / "out.json"

    code = main(["validate", str(repo_copy / "apps/prod"), "--repo-root", str(repo_copy), "--format",
                 f"json={out}"])

    findings = json.loads(out.read_text(encoding="utf-8"))["findings"]
    # The environment's name, copied into the path by a replacement, is the line that set the field.
    values = (repo_copy / "overlays/prod/environment/environment.yaml").read_text(encoding="utf-8")
    line = values.splitlines().index("  environment: prod") + 1
    assert [finding_key(f) for f in findings] == [("gitops/application-source-exists",
                                                   "Application/argocd/inference",
                                                   "overlays/prod/environment/environment.yaml", line)]
    assert problem in str(findings[0]["message"])
    assert code == 1


def test_an_application_path_that_does_not_render_says_what_kustomize_said(tmp_path: Path) -> None:
    (tmp_path / "overlays/broken").mkdir(parents=True)
    broken = tmp_path / "overlays/broken/kustomization.yaml"
    broken.write_text("resources: [missing.yaml]\n", encoding="utf-8")
    (tmp_path / "overlays/fine").mkdir(parents=True)
    (tmp_path / "overlays/fine/kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
    apps = [
        Resource({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
                  "spec": {"source": {"repoURL": "https://example.com/repo.git", "path": path}}}, "apps/x")
        for name, path in (("broken", "overlays/broken"), ("fine", "overlays/fine"))
    ]

    found = application_sources([Rendered("apps/x", apps)], tmp_path, RenderOptions())

    assert found["overlays/fine"] is None
    assert str(found["overlays/broken"]).startswith("does not render: cannot render overlays/broken")
    assert "missing.yaml" in str(found["overlays/broken"])
