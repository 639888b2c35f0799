"""Approvals: who allowed a model version to run as `active`, for which notebook hash.

`approve` records ``{"by", "at", "sha256"}`` on the version's registry entry
(the latest in `approval`, every one in `approvals`), through the store's model
registry (`store.registry`), which also keeps the policy (`set_approvals_required`).
While approvals are required, a run refuses to start with a notebook it would
run as `active` that has no approval for its current sha256: every sink of the
run is asked (`store.base.check_approvals`), and MongoDB's asks its registry.
Runs that force every model to draft (git-flow development branches) need no approval.
"""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from ..clock import utc_now
from ..exceptions import MlsmError
from .database import AuditDatabase


class ApprovalError(MlsmError):
    """An approval cannot be recorded (unknown model, no registry, notebook not the registered one)."""


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _where(database: AuditDatabase) -> str:
    return f"MongoDB ({database.store.db.name})"


def _require_registry(database: AuditDatabase) -> None:
    if not database.store.registry.exists():
        raise ApprovalError(f"{_where(database)} has no model registry (collection {database.store.models.name}); "
                            "register the models first: mlsm-nb extract --mongo-uri ... or mlsm-nb run --mongo-uri ...")


def approve(database: AuditDatabase, name: str, version: str, *, by: str | None = None,
            notebook: str | Path | None = None) -> dict:
    """Record an approval of model `name` `version` in the registry; returns it.

    The approved sha256 is the registry's for that version; with `notebook`,
    the notebook must declare that name and version and hash to the same.
    Raises ApprovalError when there is no registry, no such version in it, or
    the notebook differs from the registered one.
    """
    _require_registry(database)
    entry = database.store.registry.entry(name, version)
    if entry is None:
        raise ApprovalError(f"model {name} {version} is not in the registry of {_where(database)}; "
                            "extract or run it with --mongo-uri first")
    sha256 = entry.get("sha256")
    if notebook is not None:
        from ..notebook.contract import lint_notebook

        spec = lint_notebook(notebook)
        if (spec.name, spec.version) != (name, version):
            raise ApprovalError(f"{notebook}: declares {spec.name} {spec.version}, not {name} {version}")
        if sha256 and spec.sha256() != sha256:
            raise ApprovalError(f"{notebook}: sha256 {spec.sha256()[:12]}… differs from the registry's "
                                f"{sha256[:12]}… for {name} {version}; register this notebook first (extract or run "
                                "with --mongo-uri)")
        sha256 = spec.sha256()
    if not sha256:
        raise ApprovalError(f"model {name} {version} has no notebook sha256 in the registry; "
                            "approve it with --notebook")
    approval = {"by": by or _who(), "at": utc_now(), "sha256": sha256}
    database.store.registry.record_approval(name, version, approval)
    return approval


def set_approvals_required(database: AuditDatabase, required: bool, *, by: str | None = None) -> None:
    """Say in the registry whether active versions need an approval before they run."""
    _require_registry(database)
    database.store.registry.set_approvals_required(required, by or _who(), utc_now())
