"""gate.yaml: shape, per-environment options, errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.validate.cli import main
from tools.validate.config import ConfigError, GateConfig, load_config
from tools.validate.model import Rule, Severity
from tools.validate.rules import default_registry, meta
from tools.validate.rules.base import Registry

TREE = Path(__file__).parent / "fixtures" / "tree"

WARM = Rule(
    id="scaling/fixture-warm-replicas", family="scaling", title="t", severity=Severity.ERROR, why="w",
    remediation="r", scope=("ScaledObject",), check=lambda ctx, options: iter(()),
    options={"min_warm_replicas": 0, "require_on_demand_fallback": False},
)
REGISTRY = Registry([WARM, *meta.RULES])

CONFIG = """\
fail_level: error
kubernetes_version: "1.33"
kustomize:
  build_options: [--load-restrictor, LoadRestrictionsRootOnly, --helm-kube-version=1.33]
rules:
  scaling/fixture-warm-replicas: {require_on_demand_fallback: true}
environments:
  dev:
    paths: [overlays/dev, apps/dev]
    rules:
      scaling/fixture-warm-replicas: {min_warm_replicas: 0}
  prod:
    paths: [overlays/prod, clusters/prod-eu]
    rules:
      scaling/fixture-warm-replicas: {min_warm_replicas: 2, severity: warning}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    return path


def test_options_merge_defaults_global_and_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG), REGISTRY, "gate.yaml")

    assert config.options_for(WARM, "prod") == {"min_warm_replicas": 2, "require_on_demand_fallback": True}
    assert config.options_for(WARM, "dev") == {"min_warm_replicas": 0, "require_on_demand_fallback": True}
    assert config.options_for(WARM, None) == {"min_warm_replicas": 0, "require_on_demand_fallback": True}
    assert config.severity(WARM, "prod") == Severity.WARNING
    assert config.severity(WARM, "dev") == Severity.ERROR
    assert (config.fail_level, config.kubernetes_version) == (Severity.ERROR, "1.33")
    assert config.build_options == (
        "--load-restrictor", "LoadRestrictionsRootOnly", "--helm-kube-version=1.33"
    )


def test_environment_of_a_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG), REGISTRY, "gate.yaml")

    assert config.environment_of("overlays/prod") == "prod"
    assert config.environment_of("clusters/prod-eu") == "prod"
    assert config.environment_of("apps/dev") == "dev"
    assert config.environment_of("clusters/staging") == "staging"  # last path segment
    assert GateConfig().environment_of("overlays/prod") == "prod"


