"""Approvals: who allowed a model version to run as `active`, for which notebook hash.

`approve` records ``{"by", "at", "sha256"}`` on the version's registry entry
(the latest in `approval`, every one in `approvals`). When the registry's
policy says approvals are required (`set_approvals_required`), a run refuses
to start while a notebook it would run as `active` has no approval for its
current sha256 (`check_approvals`, called by the run path). Runs that force
every model to draft (git-flow development branches) need no approval.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from pathlib import Path

from ..clock import utc_now
from ..exceptions import ConfigError, MlsmError
from ..store.base import StoreError
from .database import AuditDatabase


class ApprovalError(MlsmError):
    """An approval cannot be recorded (unknown model, no registry, notebook not the registered one)."""


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _where(database: AuditDatabase) -> str:
    return f"MongoDB ({database.store.db.name})"


def _require_registry(database: AuditDatabase) -> None:
    if not database.has_registry():
        raise ApprovalError(f"{_where(database)} has no model registry (collection {database.models.name}); "
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
    entry = database.registry_entry(name, version)
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
        raise ApprovalError(f"model {name} {version} has no notebook sha256 in the registry; approve it with --notebook")
    approval = {"by": by or _who(), "at": utc_now(), "sha256": sha256}
    database.record_approval(name, version, approval)
    return approval


def set_approvals_required(database: AuditDatabase, required: bool, *, by: str | None = None) -> None:
    """Say in the registry whether active versions need an approval before they run."""
    _require_registry(database)
    database.set_approvals_required(required, by or _who(), utc_now())


def check_approvals(sinks: Sequence, specs: Sequence, forced_status: str | None = None) -> None:
    """Refuse (ConfigError) to run a notebook as `active` without an approval for its sha256,
    when the registry of a MongoDB among the run's `sinks` requires approvals. No MongoDB, or every
    model forced to draft: nothing to check."""
    if not sinks or forced_status == "draft":
        return  # (and pymongo, which the check needs, is not imported for nothing)
    from ..store.mongo import MongoStore

    store = next((sink for sink in sinks if isinstance(sink, MongoStore)), None)
    if store is None:
        return
    active = [spec for spec in specs if spec.status == "active"]
    if not active:
        return
    from pymongo.errors import PyMongoError

    database = AuditDatabase(store)
    try:
        if not database.approvals_required():
            return
        registry = database.registry((spec.name, spec.version) for spec in active)
    except PyMongoError as exc:
        raise StoreError(f"MongoDB: cannot read the approval policy ({str(exc).splitlines()[0][:300]})") from None
    unapproved = [s for s in active if not (registry.get((s.name, s.version)) or {}).get("approval")]
    if unapproved:
        first = unapproved[0]
        more = "".join(f", {s.name} {s.version}" for s in unapproved[1:])
        fix = ("approve each (mlsm-nb approve NAME VERSION), or set their status to draft" if more else
               f"mlsm-nb approve {first.name} {first.version}, or set its status to draft")
        raise ConfigError(f"{first.path}: {first.name} {first.version}{more} {'are' if more else 'is'} active but not "
                          f"approved, and the registry requires approvals: {fix}")
    for spec in active:
        approval = registry[spec.name, spec.version]["approval"]
        if approval.get("sha256") != spec.sha256():
            raise ConfigError(f"{spec.path}: {spec.name} {spec.version} was approved for sha256 "
                              f"{approval.get('sha256', '')[:12]}… but its production cells or artifacts now hash to "
                              f"{spec.sha256()[:12]}…; approve this notebook again")
