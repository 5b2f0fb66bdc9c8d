"""From a rendered field to the repository line that set it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.validate.model import Resource, SourceLocation, format_path, parse_path, resolve_path, walk
from tools.validate.render import Rendered, render, split_field_path
from tools.validate.sources import SourceMapper

TREE = Path(__file__).parent / "fixtures" / "tree"
CONTAINERS = "spec.template.spec.containers"


@pytest.fixture(scope="module")
def dev() -> Rendered:
    return render(TREE / "overlays" / "dev", TREE)


def locate(rendered: Rendered, ref: str, path: str) -> SourceLocation | None:
    (resource,) = [r for r in rendered.resources if r.ref() == ref]
    return SourceMapper(TREE).locate(resource, path, rendered.patch_sources[resource.index])


@pytest.mark.parametrize(
    ("path", "file", "line"),
    [
        # set in the base
        (f"{CONTAINERS}[1].image", "base/web/deployment.yaml", 19),
        (f"{CONTAINERS}[0].resources.limits.memory", "base/web/deployment.yaml", 27),
        ("metadata.labels.app", "base/web/deployment.yaml", 7),
        # set by the strategic-merge patch, which also reorders the containers (sidecar first)
        ("spec.replicas", "overlays/dev/scale.yaml", 6),
        (f"{CONTAINERS}[0].image", "overlays/dev/scale.yaml", 11),
        (f"{CONTAINERS}[1].args[1]", "overlays/dev/scale.yaml", 15),
        # set by the JSON6902 patch file: the operation's value, or the item inside it
        (f"{CONTAINERS}[0].args", "overlays/dev/sidecar-args.yaml", 3),
        (f"{CONTAINERS}[0].args[1]", "overlays/dev/sidecar-args.yaml", 5),
        # absent: the resource's first line in its origin file (after a comment line)
        (f"{CONTAINERS}[1].resources", "base/web/deployment.yaml", 2),
        ("spec.template.spec.nodeSelector", "base/web/deployment.yaml", 2),
        ("", "base/web/deployment.yaml", 2),
    ],
)
def test_deployment_fields(dev: Rendered, path: str, file: str, line: int) -> None:
    assert locate(dev, "Deployment/dev/dev-web", path) == SourceLocation(file, line)


@pytest.mark.parametrize(
    ("ref", "path", "file", "line"),
    [
        # an inline JSON6902 patch in the overlay's kustomization
        ("Service/dev/dev-web", "spec.ports[0].targetPort", "overlays/dev/kustomization.yaml", 16),
        ("Service/dev/dev-web", "spec.ports[0].port", "base/web/service.yaml", 16),
        # second document of a multi-document file
        ("Service/dev/dev-web", "", "base/web/service.yaml", 8),
        ("ConfigMap/dev/dev-web-config", "data.mode", "base/web/service.yaml", 6),
        ("ConfigMap/dev/dev-web-config", "data.absent", "base/web/service.yaml", 1),
    ],
)
def test_other_resources(dev: Rendered, ref: str, path: str, file: str, line: int) -> None:
    assert locate(dev, ref, path) == SourceLocation(file, line)


def test_path_syntax() -> None:
    assert parse_path('spec.template.spec.containers[0].args[12]') == [
        "spec", "template", "spec", "containers", 0, "args", 12
    ]
    assert parse_path('metadata.annotations["karpenter.sh/do-not-disrupt"]') == [
        "metadata", "annotations", "karpenter.sh/do-not-disrupt"
    ]
    doc = {"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}}
    assert list(resolve_path(doc, "metadata.annotations.karpenter.sh/do-not-disrupt")) == [
        "metadata", "annotations", "karpenter.sh/do-not-disrupt"
    ]


DOTTED_KEYS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  annotations:
    karpenter.sh/do-not-disrupt: "true"
data:
  config: |
    yaml: not this one
  config.yaml: |
    the: one a finding means
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("metadata", "annotations", "karpenter.sh/do-not-disrupt"), 6),
        # `config.yaml` beside `config`: as text the path would be read as `config`, then `yaml`; a block
        # scalar's line is its first line of text
        (("data", "config.yaml"), 10),
        (("data", "config"), 8),
    ],
)
def test_a_key_with_dots_is_one_segment_and_finds_its_line(tmp_path: Path, path: tuple[str, ...],
                                                            line: int) -> None:
    (tmp_path / "settings.yaml").write_text(DOTTED_KEYS)
    resource = Resource(yaml.safe_load(DOTTED_KEYS), "overlays/dev", origin="settings.yaml")

    assert SourceMapper(tmp_path).locate(resource, path) == SourceLocation("settings.yaml", line)
    assert format_path(path) == ".".join(path)  # printed as before: keys joined by dots


def test_source_files_are_parsed_once(dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.validate import sources

    calls: list[str] = []
    real = sources.compose_with_lines

    def counting(text: str, source: str, limits: object = None) -> object:
        calls.append(source)
        return real(text, source) if limits is None else real(text, source, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(sources, "compose_with_lines", counting)
    mapper = SourceMapper(TREE)
    (deployment,) = [r for r in dev.resources if r.kind == "Deployment"]
    for path in ("spec.replicas", f"{CONTAINERS}[1].image", f"{CONTAINERS}[1].resources", "metadata.name"):
        mapper.locate(deployment, path, dev.patch_sources[deployment.index])
    assert sorted(calls) == [
        "base/web/deployment.yaml", "overlays/dev/scale.yaml", "overlays/dev/sidecar-args.yaml"
    ]


def test_a_field_written_by_a_replacement_points_at_its_source_value() -> None:
    rendered = render(TREE / "overlays" / "replaced", TREE)

    assert [r.ref() for r in rendered.resources] == ["ConfigMap/web-config", "Service/web", "Deployment/web"]
    assert locate(rendered, "Deployment/web", f"{CONTAINERS}[1].image") == SourceLocation(
        "overlays/replaced/values.yaml", 9
    )
    assert locate(rendered, "Deployment/web", f"{CONTAINERS}[0].image") == SourceLocation(
        "base/web/deployment.yaml", 19
    )
    sidecar = SourceLocation("base/web/deployment.yaml", 23)
    assert locate(rendered, "Deployment/web", f"{CONTAINERS}[1]") == sidecar


def test_field_path_syntax_of_kustomize() -> None:
    assert split_field_path("spec.template.spec.containers.[name=vllm].env.[name=AWS_REGION].value") == [
        "spec", "template", "spec", "containers", "[name=vllm]", "env", "[name=AWS_REGION]", "value"
    ]
    assert split_field_path("spec.subnetSelectorTerms.0.tags.[karpenter.sh/discovery]") == [
        "spec", "subnetSelectorTerms", "0", "tags", "karpenter.sh/discovery"
    ]


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod", "apps/prod", "clusters/prod"])
def test_every_field_of_the_repository_overlays_has_a_line_in_an_existing_file(overlay: str) -> None:
    root = Path(__file__).parents[2]
    rendered = render(root / overlay, root)
    mapper = SourceMapper(root)
    line_counts: dict[str, int] = {}

    checked = 0
    for resource in rendered.resources:
        for path, _ in walk(resource.doc):
            location = mapper.locate(resource, path, rendered.patch_sources[resource.index])
            assert location is not None, (resource.ref(), path)
            if location.file not in line_counts:
                line_counts[location.file] = len((root / location.file).read_text().splitlines())
            assert 1 <= location.line <= line_counts[location.file], (resource.ref(), path, location)
            checked += 1
    assert checked > 20  # not vacuous
