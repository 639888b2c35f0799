"""Approvals: who allowed a model version to run as `active`, for which notebook hash.

`approve` records ``{"by", "at", "sha256", "registration"}`` on the version's registry entry
(the latest in `approval`, every one in `approvals`), through the store's model
registry (`store.registry`), which also keeps the policy (`set_approvals_required`).
While approvals are required, a run refuses to start with a notebook it would
run as `active` that has no approval for its current sha256: every sink of the
run is asked (`store.base.check_approvals`), and MongoDB's asks its registry.
Runs that force every model to draft (git-flow development branches) need no approval.

An approval cites the latest passing comparison of the approved code (`audit.evidence`: the registry's
evidence for that name, version and sha256 without status) as ``evidence``, or the reason the approver
gave for needing none (``{"waived": reason}``). While the registry requires evidence
(`set_evidence_required`), an approval that could cite none is refused, and so are runs, extractions and
serve's bundle swaps of an active version whose approval cites none (`store.registry.check_evidence`).

What is approved is shown first (a `Review`): the sha256, where it was registered from
(notebook, branch, git commit, by which event or run), the last approval, and what changed in the
production cells since the version that approval covered (a unified diff; the cells are found again by
`audit.versions`, which says where it looked when it cannot find them). A sha256 that differs from the
last approval is refused unless the approver names the notebook (`notebook`) or the sha256 itself
(`sha256`): a hash that a run of another branch registered is never approved by the version's name alone.
"""

from __future__ import annotations

import datetime as dt
import difflib
import getpass
import itertools
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import utc_now
from ..exceptions import MlsmError, cell_ref
from ..notebook.changes import changed_artifacts
from ..notebook.contract import Cell
from ..store.registry import REGISTRATION_KEYS
from ..store.rundir import RunDirectory
from .database import AuditDatabase
from .versions import FoundVersion, Search, find_version

_EVENTS = {"extracted": "mlsm-nb extract", "ran": "mlsm-nb run", "validated": "mlsm-nb validate"}
MIN_SHA256_PREFIX = 12  # --sha256 may be shortened to what messages show, no further


class ApprovalError(MlsmError):
    """An approval cannot be recorded (unknown model, no registry, notebook not the registered one)."""


@dataclass
class Review:
    """What an approval covers: `sha256`, where it was `registered` from, the `last` approval (None: the
    first), and what `changes` since the version that approval covered (lines of text)."""

    name: str
    version: str
    sha256: str
    registered: dict
    last: dict | None
    changes: list[str] = field(default_factory=list)
    approval: dict | None = None


class ChangedSinceApproval(ApprovalError):
    """The registered sha256 is not the one last approved, and the approver named neither it nor the notebook."""

    def __init__(self, review: Review):
        self.review = review
        last = review.last or {}
        branch = review.registered.get("branch")
        super().__init__(
            f"{review.name} {review.version}: the registered sha256 {review.sha256[:12]}…"
            + (f" (branch {branch})" if branch else "")
            + f" is not the one approved by {last.get('by')} ({str(last.get('sha256'))[:12]}…); after reviewing "
            f"its changes, approve it with: mlsm-nb approve {review.name} {review.version} --sha256 {review.sha256}"
            " (or --notebook PATH)")


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _where(database: AuditDatabase) -> str:
    return f"MongoDB ({database.store.db.name})"


def _require_registry(database: AuditDatabase) -> None:
    if not database.store.registry.exists():
        raise ApprovalError(f"{_where(database)} has no model registry (collection {database.store.models.name}); "
                            "register the models first: mlsm-nb extract --mongo-uri ... or mlsm-nb run --mongo-uri ...")


