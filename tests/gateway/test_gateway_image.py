"""The gateway image (gateway/Dockerfile) against the code it ships and the manifests that run it.

No Docker engine is needed: the image's inputs are read as the build would read them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.app import create_app
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"


def imported_distributions() -> dict[str, set[str]]:
    """Distribution name -> the gateway modules importing it (gateway/testing is not in the image)."""
    by_module = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        if "testing" in path.relative_to(GATEWAY).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "gateway" or top in sys.stdlib_module_names:
                    continue
                for distribution in by_module[top]:
                    found.setdefault(canonicalize_name(distribution), set()).add(path.name)
    return found


def route_paths(routes: list) -> set[str]:  # type: ignore[type-arg]
    """Every path the app serves; included routers hold their own routes (none has a prefix here)."""
    paths: set[str] = set()
    for route in routes:
        if hasattr(route, "path"):
            paths.add(route.path)
        elif hasattr(route, "original_router"):
            paths |= route_paths(route.original_router.routes)
    return paths


def image_requirements() -> dict[str, Requirement]:
    lines = (GATEWAY / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(r.name): r for r in requirements}


def test_the_image_installs_every_distribution_the_gateway_imports() -> None:
    installed = image_requirements()
    missing = {name: sorted(files) for name, files in imported_distributions().items()
               if name not in installed}
    assert missing == {}


def test_the_image_pins_the_same_ranges_as_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {canonicalize_name(r.name): r.specifier for r in map(Requirement, project)}
    image = {name: r.specifier for name, r in image_requirements().items()}
    assert image == {name: ranges[name] for name in image}


def test_the_image_matches_the_deployment() -> None:
    dockerfile = DockerfileParser(str(GATEWAY / "Dockerfile"))
    instructions = {item["instruction"]: item["value"] for item in dockerfile.structure}
    deployment = yaml.safe_load((ROOT / "base/gateway/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    configmap = yaml.safe_load((ROOT / "base/gateway/configmap.yaml").read_text())["data"]

    # A pinned base: an exact Python patch release and a Debian release, and the digest of that image.
    reference, _, digest = dockerfile.baseimage.partition("@")
    assert reference.startswith("python:3.11.") and reference.endswith("-bookworm")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert instructions["EXPOSE"] == str(port) == dockerfile.envs["GATEWAY_PORT"] == configmap["GATEWAY_PORT"]
    user = int(instructions["USER"].split(":")[0])
    assert user != 0
    assert user == pod["securityContext"]["runAsUser"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    paths = route_paths(create_app(Settings()).routes)
    probes = {container[probe]["httpGet"]["path"]
              for probe in ("livenessProbe", "readinessProbe", "startupProbe") if probe in container}
    assert probes == {"/healthz", "/readyz"}
    assert probes <= paths


def environment_values() -> dict[str, dict[str, str]]:
    return {path.parts[-3]: yaml.safe_load(path.read_text())["data"]
            for path in sorted(ROOT.glob("overlays/*/environment/environment.yaml"))}


def test_the_workflow_builds_the_dockerfile_tags_the_commit_and_pushes_to_each_environment() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/gateway-image.yml").read_text())
    job = workflow["jobs"]["push"]
    assert job["strategy"]["matrix"]["environment"] == sorted(environment_values())
    steps = {step.get("uses", step.get("name")): step for step in job["steps"]}
    build = steps["docker/build-push-action@v6"]["with"]
    assert (build["context"], build["file"], build["push"]) == (".", "gateway/Dockerfile", True)
    assert build["tags"] == "${{ steps.target.outputs.repository }}:${{ github.sha }}"
    # The push goes where the environment's own values say: the same file the overlay renders from.
    read = steps["Read the environment's image repository"]
    assert read["env"]["VALUES"] == "overlays/${{ matrix.environment }}/environment/environment.yaml"
    assert '["gatewayImage"]' in read["run"]
    assert steps["aws-actions/amazon-ecr-login@v2"]["with"]["registries"] == (
        "${{ steps.target.outputs.registry }}")
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert "gateway/**" in workflow[True]["push"]["paths"]  # PyYAML reads the key `on` as True


def test_each_environment_names_a_pinned_image_in_its_own_registry() -> None:
    for env, values in environment_values().items():
        image = values["gatewayImage"]
        registry = f"{values['accountId']}.dkr.ecr.{values['awsRegion']}.amazonaws.com"
        assert re.fullmatch(rf"{re.escape(registry)}/eks-llm-inference-gateway"
                            r"(:[0-9a-f]{40}|@sha256:[0-9a-f]{64})", image), (env, image)
