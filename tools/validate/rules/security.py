"""security rules: container hardening, credentials, node metadata and network exposure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate.model import Context, Resource, Rule, Severity, Violation, as_int, mapping, sequence
from tools.validate.workloads import PodTemplate, any_selecting, pod_templates, vllm_workloads

UNPINNED_TAGS = ("latest", "main", "master", "nightly", "dev")
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")


def _all_containers(template: PodTemplate) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for index, container in enumerate(sequence(template.spec.get(field))):
            if isinstance(container, dict):
                yield field, index, container


def _image_tag(image: str) -> str | None:
    if "@" in image:
        return "@digest"
    last = image.rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


def check_image_pinned(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            image = str(container.get("image", ""))
            tag = _image_tag(image)
            if tag is None or tag in UNPINNED_TAGS:
                yield Violation(
                    template.resource,
                    template.at(field, index, "image"),
                    f"image {image!r} is not pinned to a version or digest: every node may run a different "
                    "build",
                )


def _container_security(
    template: PodTemplate, field: str, index: int, container: Mapping[str, Any], key: str
) -> tuple[Any, str]:
    """The effective securityContext `key` (container over pod) and the path to report."""
    container_ctx = mapping(container.get("securityContext"))
    pod_ctx = mapping(template.spec.get("securityContext"))
    if key in container_ctx:
        return container_ctx[key], template.at(field, index, "securityContext", key)
    if key in pod_ctx:
        return pod_ctx[key], template.at("securityContext", key)
    if "securityContext" in container:
        return None, template.at(field, index, "securityContext")
    return None, template.at(field, index)


def check_run_as_non_root(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            value, path = _container_security(template, field, index, container, "runAsNonRoot")
            if value is not True:
                yield Violation(
                    template.resource, path, f"container {container.get('name')!r} may run as root"
                )


def check_no_privilege_escalation(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            sc = mapping(container.get("securityContext"))
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged") is True:
                key = "privileged" if sc.get("privileged") is True else "allowPrivilegeEscalation"
                path = (
                    template.at(field, index, "securityContext", key)
                    if key in sc
                    else template.at(field, index, "securityContext")
                    if "securityContext" in container
                    else template.at(field, index)
                )
                yield Violation(
                    template.resource,
                    path,
                    f"container {container.get('name')!r} may gain privileges (set allowPrivilegeEscalation: "
                    "false, not privileged)",
                )


def check_drop_all_capabilities(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            sc = mapping(container.get("securityContext"))
            caps = mapping(sc.get("capabilities"))
            if "ALL" not in [str(c).upper() for c in sequence(caps.get("drop"))]:
                if "drop" in caps:
                    path = template.at(field, index, "securityContext", "capabilities", "drop")
                elif "capabilities" in sc:
                    path = template.at(field, index, "securityContext", "capabilities")
                elif "securityContext" in container:
                    path = template.at(field, index, "securityContext")
                else:
                    path = template.at(field, index)
                yield Violation(
                    template.resource,
                    path,
                    f"container {container.get('name')!r} does not drop ALL capabilities",
                )


def check_no_static_credentials(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    forbid_hf = bool(options["forbid_hf_token"])
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            for j, env in enumerate(sequence(container.get("env"))):
                if not isinstance(env, dict):
                    continue
                name = str(env.get("name", ""))
                path = template.at(field, index, "env", j)
                if name in CREDENTIAL_VARS:
                    yield Violation(
                        template.resource,
                        path,
                        f"{name} puts static AWS credentials in the pod; use EKS Pod Identity (a "
                        "ServiceAccount "
                        "association) instead",
                    )
                elif name in HF_TOKEN_VARS and ("value" in env or forbid_hf):
                    how = "as a literal value" if "value" in env else "in this environment"
                    yield Violation(
                        template.resource,
                        path,
                        f"{name} {how}: the model is streamed from S3, no Hugging Face token belongs here",
                    )


def check_imds(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for node_class in ctx.of_kind("EC2NodeClass"):
        options_ = mapping(node_class.get("spec", "metadataOptions"))
        tokens = options_.get("httpTokens")
        if tokens is not None and tokens != "required":
            yield Violation(
                node_class,
                ("spec", "metadataOptions", "httpTokens"),
                f"httpTokens {tokens!r}: IMDSv1 lets any SSRF read the node role's credentials",
            )
        hops = as_int(options_.get("httpPutResponseHopLimit"))
        if hops is not None and hops > 1:
            yield Violation(
                node_class,
                ("spec", "metadataOptions", "httpPutResponseHopLimit"),
                f"hop limit {hops} lets pods reach IMDS and take the node's IAM role (use 1; pods use Pod "
                "Identity)",
            )


def _restricts_ingress(policy: Resource) -> bool:
    return "Ingress" in (sequence(policy.get("spec", "policyTypes")) or ["Ingress"])


def check_network_policy(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    seen = set()
    for template, _ in vllm_workloads(ctx):
        key = (template.resource.kind, template.resource.namespace, template.resource.name)
        if key in seen:
            continue
        seen.add(key)
        if not any_selecting(ctx, "NetworkPolicy", template, _restricts_ingress):
            yield Violation(
                template.resource,
                (*template.metadata_path, "labels"),
                "no NetworkPolicy restricts ingress to the vLLM pods: anything in the cluster can call the "
                "model directly, around the gateway",
            )


def check_seccomp(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            profile, path = _container_security(template, field, index, container, "seccompProfile")
            kind = mapping(profile).get("type") if isinstance(profile, dict) else None
            if kind not in ("RuntimeDefault", "Localhost"):
                yield Violation(
                    template.resource,
                    (*path, "type") if kind is not None else path,
                    f"container {container.get('name')!r} runs without a seccomp profile "
                    f"({kind or 'unset'}): every syscall of the kernel is open to it",
                )


def check_read_only_root(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            sc = mapping(container.get("securityContext"))
            if sc.get("readOnlyRootFilesystem") is not True:
                if "readOnlyRootFilesystem" in sc:
                    path = template.at(field, index, "securityContext", "readOnlyRootFilesystem")
                elif "securityContext" in container:
                    path = template.at(field, index, "securityContext")
                else:
                    path = template.at(field, index)
                yield Violation(
                    template.resource,
                    path,
                    f"container {container.get('name')!r} can write its root filesystem; mount emptyDirs "
                    "for the caches it needs",
                )


ALB_CERTIFICATE = "alb.ingress.kubernetes.io/certificate-arn"


def check_ingress_tls(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for ingress in ctx.of_kind("Ingress"):
        if ingress.get("spec", "tls") or ingress.annotations.get(ALB_CERTIFICATE):
            continue
        yield Violation(
            ingress,
            ("spec",) if ingress.get("spec") is not None else (),
            "Ingress terminates no TLS (no spec.tls, no ALB certificate-arn): prompts and answers cross the "
            "internet in clear text",
        )


RULES: list[Rule] = [
    Rule(
        id="security/image-pinned",
        family="security",
        title="Container images are pinned to a version or digest",
        severity=Severity.ERROR,
        why="`latest` or untagged images change under the same manifest; rollbacks and audits lose meaning.",
        remediation="Pin a version tag (vllm/vllm-openai:v0.11.0) or a digest.",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_image_pinned,
        example="image: vllm/vllm-openai:latest",
        use_instead="image: vllm/vllm-openai:v0.11.0",
    ),
    Rule(
        id="security/run-as-non-root",
        family="security",
        title="Containers run as non-root",
        severity=Severity.ERROR,
        why="A root container turns any escape or writable host mount into root on a GPU node.",
        remediation="Set securityContext.runAsNonRoot: true (pod or container) with a non-zero runAsUser.",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_run_as_non_root,
        example="securityContext: {}",
        use_instead="securityContext:\n  runAsNonRoot: true\n  runAsUser: 1000",
    ),
    Rule(
        id="security/no-privilege-escalation",
        family="security",
        title="Containers cannot escalate privileges",
        severity=Severity.ERROR,
        why=(
            "setuid binaries and privileged mode let a compromised process gain capabilities it was not "
            "given."
        ),
        remediation="Set securityContext.allowPrivilegeEscalation: false on every container.",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_no_privilege_escalation,
        example="securityContext:\n  runAsNonRoot: true",
        use_instead="securityContext:\n  runAsNonRoot: true\n  allowPrivilegeEscalation: false",
    ),
    Rule(
        id="security/drop-all-capabilities",
        family="security",
        title="Containers drop ALL Linux capabilities",
        severity=Severity.WARNING,
        why=(
            "The default capability set (NET_RAW, CHOWN, ...) is more than an inference server or gateway "
            "needs."
        ),
        remediation="Set securityContext.capabilities.drop: [ALL].",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_drop_all_capabilities,
        example="securityContext:\n  allowPrivilegeEscalation: false",
        use_instead="securityContext:\n  allowPrivilegeEscalation: false\n  capabilities:\n    drop: [ALL]",
    ),
    Rule(
        id="security/no-static-credentials",
        family="security",
        title="No static AWS keys or Hugging Face tokens in container env",
        severity=Severity.ERROR,
        why=(
            "Pods reach S3 through EKS Pod Identity; static keys in env leak through describe, logs and Git. "
            "The model is streamed from S3, so production needs no Hugging Face token at all."
        ),
        remediation="Remove the variable; grant access by a Pod Identity association on the ServiceAccount.",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_no_static_credentials,
        options={"forbid_hf_token": False},
        example="env:\n- name: AWS_SECRET_ACCESS_KEY\n  value: wJalr...",
        use_instead="serviceAccountName: vllm  # Pod Identity association grants S3 read",
    ),
    Rule(
        id="security/imds-hardened",
        family="security",
        title="EC2NodeClass requires IMDSv2 with hop limit 1",
        severity=Severity.ERROR,
        why=(
            "With IMDSv1 or a hop limit above 1, pods can read the node's instance-profile credentials and "
            "act as the node (ECR, EC2, EKS permissions)."
        ),
        remediation="metadataOptions: {httpTokens: required, httpPutResponseHopLimit: 1} (the v1 defaults).",
        scope=("EC2NodeClass",),
        check=check_imds,
        example="metadataOptions:\n  httpTokens: optional\n  httpPutResponseHopLimit: 2",
        use_instead="metadataOptions:\n  httpTokens: required\n  httpPutResponseHopLimit: 1",
    ),
    Rule(
        id="security/network-policy-covers-vllm",
        family="security",
        title="A NetworkPolicy restricts ingress to the vLLM pods",
        severity=Severity.WARNING,
        why=(
            "vLLM has no authentication of its own; without a NetworkPolicy any pod can call it directly, "
            "bypassing the gateway's limits and records."
        ),
        remediation=(
            "Add a NetworkPolicy selecting the vLLM pods that admits only the gateway and the metrics "
            "scraper."
        ),
        scope=("Deployment", "NetworkPolicy"),
        check=check_network_policy,
        example="# no NetworkPolicy selects app: vllm",
        use_instead=(
            "kind: NetworkPolicy\nspec:\n  podSelector: {matchLabels: {app: vllm}}\n  policyTypes: "
            "[Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: gateway}}}]"
        ),
    ),
    Rule(
        id="security/seccomp-runtime-default",
        family="security",
        title="Containers run under the RuntimeDefault seccomp profile",
        severity=Severity.WARNING,
        why="Without a seccomp profile a compromised process can use every syscall, including rarely "
        "audited ones that lead to kernel escapes.",
        remediation="Set securityContext.seccompProfile.type: RuntimeDefault on the pod (or each container).",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_seccomp,
        example="securityContext:\n  runAsNonRoot: true",
        use_instead="securityContext:\n  runAsNonRoot: true\n  seccompProfile:\n    type: RuntimeDefault",
    ),
    Rule(
        id="security/read-only-root-filesystem",
        family="security",
        title="Containers mount their root filesystem read-only",
        severity=Severity.WARNING,
        why="A writable root filesystem lets an intruder drop tools and change binaries; vLLM and the "
        "gateway only need emptyDir caches.",
        remediation="Set readOnlyRootFilesystem: true and mount emptyDirs for /tmp and the model caches.",
        scope=("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"),
        check=check_read_only_root,
        example="securityContext:\n  allowPrivilegeEscalation: false",
        use_instead=("securityContext:\n  allowPrivilegeEscalation: false\n  readOnlyRootFilesystem: true"),
    ),
    Rule(
        id="security/ingress-tls",
        family="security",
        title="Ingresses terminate TLS",
        severity=Severity.ERROR,
        why="The audience's prompts, survey answers and the model's replies cross the internet; TLS is "
        "terminated at the ALB (spec.tls or an ACM certificate-arn annotation).",
        remediation="Add spec.tls, or alb.ingress.kubernetes.io/certificate-arn with an HTTPS listener.",
        scope=("Ingress",),
        check=check_ingress_tls,
        example="kind: Ingress\nspec:\n  rules: [{host: llm.example.com}]",
        use_instead=(
            "kind: Ingress\nmetadata:\n  annotations:\n"
            "    alb.ingress.kubernetes.io/certificate-arn: arn:aws:acm:...\n"
            "spec:\n  tls: [{hosts: [llm.example.com]}]"
        ),
    ),
]