def _registrations(database: AuditDatabase, entry: Mapping, sha256: str, approval: Mapping | None = None) -> list[dict]:
    """Where `sha256` was registered from, best first: the approval's record, the registry's, the entry's own
    fields (its latest registration) when it still has that sha256, the manifests of the runs that ran it."""
    found = [dict(approval["registration"])] if approval and approval.get("registration") else []
    recorded = (entry.get("registrations") or {}).get(sha256)
    found += [dict(recorded)] if recorded else []
    if not recorded and entry.get("sha256") == sha256:  # registered before registrations were kept
        found.append({k: entry[k] for k in REGISTRATION_KEYS if entry.get(k) is not None})
    if not found and entry.get("runs"):  # registered before registrations were kept
        for run in reversed(database.notebooks_of_runs(entry["runs"])):
            for notebook in run.get("notebooks", []):
                if (notebook.get("name"), notebook.get("version"), notebook.get("sha256")) == (
                        entry["name"], entry["version"], sha256):
                    found.append({**{k: notebook[k] for k in REGISTRATION_KEYS if notebook.get(k) is not None},
                                  **({"branch": run["branch"]} if run.get("branch") else {}),
                                  "event": "ran", "run_id": run["_id"], "at": run.get("started_at")})
    return [r for r in found if r]


def _cell_lines(cells: Sequence[Cell]) -> tuple[list[str], list[str]]:
    """The production cells as lines to compare, each cell under a line naming it as JupyterLab counts (from
    1); and for each line, the cell it belongs to."""
    lines, owners = [], []
    for cell in cells:
        label = cell_ref(cell.index, cell.tag)
        text = [f"# {label}", *cell.source.splitlines(), ""]
        lines += text
        owners += [label] * len(text)
    return lines, owners


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@$")


def _first_change(hunk: Iterable[str], old: int, new: int, old_owners: Sequence[str], new_owners: Sequence[str]) -> str:
    """The cell of a hunk's first changed line (`old`, `new`: the hunk's first line numbers in each text)."""
    for line in hunk:
        if line.startswith("-"):
            return old_owners[old - 1]
        if line.startswith("+"):
            return new_owners[new - 1]
        old, new = old + 1, new + 1
    return ""


def _cell_diff(old: Sequence[Cell], new: Sequence[Cell], old_name: str, new_name: str) -> list[str]:
    """A unified diff of the production cells; each hunk's header names the cell of its first change (as git
    names the function), since its line numbers count the cells' text run together."""
    (a, a_owners), (b, b_owners) = _cell_lines(old), _cell_lines(new)
    lines = list(difflib.unified_diff(a, b, old_name, new_name, lineterm=""))
    for i, line in enumerate(lines):
        match = _HUNK.match(line)
        if match:
            hunk = itertools.takewhile(lambda x: not x.startswith("@@"), lines[i + 1:])  # to the next header
            lines[i] = f"{line} {_first_change(hunk, int(match[1]), int(match[2]), a_owners, b_owners)}"
    return lines


def _artifact_changes(old: FoundVersion, new: FoundVersion) -> list[str]:
    if old.artifacts is None or new.artifacts is None:
        return []
    return [f"{line} (sha256 {str(old.artifacts[name])[:12]}… -> {str(new.artifacts[name])[:12]}…)"
            if line.endswith(" changed") else line
            for name, line in changed_artifacts(old.artifacts, new.artifacts).items()]


def _changes(last: Mapping | None, sha256: str, old: Search | None, new: Search | None) -> list[str]:
    """What changed since the last approved version, as lines: a unified diff of the production cells."""
    if last is None:
        return ["first approval of this version: no approved version to compare with"]
    if last.get("sha256") == sha256 or old is None or new is None:
        return ["no change since the last approval (same sha256)"]
    missing = [f"the production cells of the {label} sha256 {sha[:12]}… cannot be found: {'; '.join(search.tried)}"
               for label, sha, search in (("approved", str(last.get("sha256")), old), ("registered", sha256, new))
               if search.found is None]
    if missing:
        return missing
    a, b = old.found, new.found
    lines = _cell_diff(a.cells, b.cells, f"approved   {a.where}", f"registered {b.where}")
    lines += _artifact_changes(a, b)
    if not lines:
        kept = [f.where for f in (a, b) if f.artifacts is None]
        lines.append("production cells unchanged; the sha256 differs through the artifacts"
                     + (f" ({', '.join(kept)} keeps none, so they are not compared)" if kept else ""))
    return lines


