"""Rendering through kustomize: origins, patches, stripped build metadata, failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.validate.cli import main
from tools.validate.loader import load_text
from tools.validate.render import (
    ORIGIN_ANNOTATION,
    TRANSFORMATIONS_ANNOTATION,
    PatchSource,
    RenderError,
    RenderOptions,
    kustomize_command,
    render,
)

TREE = Path(__file__).parent / "fixtures" / "tree"


def by_ref(rendered_resources: list) -> dict:
    return {r.ref(): r for r in rendered_resources}


def test_origins_and_patches_are_repository_relative_files() -> None:
    rendered = render(TREE / "overlays" / "dev", TREE)

    resources = by_ref(rendered.resources)
    assert rendered.overlay == "overlays/dev"
    assert set(resources) == {"ConfigMap/dev/dev-web-config", "Service/dev/dev-web", "Deployment/dev/dev-web"}
    deployment = resources["Deployment/dev/dev-web"]
    assert deployment.origin == "base/web/deployment.yaml"
    assert deployment.patches == ("overlays/dev/scale.yaml", "overlays/dev/sidecar-args.yaml")
    assert rendered.patch_sources[deployment.index] == (
        PatchSource("overlays/dev/scale.yaml", "strategic-merge"),
        PatchSource("overlays/dev/sidecar-args.yaml", "json6902"),
    )
    service = resources["Service/dev/dev-web"]
    assert service.origin == "base/web/service.yaml"
    assert service.patches == ("overlays/dev/kustomization.yaml",)
    (inline,) = rendered.patch_sources[service.index]
    assert (inline.file, inline.kind, inline.line) == ("overlays/dev/kustomization.yaml", "json6902", 14)
    config_map = resources["ConfigMap/dev/dev-web-config"]
    assert (config_map.origin, config_map.patches) == ("base/web/service.yaml", ())


def test_build_metadata_is_stripped_and_output_equals_a_plain_build() -> None:
    rendered = render(TREE / "overlays" / "dev", TREE)

    command = kustomize_command()
    plain = subprocess.run([*command, str(TREE / "overlays" / "dev")], capture_output=True, check=True)
    expected = load_text(plain.stdout.decode(), "plain build").documents
    assert [r.doc for r in rendered.resources] == expected
    for resource in rendered.resources:
        assert ORIGIN_ANNOTATION not in resource.annotations
        assert TRANSFORMATIONS_ANNOTATION not in resource.annotations


def test_render_failure_names_the_overlay_and_quotes_kustomize() -> None:
    with pytest.raises(RenderError) as caught:
        render(TREE / "overlays" / "broken", TREE)

    message = str(caught.value)
    assert message.startswith("cannot render overlays/broken: kustomize said: ")
    assert "no-such-deployment" in message
    assert "\n" not in message
    assert "gate-render-" not in message  # the wrapper's temporary directory is not shown


def test_render_failure_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(TREE / "overlays" / "broken"), "--repo-root", str(TREE)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("gate: cannot render overlays/broken: kustomize said: ")
    assert "no-such-deployment" in err
    assert err.count("\n") == 1


def test_directory_without_kustomization_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"cannot render empty: no kustomization\.yaml"):
        render(tmp_path / "empty", tmp_path)


def test_kustomize_that_hangs_is_stopped_by_the_timeout() -> None:
    hanging = (sys.executable, "-c", "import time; time.sleep(30)")
    options = RenderOptions(command=hanging, timeout=0.5)

    with pytest.raises(RenderError) as caught:
        render(TREE / "overlays" / "dev", TREE, options)
    assert str(caught.value) == "cannot render overlays/dev: kustomize did not finish within 0.5 s"


def test_build_options_are_passed_to_kustomize() -> None:
    options = RenderOptions(build_options=("--load-restrictor", "NoSuchRestrictor"))

    with pytest.raises(RenderError, match="NoSuchRestrictor"):
        render(TREE / "overlays" / "dev", TREE, options)


def test_replacements_are_recorded_apart_from_patches() -> None:
    rendered = render(TREE / "overlays" / "replaced", TREE)

    (deployment,) = [r for r in rendered.resources if r.kind == "Deployment"]
    assert (deployment.origin, deployment.patches) == ("base/web/deployment.yaml", ())
    assert rendered.patch_sources[deployment.index] == (
        PatchSource("overlays/replaced/values.yaml", "replacement", None, 9,
                    ("spec.template.spec.containers.[name=sidecar].image",)),
    )
    assert "ConfigMap/values" not in {r.ref() for r in rendered.resources}  # local-config: not rendered
