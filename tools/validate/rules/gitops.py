"""gitops rules: Argo CD Applications and AppProjects that deploy the overlays.

The Applications live in apps/ and clusters/, rendered apart from the overlays. Rules that relate an
overlay to the Application deploying it read them from `ctx.extras["applications"]` (a list of
Application Resources, when the engine provides it) as well as from the overlay itself; without any
Application in sight they report nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from tools.validate.argocd import app_sources, applications, sync_options, sync_wave
from tools.validate.keda import target_of
from tools.validate.model import Context, FieldPath, Resource, Rule, Severity, Violation, mapping, sequence

SYNC_WAVE = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"
UNPINNED_REVISIONS = ("", "head", "main", "master", "trunk", "develop", "latest", "stable")
RANGE_MARKS = ("*", "^", "~", ">", "<", "=", "||", " - ", ".x")
# The chart that installs each CRD kind (its CRDs and controller).
CRD_PROVIDERS: Mapping[str, str] = {
    "NodePool": "karpenter",
    "EC2NodeClass": "karpenter",
    "NodeClaim": "karpenter",
    "ScaledObject": "keda",
    "ScaledJob": "keda",
    "TriggerAuthentication": "keda",
    "ClusterTriggerAuthentication": "keda",
    "OpenTelemetryCollector": "opentelemetry-operator",
    "Instrumentation": "opentelemetry-operator",
}


def _unpinned(revision: Any) -> bool:
    text = str(revision if revision is not None else "").strip()
    return text.lower() in UNPINNED_REVISIONS or any(mark in text for mark in RANGE_MARKS)


def check_revision_pinned(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    allowed = {str(r) for r in options["allowed_revisions"]}
    for app in ctx.of_kind("Application"):
        for path, source in app_sources(app):
            revision = source.get("targetRevision")
            if _unpinned(revision) and str(revision) not in allowed:
                what = f"chart {source.get('chart')} version" if source.get("chart") else "targetRevision"
                yield Violation(
                    app,
                    (*path, "targetRevision") if "targetRevision" in source else path,
                    f"{what} {revision!r} is not pinned: a push upstream changes the cluster without a "
                    "commit here",
                )


def check_appproject_restricted(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for project in ctx.of_kind("AppProject"):
        repos = project.get("spec", "sourceRepos")
        if not repos:
            yield Violation(project, ("spec",), "AppProject lists no sourceRepos")
        for i, repo in enumerate(repos or []):
            if str(repo).strip() == "*":
                yield Violation(
                    project, f"spec.sourceRepos[{i}]", "sourceRepos '*' lets any repository deploy"
                )
        destinations = project.get("spec", "destinations")
        if not destinations:
            yield Violation(project, ("spec",), "AppProject lists no destinations")
        for i, dest in enumerate(destinations or []):
            for key in ("namespace", "server", "name"):
                if str(dest.get(key, "")).strip() == "*":
                    yield Violation(
                        project,
                        f"spec.destinations[{i}].{key}",
                        f"destination {key} '*' lets Applications deploy anywhere",
                    )


def _deploys_overlay(app: Resource, overlay: str) -> bool:
    wanted = PurePosixPath(overlay).name
    for _, source in app_sources(app):
        path = PurePosixPath(str(source.get("path") or "").strip("/"))
        if str(path) and (
            str(path) == overlay.strip("/") or (path.name == wanted and path.parent.name == "overlays")
        ):
            return True
    return False


def overlay_applications(ctx: Context) -> list[Resource]:
    return [app for app in applications(ctx) if _deploys_overlay(app, ctx.overlay)]


def _providers(ctx: Context) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for app in applications(ctx):
        for _, source in app_sources(app):
            chart = str(source.get("chart") or "").rsplit("/", 1)[-1]
            if chart in set(CRD_PROVIDERS.values()):
                out.setdefault(chart, []).append(app)
    return out


def _wave_path(app: Resource) -> FieldPath:
    if SYNC_WAVE in app.annotations:
        return ("metadata", "annotations", SYNC_WAVE)
    return ("metadata", "annotations") if app.get("metadata", "annotations") is not None else ("metadata",)


def check_sync_wave_order(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    providers = _providers(ctx)
    charts_used = sorted({CRD_PROVIDERS[r.kind] for r in ctx.resources if r.kind in CRD_PROVIDERS})
    for app in overlay_applications(ctx):
        for chart in charts_used:
            for provider in providers.get(chart, []):
                if provider is app or sync_wave(provider) < sync_wave(app):
                    continue
                yield Violation(
                    app,
                    _wave_path(app),
                    f"sync wave {sync_wave(app)} deploys resources whose CRDs Application/{provider.name} "
                    f"({chart}) installs in wave {sync_wave(provider)}: providers must sync in an earlier "
                    "wave",
                )


def _ignores_replicas(app: Resource, deployment: Resource) -> bool:
    if "RespectIgnoreDifferences=true" not in sync_options(app):
        return False
    for entry in sequence(app.get("spec", "ignoreDifferences")):
        if entry.get("kind") != deployment.kind or entry.get("group", "apps") not in ("apps", ""):
            continue
        if entry.get("name") not in (None, deployment.name):
            continue
        if entry.get("namespace") not in (None, deployment.namespace):
            continue
        pointers = [str(p).rstrip("/") for p in sequence(entry.get("jsonPointers"))]
        jq = [str(p).strip() for p in sequence(entry.get("jqPathExpressions"))]
        if "/spec/replicas" in pointers or ".spec.replicas" in jq:
            return True
    return False


def check_scaled_replicas_ignored(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    apps = overlay_applications(ctx)
    if not apps:
        return  # the deploying Application is not in sight: nothing to compare with
    for so in ctx.of_kind("ScaledObject"):
        target = target_of(ctx, so)
        if target is None or target.get("spec", "replicas") is None:
            continue
        if any(_ignores_replicas(app, target) for app in apps):
            continue
        yield Violation(
            target,
            ("spec", "replicas"),
            f"replicas is set on a workload ScaledObject/{so.name} scales, and Application/{apps[0].name} "
            "does "
            "not ignore /spec/replicas with RespectIgnoreDifferences=true: every sync resets the HPA's count",
        )


def check_skip_dry_run(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    providers = _providers(ctx)
    kinds = sorted(
        {
            r.kind
            for r in ctx.resources
            if r.kind in CRD_PROVIDERS
            and CRD_PROVIDERS[r.kind] in providers
            and "SkipDryRunOnMissingResource=true" not in str(r.annotations.get(SYNC_OPTIONS_ANNOTATION, ""))
        }
    )
    if not kinds:
        return
    for app in overlay_applications(ctx):
        if "SkipDryRunOnMissingResource=true" in sync_options(app):
            continue
        path = next(
            (
                p
                for p, parts in (
                    ("spec.syncPolicy.syncOptions", ("spec", "syncPolicy", "syncOptions")),
                    ("spec.syncPolicy", ("spec", "syncPolicy")),
                )
                if app.get(*parts) is not None
            ),
            "spec",
        )
        yield Violation(
            app,
            path,
            f"deploys {', '.join(kinds)} whose CRDs arrive in the same sync, without "
            "SkipDryRunOnMissingResource=true: the first sync fails its dry run",
        )


def check_application_source_exists(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    statuses: Mapping[str, str | None] = mapping(ctx.extras.get("application_sources"))
    for app in ctx.of_kind("Application"):
        for path, source in app_sources(app):
            relative = str(source.get("path") or "").strip("/")
            if source.get("chart") or not relative:
                continue
            if relative not in statuses:
                ctx.extras.setdefault("notes", []).append(
                    f"gitops/application-source-exists: the path {relative!r} of Application/{app.name} was "
                    "not looked up in this run")
                continue
            problem = statuses[relative]
            if problem is not None:
                yield Violation(
                    app,
                    (*path, "path"),
                    f"source path {relative!r} {problem}: Argo CD cannot generate the manifests and the "
                    "Application stays in ComparisonError",
                )


def _normalized_repo(url: str) -> str:
    return url.strip().rstrip("/").removesuffix(".git").lower()


def _glob_permits(patterns: Sequence[Any], value: str, normalize: Any = str) -> bool:
    """Argo CD's allow-list semantics: some pattern matches (globs) and no `!pattern` does."""
    allowed = denied = False
    for pattern in (str(p) for p in patterns):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(normalize(value), normalize(pattern.removeprefix("!"))):
            denied = denied or negated
            allowed = allowed or not negated
    return allowed and not denied