def review_version(database: AuditDatabase, entry: Mapping, sha256: str, *, notebook: str | Path | None = None,
                   runs: Sequence[RunDirectory] = ()) -> Review:
    """What approving `sha256` of the registry `entry` would cover (see `Review`); approves nothing."""
    name, version, last = entry["name"], entry["version"], entry.get("approval")
    current = _registrations(database, entry, sha256)
    old = new = None
    if last is not None and last.get("sha256") != sha256:
        new = find_version(name, version, sha256, files=[Path(notebook)] if notebook else [],
                           registrations=current, runs=runs)
        old = find_version(name, version, last["sha256"], runs=runs,
                           registrations=_registrations(database, entry, last["sha256"], last))
    return Review(name, version, sha256, current[0] if current else {}, last, _changes(last, sha256, old, new))


def _given_sha256(given: str, registered: str, name: str, version: str) -> None:
    text = given.strip().lower()
    if len(text) < MIN_SHA256_PREFIX or not registered.startswith(text):
        raise ApprovalError(f"--sha256 {given} is not the registered sha256 of {name} {version} ({registered})"
                            + (f"; give at least {MIN_SHA256_PREFIX} of its characters"
                               if registered.startswith(text) else ""))


def _checked_notebook(notebook: str | Path, name: str, version: str, registered: str | None) -> tuple[str, str]:
    """The notebook's sha256 and sha256 without status, from one read of it and of its artifacts: what the
    approval checks against the registry is what its evidence is looked up by."""
    from ..notebook.contract import lint_notebook

    spec = lint_notebook(notebook)
    if (spec.name, spec.version) != (name, version):
        raise ApprovalError(f"{notebook}: declares {spec.name} {spec.version}, not {name} {version}")
    artifacts = spec.artifact_bytes()
    sha256 = spec.sha256(artifacts=artifacts)
    if registered and sha256 != registered:
        raise ApprovalError(f"{notebook}: sha256 {sha256[:12]}… differs from the registry's "
                            f"{registered[:12]}… for {name} {version}; register this notebook first (extract or run "
                            "with --mongo-uri)")
    return sha256, spec.sha256_without_status(artifacts)


def _cited_evidence(database: AuditDatabase, entry: Mapping, registered: str, named: str | None,
                    waive: str | None) -> dict | None:
    """What the approval of `registered` cites: the latest passing comparison of its code (`named`: the sha256
    without status of the notebook the approver named, else the registry's), or the waiver; None when there is
    neither. Raises ApprovalError when the registry requires evidence and there is none."""
    name, version = entry["name"], entry["version"]
    if waive is not None:
        if not waive.strip():
            raise ApprovalError("--waive-evidence needs a reason (why this version needs no comparison)")
        return {"waived": waive.strip()}
    code = named if named is not None else (
        entry.get("sha256_without_status") if entry.get("sha256") == registered else None)
    found = database.store.registry.latest_evidence(name, version, code, passed=True) if code else None
    if found is not None:
        champion = found["champion"]
        return {"id": found["id"], "passed": True, "at": found["at"], "champion": f"{champion['name']}@"
                f"{champion['version']}", "sha256_without_status": code, "records": found["records"],
                "auc_difference": found["auc"]["difference"]}
    if database.store.registry.evidence_required():
        other = database.store.registry.latest_evidence(name, version)
        why = ("its notebook is not registered with a sha256 without status (register it again: mlsm-nb extract "
               "--mongo-uri ...)" if not code else
               f"no passing comparison of its code (sha256 without status {code[:12]}…)"
               + (f"; the latest comparison of {name}@{version}, {other['id']}, "
                  + ("did not pass" if not other["passed"] else "was of other code") if other else ""))
        raise ApprovalError(f"{name} {version}: {why}, and the registry requires evidence: compare it first "
                            f"(mlsm-nb compare CHAMPION {name}@{version} --mongo-uri ...), or approve it with "
                            "--waive-evidence REASON")
    return None


