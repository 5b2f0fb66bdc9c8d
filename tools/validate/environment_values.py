"""The environment values of a rendered directory: the local-config ConfigMap `environment` that
base/environment's replacements read (account, region, cluster, bucket names).

kustomize drops local-config objects from its output, so the rules cannot see them among the
rendered resources; they are read from the files the build reads (the sandbox's walk of the
kustomization graph), with the gate's bounded loader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from tools.validate import sandbox
from tools.validate.loader import InputError, Limits, load_file
from tools.validate.model import mapping
from tools.validate.render import KUSTOMIZATION_FILES, is_kustomization_dir, repo_relative

VALUES_NAME = "environment"
LOCAL_CONFIG = "config.kubernetes.io/local-config"
EXTRAS_KEY = "environment_values"  # Context.extras key the engine fills and the aws rules read


def is_environment_values(document: object) -> bool:
    doc = mapping(document)
    metadata = mapping(doc.get("metadata"))
    return (
        doc.get("kind") == "ConfigMap"
        and metadata.get("name") == VALUES_NAME
        and str(mapping(metadata.get("annotations")).get(LOCAL_CONFIG, "")).lower() == "true"
    )


def environment_values(
    directory: Path, repo_root: Path, limits: Limits, walked: sandbox.Walk | None = None
) -> Mapping[str, str] | None:
    """The `data` of the environment values the build of `directory` reads, None when it reads none.

    `walked` is the sandbox's walk of `directory` when the render already made it (with the same
    limits): its parsed files are read instead of walking and parsing them again. A directory the
    sandbox refuses has no values here; rendering it reports why.
    """
    try:
        walked = walked if walked is not None else sandbox.walk(directory, repo_root, limits)
    except sandbox.SandboxError:
        return None
    for file in walked.yaml_files:
        if file.name in KUSTOMIZATION_FILES:
            continue
        parsed = walked.documents.get(file)
        try:
            documents = parsed if parsed is not None else load_file(
                file, repo_relative(file, repo_root), limits).documents
        except InputError:
            continue
        for document in documents:
            if is_environment_values(document):
                return {str(key): str(value) for key, value in mapping(mapping(document).get("data")).items()}
    return None


def values_of_environment(paths: Iterable[str], repo_root: Path, limits: Limits) -> Mapping[str, str] | None:
    """The values of an environment (gate.yaml `environments.E.paths`): those of the first of its
    kustomizations that reads any. For manifests rendered elsewhere and checked `--env E`."""
    for configured in paths:
        directory = repo_root / configured.strip("/")
        if sandbox.contained(directory, repo_root) is None or not is_kustomization_dir(directory):
            continue
        values = environment_values(directory, repo_root, limits)
        if values is not None:
            return values
    return None
