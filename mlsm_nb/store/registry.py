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

Evidence (collection ``evidence``) is what `mlsm-nb compare` found, one document per comparison
(`audit.evidence`), keyed by the challenger's name, version and ``sha256_without_status`` (its
production cells and artifacts hashed without the `status` line, so the draft compared and the
notebook made active hash alike). An approval cites the latest passing one (``approval.evidence``).
The second policy, ``{_id: "evidence", required}``, adds to the first: an active version's approval
must cite a passing comparison of the code that runs (or say why none is needed: a waiver).
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
EVIDENCE_POLICY = "evidence"  # `_id` of the settings document that says whether approvals must cite evidence
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
        self.evidence = store.db["evidence"]

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

    def _policy(self, policy: str) -> bool:
        found = self.store.retry(f"read of the {policy} policy", lambda: self.settings.find_one({"_id": policy}))
        return bool(found and found.get("required"))

    def _set_policy(self, policy: str, required: bool, by: str, at: str) -> None:
        document = {"_id": policy, "required": required, "set_by": by, "set_at": at}
        self.store.retry(f"write of the {policy} policy", lambda: self.settings.replace_one(
            {"_id": policy}, document, upsert=True))

    def approvals_required(self) -> bool:
        return self._policy(APPROVAL_POLICY)

    def set_approvals_required(self, required: bool, by: str, at: str) -> None:
        self._set_policy(APPROVAL_POLICY, required, by, at)

    def evidence_required(self) -> bool:
        """Whether an active version's approval must cite a passing comparison (`mlsm-nb compare`)."""
        return self._policy(EVIDENCE_POLICY)

    def set_evidence_required(self, required: bool, by: str, at: str) -> None:
        self._set_policy(EVIDENCE_POLICY, required, by, at)

    def record_evidence(self, evidence: Mapping) -> None:
        """Store one comparison's evidence (its ``id`` is the document's ``_id``)."""
        self.store.retry("write of the evidence", lambda: self.evidence.replace_one(
            {"_id": evidence["id"]}, {**evidence, "_id": evidence["id"]}, upsert=True))

    def latest_evidence(self, name: str, version: str, sha256_without_status: str | None = None,
                        passed: bool | None = None) -> dict | None:
        """The newest evidence whose challenger is `name` `version` (with that code hash, that verdict)."""
        query: dict = {"challenger.name": name, "challenger.version": version}
        if sha256_without_status is not None:
            query["challenger.sha256_without_status"] = sha256_without_status
        if passed is not None:
            query["passed"] = passed
        found = self.store.retry("read of the evidence", lambda: list(
            self.evidence.find(query, {"_id": 0}).sort([("at", -1), ("id", -1)]).limit(1)))
        return found[0] if found else None

    def record_approval(self, name: str, version: str, approval: dict) -> None:
        """Add `approval` ({by, at, sha256}) to the entry of `name` `version`: its latest and one of its approvals."""
        self.store.retry("write of the approval", lambda: self.models.update_one(
            {"name": name, "version": version}, {"$set": {"approval": approval}, "$push": {"approvals": approval}}))

    def check_approvals(self, active: Sequence[Approvable]) -> None:
        """ConfigError, naming the notebook, when a policy requires approvals and a notebook of `active` has
        none, or one for another sha256 (its production cells or artifacts changed since); and when evidence
        is required and its approval cites no passing comparison of its code (`check_evidence`)."""
        if not active:
            return
        evidence = self.evidence_required()
        if not evidence and not self.approvals_required():
            return
        registry = self.entries((spec.name, spec.version) for spec in active)
        policy = "approvals citing evidence" if evidence else "approvals"
        unapproved = [s for s in active if not (registry.get((s.name, s.version)) or {}).get("approval")]
        if unapproved:
            first = unapproved[0]
            more = "".join(f", {s.name} {s.version}" for s in unapproved[1:])
            fix = ("approve each (mlsm-nb approve NAME VERSION), or set their status to draft" if more else
                   f"mlsm-nb approve {first.name} {first.version}, or set its status to draft")
            raise ConfigError(f"{first.path}: {first.name} {first.version}{more} {'are' if more else 'is'} active but "
                              f"not approved, and the registry requires {policy}: {fix}")
        for spec in active:
            approval = registry[spec.name, spec.version]["approval"]
            if approval.get("sha256") != spec.sha256():
                raise ConfigError(f"{spec.path}: {spec.name} {spec.version} was approved for sha256 "
                                  f"{approval.get('sha256', '')[:12]}… but its production cells or artifacts now "
                                  f"hash to {spec.sha256()[:12]}…; register it (mlsm-nb extract --mongo-uri ...) and "
                                  f"approve this notebook again: mlsm-nb approve {spec.name} {spec.version} "
                                  f"--notebook {spec.path}")
            if evidence:
                check_evidence(spec, approval)


def check_evidence(spec: Approvable, approval: Mapping) -> None:
    """ConfigError, naming the notebook, unless `approval` cites a passing comparison of `spec`'s code (the
    same sha256 without status) or waives one."""
    cited = approval.get("evidence") or {}
    if cited.get("waived"):
        return
    where = f"{spec.path}: {spec.name} {spec.version}"
    fix = (f"compare it with its champion (mlsm-nb compare CHAMPION {spec.name}@{spec.version} --mongo-uri ...), "
           f"then approve it again: mlsm-nb approve {spec.name} {spec.version}")
    if not cited.get("passed"):
        said = f"a comparison that did not pass ({cited.get('id')})" if cited else "no comparison"
        raise ConfigError(f"{where}: its approval by {approval.get('by')} cites {said}, and the registry requires "
                          f"evidence (an approval citing a passing comparison): {fix}")
    if cited.get("sha256_without_status") != spec.sha256_without_status():
        raise ConfigError(f"{where}: its approval cites comparison {cited.get('id')} of code that hashes (without "
                          f"status) to {str(cited.get('sha256_without_status'))[:12]}…, but the notebook now hashes to "
                          f"{spec.sha256_without_status()[:12]}…: {fix}")
