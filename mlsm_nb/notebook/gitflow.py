"""git-flow status rules: which branches force every model to `draft`.

On development branches (default: `develop` and `feature/*`) a notebook's
status never reaches production: every extracted or run model is `draft`,
whatever its notebook says. On `release/*`, `hotfix/*`, `main` and `master`
(and any branch not matched) the notebook's status stands. Set
`MLSM_DRAFT_BRANCHES` (space-separated glob patterns) to change the policy.
"""

from __future__ import annotations

import fnmatch
import os

DEFAULT_DRAFT_BRANCHES = ("develop", "feature/*")


def draft_patterns() -> tuple[str, ...]:
    """The branch patterns that force `draft` (from MLSM_DRAFT_BRANCHES, else the default)."""
    configured = os.environ.get("MLSM_DRAFT_BRANCHES")
    return tuple(configured.split()) if configured is not None else DEFAULT_DRAFT_BRANCHES


def forced_status(branch: str | None) -> tuple[str | None, str | None]:
    """(status to force, why) for a branch; (None, None) when the notebooks' status stands."""
    if not branch:
        return None, None
    for pattern in draft_patterns():
        if fnmatch.fnmatchcase(branch, pattern):
            return "draft", f"branch {branch!r} matches {pattern!r}: models from development branches are draft"
    return None, None