def test_the_repository_config_requires_warm_replicas_and_on_demand_fallback_in_prod() -> None:
    registry = default_registry()
    config = load_config(Path(__file__).parents[2] / "gate.yaml", registry, "gate.yaml")

    warm, fallback = registry.get("scaling/min-warm-replicas"), registry.get("spot/on-demand-fallback")
    assert config.options_for(warm, "prod")["min_warm_replicas"] >= 1
    assert config.options_for(fallback, "prod")["require_on_demand_fallback"] is True
    assert config.options_for(warm, "dev")["min_warm_replicas"] == 0
    assert config.options_for(fallback, "dev")["require_on_demand_fallback"] is False
    assert [config.environment_of(d) for d in ("overlays/prod", "apps/prod", "clusters/prod")] == ["prod"] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  scaling/no-such-rule: {x: 1}\n",
         "gate.yaml: rules.scaling/no-such-rule: unknown rule id (see `gate rules`)"),
        ("environments:\n  prod:\n    rules:\n      scaling/fixture-warm-replicas: {min_warm: 1}\n",
         "gate.yaml: environments.prod.rules.scaling/fixture-warm-replicas.min_warm: unknown option of "
         "scaling/fixture-warm-replicas (options: min_warm_replicas, require_on_demand_fallback)"),
        ("rules:\n  scaling/fixture-warm-replicas: {min_warm_replicas: many}\n",
         "gate.yaml: rules.scaling/fixture-warm-replicas.min_warm_replicas: expected int, got 'many'"),
        ("rules:\n  scaling/fixture-warm-replicas: {severity: fatal}\n",
         "gate.yaml: rules.scaling/fixture-warm-replicas.severity: unknown severity 'fatal' "
         "(choose from info, warning, error)"),
        ("rules:\n  scaling/fixture-warm-replicas: {enabled: maybe}\n",
         "gate.yaml: rules.scaling/fixture-warm-replicas.enabled: must be true or false"),
        ("fail_level: fatal\n",
         "gate.yaml: fail_level: unknown severity 'fatal' (choose from info, warning, error)"),
        ("environment:\n  prod: {}\n", "gate.yaml: environment: unknown key"),
        ("environments:\n  prod:\n    path: [overlays/prod]\n",
         "gate.yaml: environments.prod.path: unknown key"),
        ("kustomize:\n  timeout_seconds: -1\n",
         "gate.yaml: kustomize.timeout_seconds: Input should be greater than 0"),
        ("kustomize:\n  timeout_seconds: 600\n",
         "gate.yaml: kustomize.timeout_seconds: Input should be less than or equal to 120 "
         "(the config file may lower a limit, not raise it)"),
        ("limits:\n  max_alias_nodes: 100000000\n",
         "gate.yaml: limits.max_alias_nodes: Input should be less than or equal to 100000 "
         "(the config file may lower a limit, not raise it)"),
        ("kustomize:\n  memory_limit_mib: 65536\n",
         "gate.yaml: kustomize.memory_limit_mib: Input should be less than or equal to 2048 "
         "(the config file may lower a limit, not raise it)"),
        ("- a\n- b\n", "gate.yaml:1: expected a mapping at the top level, found a list"),
        ("a: 1\na: 2\n", "gate.yaml:2: duplicate key 'a'"),
        ("a: [\n", "gate.yaml:2: invalid YAML: did not find expected node content"),
        ("external:\n  - {kind: Service, name: scaler, namespace: keda}\n",
         "gate.yaml: external.0.created_by: Field required"),
        ("external:\n  - {kind: Service, name: s, created_by: c, ports: [{port: 70000}]}\n",
         "gate.yaml: external.0.ports.0.port: Input should be less than 65536"),
        ("environments:\n  prod:\n    external: [{kind: Service, name: s, created_by: c, port: 80}]\n",
         "gate.yaml: environments.prod.external.0.port: unknown key"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), REGISTRY, "gate.yaml")
    assert str(caught.value) == message


def test_external_objects_are_global_then_per_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
external:
  - {kind: Service, namespace: keda, name: scaler, created_by: the add-on chart,
     ports: [{name: otlp, port: 4317, protocol: otlp-grpc}]}
environments:
  prod:
    external:
      - {kind: ServiceAccount, namespace: inference, name: puller, created_by: the registry chart}
"""), REGISTRY, "gate.yaml")

    assert [(e.kind, e.namespace, e.name) for e in config.external_for("prod")] == [
        ("Service", "keda", "scaler"), ("ServiceAccount", "inference", "puller")]
    assert [(e.kind, e.name) for e in config.external_for("dev")] == [("Service", "scaler")]
    service = config.external_for("dev")[0].as_resource("overlays/dev")
    assert (service.kind, service.namespace, service.name, service.origin) == (
        "Service", "keda", "scaler", "gate.yaml")
    assert service.get("spec", "ports") == [{"name": "otlp", "port": 4317, "appProtocol": "otlp-grpc"}]
    assert service.annotations == {"gate.eks-llm-inference.io/created-by": "the add-on chart"}


def test_config_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "rules:\n  gitops/suppression-expired: {days: 3}\n")

    code = main(["validate", str(TREE / "overlays" / "dev"), "--repo-root", str(TREE), "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err == (
        f"gate: {path}: rules.gitops/suppression-expired.days: unknown option of gitops/suppression-expired "
        "(options: none)\n"
    )


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(TREE / "overlays" / "dev"), "--repo-root", str(TREE),
                 "--config", str(tmp_path / "nope.yaml")])

    assert code == 2
    assert capsys.readouterr().err == f"gate: {tmp_path / 'nope.yaml'}: no such config file\n"