def approve(database: AuditDatabase, name: str, version: str, *, by: str | None = None,
            notebook: str | Path | None = None, sha256: str | None = None, run: str | Path | None = None,
            waive_evidence: str | None = None) -> Review:
    """Record an approval of model `name` `version` in the registry; returns its `Review` (`approval` set).

    The approved sha256 is the registry's for that version; with `notebook`, the notebook must declare
    that name and version and hash to the same; with `sha256`, it must be that sha256 (or its first 12 or
    more characters). `run` (a run directory or a folder of them) is also searched for earlier versions.
    The approval cites the latest passing comparison of the approved code (`_cited_evidence`), or
    `waive_evidence` (the reason none is needed).
    Raises ChangedSinceApproval (with the review) when the sha256 differs from the last approval and neither
    `notebook` nor `sha256` was given; ApprovalError when there is no registry, no such version in it,
    the notebook or sha256 differs from the registered one, or the registry requires evidence and there
    is none (nor a waiver).
    """
    _require_registry(database)
    entry = database.store.registry.entry(name, version)
    if entry is None:
        raise ApprovalError(f"model {name} {version} is not in the registry of {_where(database)}; "
                            "extract or run it with --mongo-uri first")
    registered = entry.get("sha256")
    named = None
    if notebook is not None:
        registered, named = _checked_notebook(notebook, name, version, registered)
    if not registered:
        raise ApprovalError(f"model {name} {version} has no notebook sha256 in the registry; "
                            "approve it with --notebook")
    if sha256 is not None:
        _given_sha256(sha256, registered, name, version)
    from .trace import run_directories

    review = review_version(database, entry, registered, notebook=notebook,
                            runs=run_directories(run) if run is not None else ())
    last = review.last
    if last is not None and last.get("sha256") != registered and notebook is None and sha256 is None:
        raise ChangedSinceApproval(review)
    evidence = _cited_evidence(database, entry, registered, named, waive_evidence)
    approval = {"by": by or _who(), "at": utc_now(), "sha256": registered, "registration": review.registered,
                **({"evidence": evidence} if evidence else {})}
    database.store.registry.record_approval(name, version, approval)
    review.approval = approval
    return review


def _when(value) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")
    return str(value)


def format_review(review: Review) -> str:
    """The review as lines for a terminal: what is approved, from where, and what changed since."""
    reg = review.registered
    commit = reg.get("git_head") or reg.get("git_commit")  # the checkout registered: notebook and artifacts
    lines = [f"{review.name} {review.version}  sha256 {review.sha256}",
             f"  notebook   {reg.get('source') or 'not recorded'}",
             f"  branch     {reg.get('branch') or 'not recorded (registered without --branch)'}",
             "  commit     " + ((commit + (" (with uncommitted changes)" if reg.get("git_dirty") else ""))
                                if commit else "none (not in git when registered)")]
    if reg.get("event"):
        how = f"run {reg['run_id']}" if reg.get("run_id") else _EVENTS.get(reg["event"], reg["event"])
        lines.append(f"  registered {_when(reg.get('at'))} by {how}")
    last = review.last
    if last:
        was = last.get("registration") or {}
        commit = was.get("git_head") or was.get("git_commit")
        origin = ", ".join(x for x in (f"branch {was['branch']}" if was.get("branch") else "",
                                       f"commit {commit[:12]}" if commit else "") if x)
        lines.append(f"  approved   sha256 {last.get('sha256')} by {last.get('by')} at {_when(last.get('at'))}"
                     + (f" ({origin})" if origin else ""))
    lines.append("  changes since the last approval:" if last and last.get("sha256") != review.sha256
                 else "  changes:")
    lines += [f"    {line}" for line in review.changes]
    return "\n".join(lines)


def set_approvals_required(database: AuditDatabase, required: bool, *, by: str | None = None) -> None:
    """Say in the registry whether active versions need an approval before they run."""
    _require_registry(database)
    database.store.registry.set_approvals_required(required, by or _who(), utc_now())


def set_evidence_required(database: AuditDatabase, required: bool, *, by: str | None = None) -> None:
    """Say in the registry whether an active version's approval must cite a passing comparison."""
    _require_registry(database)
    database.store.registry.set_evidence_required(required, by or _who(), utc_now())
