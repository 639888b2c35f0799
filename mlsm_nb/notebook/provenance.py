"""Where an extracted model came from: the notebook's path, hash, git commit and extraction time; and a
notebook read back from git at a recorded commit (what `approve` compares)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..clock import utc_now
from .contract import NotebookSpec


def _git(folder: Path, *args: str, text: bool = True) -> str | bytes | None:
    """git's output run in `folder` (stripped text, or bytes), None when git fails or is not there."""
    try:
        result = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=text)
    except OSError:  # no git, or the folder is gone
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() if text else result.stdout


def git_info(path: Path) -> dict:
    """Last commit touching `path`, the commit checked out (`git_head`: the notebook and its artifacts as
    they were), its path inside the repository and whether it has uncommitted changes (empty outside git)."""
    commit = _git(path.parent, "log", "-1", "--format=%H", "--", path.name)
    if not commit:
        return {}
    head, _, prefix = (_git(path.parent, "rev-parse", "HEAD", "--show-prefix") or "").partition("\n")
    return {"git_commit": commit, **({"git_head": head} if head else {}), "git_path": prefix + path.name,
            "git_dirty": bool(_git(path.parent, "status", "--porcelain", "--", path.name))}


def repository_root(folder: Path) -> Path | None:
    """The top folder of the git work tree `folder` is in (None outside git, or when `folder` is missing)."""
    if not folder.is_dir():
        return None
    top = _git(folder, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


def has_commit(root: Path, commit: str) -> bool:
    """Whether the repository at `root` holds `commit`."""
    return _git(root, "cat-file", "-e", f"{commit}^{{commit}}") is not None


def file_at_commit(root: Path, commit: str, path: str) -> bytes | None:
    """The bytes of `path` (relative to the repository's top) at `commit`; None when it was not there."""
    found = _git(root, "show", f"{commit}:{path}", text=False)
    return found if isinstance(found, bytes) else None


def provenance(spec: NotebookSpec) -> dict:
    """A model's `provenance`: source path, sha256 of the production cells (and artifacts), the same without
    `status` (what evidence is keyed by), git commit, time."""
    return {
        "source": str(spec.path), "sha256": spec.sha256(), "sha256_without_status": spec.sha256_without_status(),
        "extracted_at": utc_now(),
        **git_info(spec.path.resolve()),
    }