# Argo CD's name for the cluster it runs in, and that cluster's API server address.
IN_CLUSTER = ("in-cluster", "https://kubernetes.default.svc")


def _cluster(destination: Mapping[str, Any]) -> str:
    """A destination's cluster as a server address where the name is the in-cluster one."""
    if destination.get("server"):
        return str(destination["server"]).rstrip("/")
    name = str(destination.get("name") or "")
    return IN_CLUSTER[1] if name == IN_CLUSTER[0] else f"name:{name}"


def _destination_permitted(project: Resource, destination: Mapping[str, Any]) -> bool:
    namespace = str(destination.get("namespace") or "")
    cluster = _cluster(destination)
    for allowed in sequence(project.get("spec", "destinations")):
        allowed = allowed or {}
        if not (allowed.get("server") or allowed.get("name")):
            continue
        pattern = "*" if "*" in (allowed.get("server"), allowed.get("name")) else _cluster(allowed)
        if _glob_permits([pattern], cluster) and _glob_permits([allowed.get("namespace", "")], namespace):
            return True
    return False


def check_project_permits_application(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    projects = {project.name: project for project in ctx.of_kind("AppProject")}
    for app in ctx.of_kind("Application"):
        name = str(app.get("spec", "project") or "")
        project = projects.get(name)
        if project is None:
            yield Violation(
                app,
                ("spec", "project") if name else ("spec",),
                f"AppProject {name!r} is not rendered with this Application: Argo CD refuses to sync an "
                "Application of a project it does not have",
            )
            continue
        for path, source in app_sources(app):
            repo = str(source.get("repoURL") or "")
            if not _glob_permits(sequence(project.get("spec", "sourceRepos")), repo, _normalized_repo):
                yield Violation(
                    app,
                    (*path, "repoURL"),
                    f"AppProject/{name} does not permit the source repository {repo!r} (sourceRepos): the "
                    "sync is refused",
                )
        destination = mapping(app.get("spec", "destination"))
        if not _destination_permitted(project, destination):
            where = ", ".join(f"{k} {v!r}" for k, v in destination.items())
            yield Violation(
                app,
                ("spec", "destination"),
                f"AppProject/{name} does not permit the destination ({where}): the sync is refused",
            )


RULES: list[Rule] = [
    Rule(
        id="gitops/revision-pinned",
        family="gitops",
        title="Applications pin targetRevision and chart versions",
        severity=Severity.ERROR,
        why=(
            "HEAD, a branch, `*`, `latest` or a version range make the cluster follow whatever upstream "
            "publishes next, without a reviewed commit in this repository."
        ),
        remediation="Pin a tag or commit SHA for Git sources and an exact version for Helm charts.",
        scope=("Application",),
        check=check_revision_pinned,
        # An environment that deliberately tracks a branch (dev following `main`) lists it here.
        options={"allowed_revisions": []},
        example="source:\n  chart: keda\n  targetRevision: 2.*",
        use_instead="source:\n  chart: keda\n  targetRevision: 2.17.2",
    ),
    Rule(
        id="gitops/appproject-restricted",
        family="gitops",
        title="AppProjects restrict source repositories and destinations",
        severity=Severity.ERROR,
        why="A project with sourceRepos or destinations '*' lets any Application deploy anything anywhere.",
        remediation="List the repositories and the (server, namespace) destinations the project may use.",
        scope=("AppProject",),
        check=check_appproject_restricted,
        example="spec:\n  sourceRepos: ['*']\n  destinations: [{server: '*', namespace: '*'}]",
        use_instead=(
            "spec:\n  sourceRepos: [https://github.com/example/eks-llm-inference.git]\n  destinations: "
            "[{server: https://kubernetes.default.svc, namespace: inference}]"
        ),
    ),
    Rule(
        id="gitops/sync-wave-order",
        family="gitops",
        title="CRD providers sync in an earlier wave than the Applications using their kinds",
        severity=Severity.ERROR,
        why=(
            "Argo CD syncs lower waves first. An Application deploying NodePools, ScaledObjects or "
            "OpenTelemetryCollectors in the same or an earlier wave than the karpenter, keda or "
            "opentelemetry-operator chart fails on a fresh cluster: the CRDs do not exist yet."
        ),
        remediation="Give the provider Applications a lower argocd.argoproj.io/sync-wave than their users.",
        scope=("Application", *CRD_PROVIDERS),
        check=check_sync_wave_order,
        example="# karpenter: sync-wave '0'\n# inference (NodePools): sync-wave '0'",
        use_instead="# karpenter: sync-wave '-2'\n# inference: sync-wave '1'",
    ),
    Rule(
        id="gitops/scaled-replicas-ignored",
        family="gitops",
        title="A KEDA-scaled workload sets no replicas, or Argo CD ignores them",
        severity=Severity.ERROR,
        why=(
            "With replicas in Git, every Argo CD sync (and self-heal) resets the count the HPA chose "
            "(argo-cd #5105): scaling flaps. Leave replicas out, or ignore /spec/replicas with "
            "RespectIgnoreDifferences=true."
        ),
        remediation=(
            "Remove spec.replicas, or add ignoreDifferences /spec/replicas and RespectIgnoreDifferences=true."
        ),
        scope=("Deployment", "ScaledObject", "Application"),
        check=check_scaled_replicas_ignored,
        example="kind: Deployment\nspec:\n  replicas: 2  # scaled by KEDA",
        use_instead="kind: Deployment\nspec:\n  # no replicas: the HPA owns them",
    ),
    Rule(
        id="gitops/skip-dry-run-for-crd-users",
        family="gitops",
        title="Applications deploying CRD kinds installed in the same sync skip the dry run for them",
        severity=Severity.WARNING,
        why=(
            "Argo CD dry-runs every resource before syncing; on a fresh cluster a NodePool or ScaledObject "
            "fails it while its CRD is still being installed by another Application of the same sync."
        ),
        remediation="Add SkipDryRunOnMissingResource=true to the Application's syncOptions (or resources).",
        scope=("Application", *CRD_PROVIDERS),
        check=check_skip_dry_run,
        example="syncPolicy:\n  syncOptions: [CreateNamespace=true]",
        use_instead="syncPolicy:\n  syncOptions: [CreateNamespace=true, SkipDryRunOnMissingResource=true]",
    ),
    Rule(
        id="gitops/application-source-exists",
        family="gitops",
        title="Every repository path an Application syncs exists and renders",
        severity=Severity.ERROR,
        why=(
            "An Application whose source path was renamed, deleted or no longer renders is valid YAML; "
            "Argo CD reports ComparisonError and keeps the cluster as it was, so a change merged to Git "
            "silently never reaches it."
        ),
        remediation="Point spec.source.path at a directory of this repository that renders.",
        scope=("Application",),
        check=check_application_source_exists,
        example="source:\n  path: overlays/production  # the directory is overlays/prod",
        use_instead="source:\n  path: overlays/prod",
    ),
    Rule(
        id="gitops/project-permits-application",
        family="gitops",
        title="The Application's AppProject permits its repository and destination",
        severity=Severity.ERROR,
        why=(
            "Argo CD refuses to sync an Application whose source repository or destination its AppProject "
            "does not list (or whose AppProject does not exist): the error shows only in Argo CD, after "
            "the merge."
        ),
        remediation=(
            "Add the repository to the AppProject's sourceRepos and the server and namespace to its "
            "destinations, or move the Application to a project that permits them."
        ),
        scope=("Application", "AppProject"),
        check=check_project_permits_application,
        example="destination:\n  namespace: observability  # not in the project's destinations",
        use_instead="destination:\n  namespace: monitoring",
    ),
]
