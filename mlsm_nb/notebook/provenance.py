"""Where an extracted model came from: the notebook's path, hash, git commit and extraction time."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..clock import utc_now
from .contract import NotebookSpec


def git_info(path: Path) -> dict:
    """Last commit touching `path` and whether it has uncommitted changes (empty outside git)."""
    def git(*args):
        result = subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("log", "-1", "--format=%H", "--", path.name)
    if not commit:
        return {}
    return {"git_commit": commit, "git_dirty": bool(git("status", "--porcelain", "--", path.name))}


def provenance(spec: NotebookSpec) -> dict:
    """A model's `provenance`: source path, sha256 of the production cells (and artifacts), git commit, time."""
    return {
        "source": str(spec.path), "sha256": spec.sha256(),
        "extracted_at": utc_now(),
        **git_info(spec.path.resolve()),
    }
