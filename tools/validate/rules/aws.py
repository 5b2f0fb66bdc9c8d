"""aws rules: the AWS side of an environment as edges of the cluster's model.

Pods that use AWS -> their ServiceAccount -> a PodIdentityAssociation -> an IAM Role that trusts EKS Pod
Identity -> the policies that name only the environment's buckets; images -> the environment's ECR
registry and its pull-through cache rules; a ReadWriteMany claim -> a storage class that can mount it.

The environment's own values (account, region, cluster, buckets) are read by the engine from the
overlay's local-config ConfigMap `environment` (tools/validate/environment_values.py); where they are
missing (a rendered file was given) the rules that need them say so as a finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from tools.validate.environment_values import EXTRAS_KEY
from tools.validate.model import (
    Context,
    Resource,
    Rule,
    Severity,
    Violation,
    as_int,
    mapping,
    mappings,
    sequence,
)
from tools.validate.workloads import PodTemplate, canonical, pod_templates, templates_with_labels

IAM_GROUP = "iam.services.k8s.aws"
EKS_GROUP = "eks.services.k8s.aws"
ECR_GROUP = "ecr.services.k8s.aws"
CLOUDFRONT_GROUP = "cloudfront.services.k8s.aws"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
POD_IDENTITY_ACTIONS = ("sts:AssumeRole", "sts:TagSession")
AWS_ENV_NAMES = ("AWS_REGION", "AWS_DEFAULT_REGION")
S3_ARN = "arn:aws:s3:::"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
MISSING_VALUES = (
    "the environment values (the local-config ConfigMap `environment` of overlays/<env>/environment) "
    "were not found for this overlay"
)


def environment_values(ctx: Context) -> Mapping[str, str] | None:
    values = ctx.extras.get(EXTRAS_KEY)
    return values if isinstance(values, Mapping) else None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in sequence(value)]


def _all_containers(template: PodTemplate) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for index, container in enumerate(sequence(template.spec.get(field))):
            if isinstance(container, dict):
                yield field, index, container


def _config_map_data(ctx: Context, namespace: str, name: str) -> Mapping[str, Any]:
    def index() -> dict[tuple[str, str], Mapping[str, Any]]:
        return {(r.namespace, r.name): mapping(r.get("data")) for r in ctx.of_kind("ConfigMap")}

    return ctx.memo("aws.config_maps", index).get((namespace, name), {})


def _aws_setting(name: str, value: Any) -> str | None:
    """Why an environment variable says its container calls AWS, None when it does not."""
    text = str(value) if value is not None else ""
    if name in AWS_ENV_NAMES:
        return f"{name} is set"
    if name.endswith("_S3_BUCKET"):
        return f"{name} names a bucket"
    if text.startswith("s3://"):
        return f"{name} is {text}"
    return None


def aws_use(ctx: Context, template: PodTemplate) -> str | None:
    """Why the pods of `template` call AWS APIs (an s3:// argument, an AWS region or an S3 bucket
    setting, directly or through a ConfigMap they load), None when nothing says they do."""
    namespace = template.resource.namespace
    for _, _, container in _all_containers(template):
        name = container.get("name")
        for argument in [*_strings(container.get("command")), *_strings(container.get("args"))]:
            if argument.startswith("s3://"):
                return f"container {name!r} reads {argument}"
        for env in sequence(container.get("env")):
            env = mapping(env)
            reason = _aws_setting(str(env.get("name", "")), env.get("value"))
            if reason:
                return f"container {name!r}: {reason}"
        for source in sequence(container.get("envFrom")):
            config_map = str(mapping(mapping(source).get("configMapRef")).get("name") or "")
            if not config_map:
                continue
            for key, value in _config_map_data(ctx, namespace, config_map).items():
                reason = _aws_setting(str(key), value)
                if reason:
                    return f"container {name!r}: ConfigMap {config_map} {reason}"
    return None


def _s3_uri_prefixes(ctx: Context) -> dict[str, set[str]]:
    """bucket -> the key prefixes the overlay's pods name in s3:// URIs (arguments and env values)."""
    def build() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for template in pod_templates(ctx):
            for _, _, container in _all_containers(template):
                values = [*_strings(container.get("command")), *_strings(container.get("args"))]
                values += [str(mapping(env).get("value", "")) for env in sequence(container.get("env"))]
                for value in values:
                    if value.startswith("s3://"):
                        bucket, _, key = value[len("s3://"):].partition("/")
                        found.setdefault(bucket, set()).add(key.strip("/"))
        return found

    return ctx.memo("aws.s3_uri_prefixes", build)


