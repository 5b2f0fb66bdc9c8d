"""Reports built by hand: every shape of finding the formats must render."""

from __future__ import annotations

from tools.validate.model import Finding, Report, Resource, Rule, Severity, SourceLocation, Suppression
from tools.validate.rules.base import Registry


def _no_violations(context, options):  # type: ignore[no-untyped-def]
    return []


RULES = [
    Rule(
        id="scaling/keda-max-within-gpu-limit",
        family="scaling",
        title="KEDA maxReplicaCount fits the NodePool GPU limit",
        severity=Severity.ERROR,
        why="Replicas beyond the GPUs Karpenter may launch stay Pending and queue requests.",
        remediation="Lower maxReplicaCount or raise the NodePool's nvidia.com/gpu limit.",
        scope=("ScaledObject", "NodePool"),
        check=_no_violations,
    ),
    Rule(
        id="security/run-as-non-root",
        family="security",
        title="Containers run as a non-root user",
        severity=Severity.WARNING,
        why="A root container that escapes owns the GPU node.",
        remediation="Set securityContext.runAsNonRoot: true and a numeric runAsUser.",
        scope=("Deployment",),
        check=_no_violations,
    ),
    Rule(
        id="gpu/awq-on-ampere",
        family="gpu",
        title="AWQ models run on Ampere or newer",
        severity=Severity.INFO,
        why="AWQ kernels need compute capability 8.0.",
        remediation="Allow only g5/g6/p4 instance families in the NodePool.",
        scope=("Deployment", "NodePool"),
        check=_no_violations,
    ),
    Rule(
        id="spot/pdb-present",
        family="spot",
        title="Spot workloads have a PodDisruptionBudget",
        severity=Severity.WARNING,
        why="Without a PDB a Spot interruption can drain every replica at once.",
        remediation="Add a PodDisruptionBudget with maxUnavailable: 1.",
        scope=("Deployment",),
        check=_no_violations,
    ),
]


def resource(kind: str, name: str, namespace: str | None, overlay: str, origin: str | None) -> Resource:
    api_version = {
        "ScaledObject": "keda.sh/v1alpha1",
        "Deployment": "apps/v1",
        "NodePool": "karpenter.sh/v1",
    }[kind]
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return Resource(
        doc={"apiVersion": api_version, "kind": kind, "metadata": metadata}, overlay=overlay, origin=origin
    )


def build_findings() -> list[Finding]:
    keda = resource("ScaledObject", "vllm", "llm", "prod", "base/keda/scaledobject.yaml")
    vllm_prod = resource("Deployment", "vllm", "llm", "prod", "base/vllm/deployment.yaml")
    vllm_dev = resource("Deployment", "vllm", "llm", "dev", "base/vllm/deployment.yaml")
    gateway_dev = resource("Deployment", "gateway", "llm", "dev", "base/gateway/deployment.yaml")
    return [
        # Listed out of order on purpose: every format sorts.
        Finding(
            rule_id="gpu/awq-on-ampere",
            severity=Severity.INFO,
            message="NodePool gpu may launch g4dn (Turing); AWQ needs Ampere.",
            overlay="dev",
            resource=vllm_dev,
            path=("spec", "template", "spec", "containers", 0, "args"),
            location=None,
        ),
        Finding(
            rule_id="security/run-as-non-root",
            severity=Severity.WARNING,
            message="container `vllm` runs as uid 0 | 100% of pods,\nset runAsNonRoot: true",
            overlay="prod",
            resource=vllm_prod,
            path=("spec", "template", "spec", "containers", 0, "securityContext"),
            remediation="Set runAsUser: 1000 in overlays/prod/patch-security.yaml.",
            location=SourceLocation("base/vllm/deployment.yaml", 41),
        ),
        Finding(
            rule_id="scaling/keda-max-within-gpu-limit",
            severity=Severity.ERROR,
            message="KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs.",
            overlay="prod",
            resource=keda,
            path=("spec", "maxReplicaCount"),
            location=SourceLocation("overlays/prod/patch-keda.yaml", 12),
        ),
        Finding(
            rule_id="input/duplicate-key",
            severity=Severity.ERROR,
            message="duplicate key 'resources'",
            overlay="prod",
            resource=None,
            remediation="Keep one 'resources' list.",
            location=SourceLocation("overlays/prod/kustomization.yaml", 7),
        ),
        Finding(
            rule_id="security/run-as-non-root",
            severity=Severity.WARNING,
            message="container gateway runs as uid 0",
            overlay="dev",
            resource=gateway_dev,
            path=("spec", "template", "spec", "containers", 0, "securityContext"),
            location=SourceLocation("base/gateway/deployment.yaml", 30),
            suppression=Suppression(
                rule_id="security/run-as-non-root",
                reason="binds port 80 until the Service maps 8080, PLAT-12",
                expires="2026-12-31",
            ),
        ),
    ]


def make_report(findings: list[Finding], *, overlays: list[str] | None = None, resources: int = 14) -> Report:
    return Report(
        findings=findings,
        overlays=["dev", "prod"] if overlays is None else overlays,
        resource_count=resources,
        rules=Registry(RULES),
        fail_level=Severity.WARNING,
    )

