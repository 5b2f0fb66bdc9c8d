"""Git revisions as directories: the working tree, or a temporary `git worktree` removed afterwards."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GIT_TIMEOUT_SECONDS = 120


class RevisionError(RuntimeError):
    pass


def git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise RevisionError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise RevisionError(f"git {' '.join(args)} took longer than {GIT_TIMEOUT_SECONDS} s") from None
    if proc.returncode != 0:
        raise RevisionError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def repository_root(start: Path) -> Path:
    return Path(git(start, "rev-parse", "--show-toplevel"))


def resolve(repo: Path, revision: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except RevisionError:
        raise RevisionError(f"unknown revision {revision!r}") from None


@contextmanager
def checkout(repo: Path, revision: str | None) -> Iterator[Path]:
    """The tree of `revision` (None: the working tree as it is) for the duration of the block."""
    if revision is None:
        yield repo
        return
    commit = resolve(repo, revision)
    with tempfile.TemporaryDirectory(prefix="gate-diff-") as tmp:
        tree = Path(tmp) / "tree"
        git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            yield tree
        finally:
            git(repo, "worktree", "remove", "--force", str(tree))


def environments(tree: Path) -> dict[str, Path]:
    """What the diff renders: every overlay (`overlays/<env>`), plus `apps` and `clusters/<env>` for the
    Argo CD objects, each only where it has a kustomization."""
    found: dict[str, Path] = {}
    for parent, prefix in ((tree / "overlays", ""), (tree / "clusters", "clusters/")):
        if parent.is_dir():
            for child in sorted(parent.iterdir()):
                if (child / "kustomization.yaml").is_file():
                    found[f"{prefix}{child.name}"] = child
    if (tree / "apps" / "kustomization.yaml").is_file():
        found["apps"] = tree / "apps"
    return found
