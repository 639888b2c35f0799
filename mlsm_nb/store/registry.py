"""The model registry in MongoDB: one entry per model name and version, its approvals, the approval policy.

An entry (collection ``models``) holds what was registered (status, kind, sha256,
git commit, the runs that ran it, when it was extracted, validated, ran), where each
sha256 it ever had was last registered from (``registrations.<sha256>``: notebook path,
git commit and path in the repository, branch, event, time, run) and, once approved,
``approval`` (the latest ``{"by", "at", "sha256", "registration"}``) and ``approvals``
(every one). The policy is the ``settings`` document ``{_id: "approvals", required}``.
While it says approvals are required, a run refuses to start with a notebook it
would run as ``active`` that has no approval for its current sha256
(`ModelRegistry.check_approvals`, MongoDB's `ResultSink.check_approvals`).
Every read and write goes through the store's retries, so failures are `StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from .base import Approvable
    from .mongo import MongoStore

APPROVAL_POLICY = "approvals"  # `_id` of the settings document that says whether approvals are required
# What a registration keeps of where a notebook came from (a manifest's or a bundle's entry, plus the CLI's origin).
REGISTRATION_KEYS = ("source", "git_commit", "git_head", "git_path", "git_dirty", "branch", "repository", "commit")


def registration(entry: Mapping, event: str, at: Any, run_id: str | None = None) -> dict:
    """Where the notebook of a registry `entry` was registered from: `REGISTRATION_KEYS` it has, the event
    ("extracted", "validated", "ran"), when, and the run that registered it."""
    found = {k: entry[k] for k in REGISTRATION_KEYS if entry.get(k) is not None}
    return {**found, "event": event, "at": at, **({"run_id": run_id} if run_id else {})}


class ModelRegistry:
    """The registry of a `MongoStore`'s database: entries, approvals and the approval policy."""

    def __init__(self, store: MongoStore):
        self.store = store
        self.models = store.models
        self.settings = store.db["settings"]

    def exists(self) -> bool:
        """Whether the database has a registry (models were ever registered in it)."""
        found = self.store.retry("read of the collections",
                                 lambda: self.store.db.list_collection_names(filter={"name": self.models.name}))
        return self.models.name in found

    def entries(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The entries of these (name, version) pairs, by pair (one query)."""
        keys = list(keys)
        if not keys:
            return {}
        found = self.store.retry("read of the model registry", lambda: list(
            self.models.find({"$or": [{"name": n, "version": v} for n, v in keys]})))
        return {(doc["name"], doc["version"]): doc for doc in found}

    def entry(self, name: str, version: str) -> dict | None:
        return self.entries([(name, version)]).get((name, version))

    def approvals_required(self) -> bool:
        policy = self.store.retry("read of the approval policy",
                                   lambda: self.settings.find_one({"_id": APPROVAL_POLICY}))
        return bool(policy and policy.get("required"))

    def set_approvals_required(self, required: bool, by: str, at: str) -> None:
        document = {"_id": APPROVAL_POLICY, "required": required, "set_by": by, "set_at": at}
        self.store.retry("write of the approval policy", lambda: self.settings.replace_one(
            {"_id": APPROVAL_POLICY}, document, upsert=True))

    def record_approval(self, name: str, version: str, approval: dict) -> None:
        """Add `approval` ({by, at, sha256}) to the entry of `name` `version`: its latest and one of its approvals."""
        self.store.retry("write of the approval", lambda: self.models.update_one(
            {"name": name, "version": version}, {"$set": {"approval": approval}, "$push": {"approvals": approval}}))

    def check_approvals(self, active: Sequence[Approvable]) -> None:
        """ConfigError, naming the notebook, when the policy requires approvals and a notebook of `active`
        has none, or one for another sha256 (its production cells or artifacts changed since)."""
        if not active or not self.approvals_required():
            return
        registry = self.entries((spec.name, spec.version) for spec in active)
        unapproved = [s for s in active if not (registry.get((s.name, s.version)) or {}).get("approval")]
        if unapproved:
            first = unapproved[0]
            more = "".join(f", {s.name} {s.version}" for s in unapproved[1:])
            fix = ("approve each (mlsm-nb approve NAME VERSION), or set their status to draft" if more else
                   f"mlsm-nb approve {first.name} {first.version}, or set its status to draft")
            raise ConfigError(f"{first.path}: {first.name} {first.version}{more} {'are' if more else 'is'} active but "
                              f"not approved, and the registry requires approvals: {fix}")
        for spec in active:
            approval = registry[spec.name, spec.version]["approval"]
            if approval.get("sha256") != spec.sha256():
                raise ConfigError(f"{spec.path}: {spec.name} {spec.version} was approved for sha256 "
                                  f"{approval.get('sha256', '')[:12]}… but its production cells or artifacts now "
                                  f"hash to {spec.sha256()[:12]}…; register it (mlsm-nb extract --mongo-uri ...) and "
                                  f"approve this notebook again: mlsm-nb approve {spec.name} {spec.version} "
                                  f"--notebook {spec.path}")