def _statements(document: Any) -> list[Mapping[str, Any]]:
    statements = mapping(document).get("Statement")
    if isinstance(statements, dict):
        return [mapping(statements)]
    return [mapping(statement) for statement in sequence(statements)]


def _trusts_pod_identity(role: Resource) -> bool:
    try:
        document = json.loads(str(role.get("spec", "assumeRolePolicyDocument", default="")))
    except ValueError:
        return False
    for statement in _statements(document):
        principals = _strings(mapping(statement.get("Principal")).get("Service"))
        actions = set(_strings(statement.get("Action")))
        allows = statement.get("Effect") == "Allow" and POD_IDENTITY_PRINCIPAL in principals
        if allows and all(action in actions for action in POD_IDENTITY_ACTIONS):
            return True
    return False


# ------------------------------------------------------------------------------------------ rules


def check_pod_identity(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    values = environment_values(ctx)
    roles = {(r.namespace, r.name): r for r in ctx.of_kind("Role") if r.group == IAM_GROUP}
    roles_by_aws_name = {str(r.get("spec", "name")): r for r in roles.values()}
    associations = [r for r in ctx.of_kind("PodIdentityAssociation") if r.group == EKS_GROUP]
    bound = {(str(a.get("spec", "namespace")), str(a.get("spec", "serviceAccount"))) for a in associations}
    for template in pod_templates(ctx):
        reason = aws_use(ctx, template)
        if reason is None:
            continue
        namespace = template.resource.namespace
        account = str(template.spec.get("serviceAccountName") or "default")
        if (namespace, account) in bound:
            continue
        path = template.at("serviceAccountName") if "serviceAccountName" in template.spec else template.at()
        yield Violation(
            template.resource,
            path,
            f"its pods call AWS ({reason}) as ServiceAccount {namespace}/{account}, which no "
            "PodIdentityAssociation of this environment binds: they get no credentials",
        )
    untrusting: set[tuple[str, str]] = set()
    for association in associations:
        spec = mapping(association.get("spec"))
        if values is None:
            yield Violation(association, "spec", f"{MISSING_VALUES}: its cluster cannot be checked")
        elif "clusterName" in spec and str(spec["clusterName"]) != values.get("clusterName"):
            yield Violation(
                association,
                "spec.clusterName",
                f"clusterName {spec['clusterName']!r} is not this environment's cluster "
                f"{values.get('clusterName')!r}: the association is made in another cluster",
            )
        role: Resource | None = None
        reference = mapping(mapping(spec.get("roleRef")).get("from"))
        if reference:
            role_namespace = str(reference.get("namespace") or association.namespace)
            role = roles.get((role_namespace, str(reference.get("name"))))
            if role is None:
                yield Violation(
                    association,
                    "spec.roleRef.from.name",
                    f"Role {role_namespace}/{reference.get('name')} is not an IAM Role ({IAM_GROUP}) of "
                    "this environment: the association never becomes ready",
                )
        elif "roleARN" in spec:
            arn = str(spec["roleARN"])
            role = roles_by_aws_name.get(arn.rsplit("/", 1)[-1])
            arn_account = arn.split(":")[4] if arn.count(":") >= 5 else ""
            if role is None:
                yield Violation(
                    association,
                    "spec.roleARN",
                    f"{arn} names a role that no IAM Role of this environment creates: its permissions are "
                    "not in Git",
                )
            elif values is not None and arn_account != values.get("accountId"):
                yield Violation(
                    association,
                    "spec.roleARN",
                    f"{arn} is in account {arn_account!r}, not this environment's "
                    f"{values.get('accountId')!r}",
                )
        else:
            yield Violation(association, "spec", "the association names no role (roleRef or roleARN)")
        if role is not None and not _trusts_pod_identity(role):
            key = (role.namespace, role.name)
            if key not in untrusting:
                untrusting.add(key)
                yield Violation(
                    role,
                    "spec.assumeRolePolicyDocument",
                    f"the role does not let {POD_IDENTITY_PRINCIPAL} assume it with sts:AssumeRole and "
                    "sts:TagSession: the Pod Identity association cannot hand it to pods",
                )


def _policy_documents(ctx: Context) -> Iterator[tuple[Resource, str, Any]]:
    for policy in ctx.of_kind("Policy"):
        if policy.group == IAM_GROUP:
            yield policy, "spec.policyDocument", policy.get("spec", "policyDocument")
    for role in ctx.of_kind("Role"):
        if role.group == IAM_GROUP:
            for name, document in mapping(role.get("spec", "inlinePolicies")).items():
                yield role, f"spec.inlinePolicies.{name}", document


def _bucket_findings(
    resource: Resource, path: str, label: str, arn: str, buckets: set[str] | None,
    prefixes: dict[str, set[str]],
) -> Iterator[Violation]:
    bucket, _, key = arn[len(S3_ARN):].partition("/")
    if "*" in bucket or "?" in bucket:
        yield Violation(resource, path, f"{label}: {arn} matches any bucket: name the environment's bucket")
    elif buckets is not None and bucket not in buckets:
        yield Violation(
            resource,
            path,
            f"{label}: bucket {bucket!r} is not one of this environment's buckets "
            f"({', '.join(sorted(buckets))})",
        )
    elif key and prefixes.get(bucket):
        allowed = sorted(p for p in prefixes[bucket] if p)
        within = key.rstrip("*").rstrip("/")
        inside = not allowed or any(within == p or key.startswith(p + "/") for p in allowed)
        if not inside:
            yield Violation(
                resource,
                path,
                f"{label}: {arn} reaches beyond the prefixes the pods read ({', '.join(allowed)})",
            )


def check_least_privilege(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    values = environment_values(ctx)
    buckets = {v for k, v in values.items() if k.endswith("Bucket")} if values is not None else None
    allowed = {str(action).lower() for action in options["allowed_actions"]}
    prefixes = _s3_uri_prefixes(ctx)
    for resource, path, text in _policy_documents(ctx):
        try:
            document = json.loads(str(text))
        except ValueError as error:
            yield Violation(resource, path, f"the policy document is not JSON ({error})")
            continue
        resources = [arn for s in _statements(document) for arn in _strings(s.get("Resource"))]
        if values is None and any(arn.startswith(S3_ARN) for arn in resources):
            yield Violation(resource, path, f"{MISSING_VALUES}: its buckets cannot be checked")
        for number, statement in enumerate(_statements(document), start=1):
            if statement.get("Effect") != "Allow":
                continue
            label = f"statement {statement.get('Sid') or number}"
            for negated in ("NotAction", "NotResource"):
                if negated in statement:
                    yield Violation(resource, path, f"{label}: {negated} allows everything it does not name")
            for action in _strings(statement.get("Action")):
                if "*" in action or "?" in action:
                    yield Violation(resource, path, f"{label}: action {action!r} is a wildcard")
                elif action.lower() not in allowed:
                    yield Violation(
                        resource, path, f"{label}: action {action!r} is not one the components need "
                        f"({', '.join(options['allowed_actions'])})"
                    )
            for arn in _strings(statement.get("Resource")):
                if arn == "*" or arn.endswith(":*"):
                    yield Violation(resource, path, f"{label}: resource {arn!r} is every resource")
                elif arn.startswith(S3_ARN):
                    yield from _bucket_findings(resource, path, label, arn, buckets, prefixes)


def _images(ctx: Context) -> Iterator[tuple[Resource, str, str]]:
    for template in pod_templates(ctx):
        for field, index, container in _all_containers(template):
            yield template.resource, template.at(field, index, "image"), str(container.get("image", ""))
    for collector in ctx.of_kind("OpenTelemetryCollector"):
        if collector.get("spec", "image") is not None:
            yield collector, "spec.image", str(collector.get("spec", "image"))


def check_image_registry(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    values = environment_values(ctx)
    account, region = (values or {}).get("accountId"), (values or {}).get("awsRegion")
    cache_prefixes = {
        str(rule.get("spec", "ecrRepositoryPrefix")).strip("/")
        for rule in ctx.of_kind("PullThroughCacheRule")
        if rule.group == ECR_GROUP
    }
    upstream_prefixes = {str(p) for p in options["upstream_prefixes"]}
    for resource, path, image in _images(ctx):
        if not account or not region:
            yield Violation(
                resource, path, f"{MISSING_VALUES} (accountId, awsRegion): the registry of {image!r} "
                "cannot be checked"
            )
            continue
        registry = f"{account}.dkr.ecr.{region}.amazonaws.com/"
        if not image.startswith(registry):
            host = image.split("/", 1)[0] if "." in image.split("/", 1)[0] else "Docker Hub"
            yield Violation(
                resource,
                path,
                f"image {image!r} comes from {host}, not from this environment's registry {registry}: "
                "every new node pulls it through the NAT, under the upstream's rate limits",
            )
            continue
        first = image[len(registry):].split("/", 1)[0]
        if first in upstream_prefixes and first not in cache_prefixes:
            yield Violation(
                resource,
                path,
                f"image {image!r} is under {first}/, but no PullThroughCacheRule of this environment has "
                f"ecrRepositoryPrefix {first!r}: the pull fails",
            )


def check_read_write_many(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    provisioners = {str(p) for p in options["read_write_many_provisioners"]}
    classes = {r.name: r for r in ctx.of_kind("StorageClass")}
    for claim in ctx.of_kind("PersistentVolumeClaim"):
        if "ReadWriteMany" not in _strings(claim.get("spec", "accessModes")):
            continue
        name = claim.get("spec", "storageClassName")
        if not name:
            yield Violation(
                claim,
                "spec.accessModes",
                "a ReadWriteMany claim without storageClassName gets the cluster's default class (EBS on "
                "EKS), which mounts on one node only: pods on other nodes never start",
            )
            continue
        storage_class = classes.get(str(name))
        if storage_class is None:
            yield Violation(
                claim,
                "spec.storageClassName",
                f"StorageClass {name} is not in this environment's manifests: whether it can mount "
                "ReadWriteMany cannot be checked",
            )
            continue
        provisioner = str(storage_class.get("provisioner", default=""))
        if provisioner not in provisioners:
            yield Violation(
                claim,
                "spec.storageClassName",
                f"StorageClass {name} provisions with {provisioner!r}, which cannot mount a volume on "
                f"several nodes at once (ReadWriteMany: {', '.join(sorted(provisioners))})",
            )


def _selector(service: Resource) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping(service.get("spec", "selector")).items()}


def _config_maps(ctx: Context, namespace: str, name: str) -> list[Resource]:
    def index() -> dict[tuple[str, str], list[Resource]]:
        by_name: dict[tuple[str, str], list[Resource]] = {}
        for config_map in ctx.of_kind("ConfigMap"):
            by_name.setdefault((config_map.namespace, config_map.name), []).append(config_map)
        return by_name

    return ctx.memo("aws.config_maps_by_name", index).get((namespace, name), [])


def _hops_settings(ctx: Context, template: PodTemplate, setting: str) -> Iterator[tuple[Resource, str, Any]]:
    """Where the pods of `template` get `setting`: an env value, or a ConfigMap they load whole."""
    for index, container in template.containers():
        for position, env in enumerate(sequence(container.get("env"))):
            env = mapping(env)
            if env.get("name") == setting and "value" in env:
                where = template.at("containers", index, "env", position, "value")
                yield template.resource, where, env["value"]
        for source in sequence(container.get("envFrom")):
            name = str(mapping(mapping(source).get("configMapRef")).get("name") or "")
            for config_map in _config_maps(ctx, template.resource.namespace, name):
                data = mapping(config_map.get("data"))
                if setting in data:
                    yield config_map, f"data.{setting}", data[setting]


def check_trusted_hops(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    setting = str(options["setting"])
    fronted: dict[str, Resource] = {}
    for distribution in ctx.of_kind("Distribution"):
        if distribution.group == CLOUDFRONT_GROUP:
            aliases = mapping(distribution.get("spec", "distributionConfig", "aliases")).get("items")
            for alias in _strings(aliases):
                fronted.setdefault(alias, distribution)
    services = {(s.namespace, s.name): s for s in ctx.of_kind("Service")}
    reported: set[tuple[int, str]] = set()
    # A list of pods already read against one expected count gives nothing new against it again: each
    # setting there either equals it or was reported (overlays of many copies share one selector).
    read: set[tuple[str, str, int]] = set()
    for ingress in ctx.of_kind("Ingress"):
        for rule in mappings(ingress.get("spec", "rules")):
            host = str(rule.get("host") or "")
            cdn = fronted.get(host)
            expected = int(options["proxies_in_front_of_ingress"]) + (1 if cdn is not None else 0)
            chain = f"the load balancer of Ingress {ingress.name}" + (
                f" and CloudFront (Distribution {cdn.name}, alias {host})" if cdn is not None else ""
            )
            for path in mappings(mapping(rule.get("http")).get("paths")):
                backend = str(mapping(mapping(path.get("backend")).get("service")).get("name") or "")
                service = services.get((ingress.namespace, backend))
                if service is None:
                    continue
                selector = _selector(service)
                pods_read = (service.namespace, canonical(selector), expected)
                if pods_read in read:
                    continue
                read.add(pods_read)
                for template in templates_with_labels(ctx, service.namespace, selector):
                    for resource, where, value in _hops_settings(ctx, template, setting):
                        hops = as_int(value)
                        key = (id(resource), where)
                        if hops == expected or key in reported:
                            continue
                        reported.add(key)
                        effect = (
                            "the client address it records and rate-limits by is a proxy's"
                            if hops is not None and hops < expected
                            else "a client can forge its address with its own X-Forwarded-For"
                        )
                        yield Violation(
                            resource,
                            where,
                            f"{setting} is {value!r}, but {expected} proxies append to X-Forwarded-For in "
                            f"front of {service.name} ({chain}): {effect}",
                        )


RULES: list[Rule] = [
    Rule(
        id="aws/pod-identity-bound",
        family="aws",
        title="Pods that call AWS have a Pod Identity association to a role of their environment",
        severity=Severity.ERROR,
        why=(
            "Pods get AWS credentials only through an EKS Pod Identity association of their ServiceAccount. "
            "Without one, S3 calls fail (or fall back to the node's role); an association to a role that is "
            "not in the environment, that trusts another principal or that names another cluster never "
            "gives the pods anything."
        ),
        remediation=(
            "Add a PodIdentityAssociation (eks.services.k8s.aws) for the ServiceAccount with roleRef to an "
            "IAM Role (iam.services.k8s.aws) of the same environment that trusts pods.eks.amazonaws.com "
            "(sts:AssumeRole, sts:TagSession), clusterName from the environment values."
        ),
        scope=(*WORKLOADS, "PodIdentityAssociation", "Role"),
        check=check_pod_identity,
        example=(
            "kind: Deployment  # serviceAccountName: vllm, args: [--model, s3://models/m]\n"
            "# no PodIdentityAssociation for inference/vllm"
        ),
        use_instead=(
            "kind: PodIdentityAssociation\nspec:\n  clusterName: llm-inference-prod\n  namespace: inference\n"
            "  serviceAccount: vllm\n  roleRef: {from: {name: vllm}}"
        ),
    ),
    Rule(
        id="aws/iam-least-privilege",
        family="aws",
        title="IAM policies allow only the needed actions on the environment's buckets",
        severity=Severity.ERROR,
        why=(
            "A wildcard action or resource, or a bucket of another environment, turns one compromised pod "
            "into access to everything the account holds. The components need object reads and writes and "
            "listing in their own bucket, under the prefixes they read."
        ),
        remediation=(
            "Name each action (s3:GetObject, s3:PutObject, s3:ListBucket) and each bucket ARN from the "
            "environment values, objects under the prefix the pods read."
        ),
        scope=("Policy", "Role"),
        check=check_least_privilege,
        options={"allowed_actions": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"]},
        example='policyDocument: \'{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}\'',
        use_instead=(
            'policyDocument: \'{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",\n'
            '  "Resource": "arn:aws:s3:::models-222222222222/mistral-7b-instruct-awq/*"}]}\''
        ),
    ),
    Rule(
        id="aws/image-from-environment-registry",
        family="aws",
        title="Images come from the environment's ECR registry and its pull-through cache",
        severity=Severity.ERROR,
        why=(
            "An image pulled from Docker Hub or ghcr.io crosses the NAT on every new node and meets the "
            "upstream's rate limits exactly when a scale-out starts many nodes at once; the environment's "
            "ECR pull-through cache pulls it once. A cache prefix without its PullThroughCacheRule fails "
            "the pull."
        ),
        remediation=(
            "Reference <accountId>.dkr.ecr.<awsRegion>.amazonaws.com/<cache prefix>/<repository>:<tag>, "
            "account and region from the environment values, with a PullThroughCacheRule for the prefix."
        ),
        scope=(*WORKLOADS, "OpenTelemetryCollector"),
        check=check_image_registry,
        options={"upstream_prefixes": ["docker-hub", "ghcr", "quay", "k8s", "ecr-public"]},
        example="image: vllm/vllm-openai:v0.32.0",
        use_instead="image: 222222222222.dkr.ecr.us-east-1.amazonaws.com/docker-hub/vllm/vllm-openai:v0.32.0",
    ),
    Rule(
        id="aws/read-write-many-storage-class",
        family="aws",
        title="A ReadWriteMany claim uses a storage class that can mount it on many nodes",
        severity=Severity.ERROR,
        why=(
            "EBS volumes attach to one node: a ReadWriteMany claim on an EBS class (the EKS default) stays "
            "Pending, and every pod that mounts it with it. A shared cache needs EFS (or another "
            "network file system)."
        ),
        remediation=(
            "Set storageClassName to a class whose provisioner is efs.csi.aws.com (or another "
            "ReadWriteMany one)."
        ),
        scope=("PersistentVolumeClaim", "StorageClass"),
        check=check_read_write_many,
        options={
            "read_write_many_provisioners": [
                "efs.csi.aws.com", "fsx.csi.aws.com", "nfs.csi.k8s.io", "cephfs.csi.ceph.com",
            ]
        },
        example="kind: PersistentVolumeClaim\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: gp3",
        use_instead=(
            "kind: PersistentVolumeClaim\nspec:\n  accessModes: [ReadWriteMany]\n"
            "  storageClassName: efs-compile-cache  # provisioner: efs.csi.aws.com"
        ),
    ),
    Rule(
        id="aws/trusted-hops-match-proxies",
        family="aws",
        title="The gateway trusts as many X-Forwarded-For hops as there are proxies in front of it",
        severity=Severity.ERROR,
        why=(
            "The ALB appends the client to X-Forwarded-For; CloudFront in front of it appends the viewer "
            "first and the ALB then appends CloudFront. A gateway that trusts fewer hops than there are "
            "proxies records and rate-limits every client as the proxy; one that trusts more takes a "
            "forged header's address."
        ),
        remediation=(
            "Set the gateway's trusted hops to the proxies in front of it: 1 behind the ALB, 2 when a "
            "CloudFront Distribution has the Ingress host as an alias."
        ),
        scope=("Ingress", "Distribution", "ConfigMap", *WORKLOADS),
        check=check_trusted_hops,
        options={"setting": "GATEWAY_TRUSTED_HOPS", "proxies_in_front_of_ingress": 1},
        example='# Distribution aliases [llm.example.com] in front of the Ingress\nGATEWAY_TRUSTED_HOPS: "1"',
        use_instead='GATEWAY_TRUSTED_HOPS: "2"  # CloudFront, then the ALB',
    ),
]
