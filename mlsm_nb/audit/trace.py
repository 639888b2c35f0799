"""`mlsm-nb trace`: from one stored score to everything that produced it.

The result document of an id (the live one, or the one of a given run) is
joined with its run's manifest (who, when, input file and hash, batch and
executed notebook, package versions), each model's notebook entry (sha256,
git commit, status and why) and, in MongoDB, the model registry (approval)
and the recorded outcomes. In MongoDB that costs one query per collection.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.model import model_key
from ..core.output import REASONS_KEY, reasons_problem, reasons_text
from ..exceptions import MlsmError
from ..files import file_sha256
from ..store.manifest import Manifest
from ..store.rundir import MANIFEST, RunDirectory
from .database import AuditDatabase, as_plain


class TraceError(MlsmError):
    """The id, run or model asked for cannot be traced (one line saying why)."""


def id_candidates(text: str) -> list:
    """The stored ids a typed ID may mean: the text itself, and its JSON value (`7` -> 7, `'"7"'` -> "7")."""
    found: list = [text]
    try:
        value = json.loads(text)
    except ValueError:
        return found
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value != text:
        found.append(value)
    return found


def _same_id(a, b) -> bool:
    return type(a) is type(b) and a == b


def parse_model(text: str | None) -> tuple[str | None, str | None]:
    """`NAME[@VERSION]` -> (name, version or None)."""
    if not text:
        return None, None
    name, _, version = text.partition("@")
    return name, version or None


# -- run directories -----------------------------------------------------------

def run_directories(path: str | Path) -> list[RunDirectory]:
    """A run directory, or every run directory inside a folder of runs (e.g. `runs/`)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return [RunDirectory(path)]
    runs = [RunDirectory(p) for p in sorted(path.iterdir()) if (p / MANIFEST).is_file()] if path.is_dir() else []
    if not runs:
        raise TraceError(f"{path}: not a run directory (no {MANIFEST}), nor a folder of run directories")
    return runs


def _find_in_run(run: RunDirectory, candidates: list, id_field: str) -> Iterator[tuple[int, dict]]:
    """(batch, document) of each result document of the run whose id is one of the candidates."""
    needles = [json.dumps(c, ensure_ascii=False).encode() for c in candidates]
    for path in sorted((run.root / "results").glob("batch-*.jsonl")):
        batch = int(path.stem.split("-")[1])
        with open(path, "rb") as f:
            for line in f:
                if any(n in line for n in needles):  # parse only the lines that can match
                    document = json.loads(line)
                    if any(_same_id(document.get(id_field), c) for c in candidates):
                        yield batch, document


def _batch_of(run: RunDirectory, record_id, id_field: str) -> int | None:
    return next((batch for batch, _ in _find_in_run(run, [record_id], id_field)), None)


def _hits_in_directories(runs: list[RunDirectory], candidates: list) -> list[dict]:
    hits = []
    for run in runs:
        manifest = run.read_manifest()
        for batch, document in _find_in_run(run, candidates, manifest.id_field):
            hits.append({"document": document, "manifest": manifest, "batch": batch, "run_dir": run})
    hits.sort(key=lambda h: (h["manifest"].started_at or "", h["manifest"].run_id), reverse=True)
    return hits


def _hits_in_database(db: AuditDatabase, candidates: list, run_dirs: list[RunDirectory] | None) -> list[dict]:
    documents = db.results_for(candidates)
    manifests = db.runs_by_id({d["run_id"] for d in documents})
    local = {r.root.name: r for r in run_dirs or []}
    hits = []
    for document in documents:
        found = manifests.get(document["run_id"])
        manifest = Manifest.from_dict(found) if found else None  # None: the run's record is gone
        run = local.get(document["run_id"])
        batch = _batch_of(run, document[db.id_field], db.id_field) if run else None
        hits.append({"document": document, "manifest": manifest, "batch": batch, "run_dir": run})
    return hits


def _pick(hits: list[dict], text: str, run_id: str | None, where: str, id_field: str) -> tuple[dict, list[dict]]:
    if not hits:
        raise TraceError(f"id {text!r} was never scored in {where}")
    types = {type(h["document"][id_field]).__name__ for h in hits}
    if len(types) > 1:
        raise TraceError(f"id {text} is ambiguous in {where}: stored both as a string and as a number; "
                         f"pass '\"{text}\"' for the string")
    if run_id:
        chosen = [h for h in hits if h["document"]["run_id"] == run_id]
        if not chosen:
            runs = ", ".join(sorted({h["document"]["run_id"] for h in hits}))
            raise TraceError(f"id {text!r} was not scored in run {run_id} (it was in: {runs})")
        chosen = chosen[0]
    else:
        chosen = hits[0]  # live: `_current` 0 in MongoDB, the run started last in run directories
    others = [h for h in hits if h is not chosen]
    return chosen, others


# -- assembling the trace ---------------------------------------------------------

def _bundle(manifest: Manifest | None, key: str) -> dict | None:
    path = manifest.setting("bundle") if manifest else None
    if not path:
        return None
    info: dict[str, Any] = {"path": path}
    bundle_manifest = Path(path) / "manifest.json"
    if bundle_manifest.is_file():
        info["manifest_sha256"] = file_sha256(bundle_manifest)
        entries = json.loads(bundle_manifest.read_text()).get("models", [])
        entry = next((e for e in entries if model_key(e["name"], e["version"]) == key), None)
        if entry:
            info["module_sha256"] = entry.get("module_sha256")
    else:
        info["missing"] = True
    return info


def _model_rows(hit: dict, name: str | None, version: str | None, registry: dict, record_id) -> list[dict]:
    manifest, document = hit["manifest"], hit["document"]
    notebooks = {model_key(n.name, n.version): n.to_dict() for n in manifest.notebooks} if manifest else {}
    override = manifest.setting("status_override") if manifest else None
    rows = []
    for model, versions in document.get("results", {}).items():
        for ver, entry in versions.items():
            if (name and model != name) or (version and ver != version):
                continue
            key = model_key(model, ver)
            notebook = notebooks.get(key, {})
            status = entry.get("_status", notebook.get("status"))
            if override:
                why = override.get("reason")
            elif status == notebook.get("status"):
                why = "declared in the notebook's version cell"
            else:
                why = f"the notebook declares {notebook.get('status')}"
            found = manifest.execution(key, hit["batch"]) if manifest and hit["batch"] is not None else None
            execution = found.to_dict() if found else None
            executed = None
            if found and found.executed:
                executed = str(hit["run_dir"].root / found.executed) if hit["run_dir"] else found.executed
            reg = registry.get((model, ver)) or {}
            rows.append({
                "name": model, "version": ver, "kind": notebook.get("kind"),
                "result": {k: v for k, v in entry.items() if k != "_status"},
                "status": status, "notebook_status": notebook.get("status"), "why": why,
                "sha256": notebook.get("sha256"), "source": notebook.get("source"),
                "git_commit": notebook.get("git_commit") or reg.get("git_commit") or reg.get("commit"),
                "git_dirty": notebook.get("git_dirty"), "repository": reg.get("repository"),
                "branch": (manifest.setting("branch") if manifest else None) or reg.get("branch"),
                "execution": ({k: execution.get(k) for k in ("status", "seconds", "error") if k in execution}
                              if execution else None),
                "executed_notebook": executed, "bundle": _bundle(manifest, key),
                "approval": as_plain(reg.get("approval")) if reg else None,
            })
    if not rows:
        wanted = model_key(name, version) if version else name
        present = ", ".join(model_key(m, v) for m, vs in document.get("results", {}).items() for v in vs)
        raise TraceError(f"id {record_id!r} has no result of model {wanted} in run "
                         f"{document['run_id']} (it has: {present})")
    return rows


def trace_record(record_id: str, *, run: str | Path | None = None, database: AuditDatabase | None = None,
                 run_id: str | None = None, model: str | None = None) -> dict:
    """The provenance of the live result of `record_id` (as typed: `7` also finds the number 7).

    `run` is a run directory or a folder of them; `database` an AuditDatabase
    (MongoDB decides which result is live; `run`, when also given, locates the
    batch and executed notebook). `run_id` picks the result of that run
    instead of the live one; `model` (`NAME[@VERSION]`) narrows the models
    shown. Returns JSON-ready data; raises TraceError for an unknown id, run
    or model, or an id stored both as a string and a number.
    """
    if run is None and database is None:
        raise TraceError("say where the results are: --run RUN_DIR or --mongo-uri URI")
    candidates = id_candidates(record_id)
    run_dirs = run_directories(run) if run is not None else None
    if database is not None:
        hits = _hits_in_database(database, candidates, run_dirs)
        where, id_field = f"MongoDB ({database.store.db.name}.{database.results.name})", database.id_field
    else:
        hits = _hits_in_directories(run_dirs, candidates)
        where = str(run)
        id_field = hits[0]["manifest"].id_field if hits else "id"
    chosen, others = _pick(hits, record_id, run_id, where, id_field)
    document, manifest = chosen["document"], chosen["manifest"]
    name, version = parse_model(model)
    keys = {(m, v) for m, vs in document.get("results", {}).items() for v in vs}
    registry = database.store.registry.entries(keys) if database is not None else {}
    if database is not None:
        outcomes = database.outcomes_for([document[id_field]])
    else:
        outcomes = _local_outcomes(chosen, id_field)
    run_dir = chosen["run_dir"]
    batch = chosen["batch"]
    return as_plain({
        "id": document[id_field], "id_field": id_field, "where": where,
        "live": run_id is None or (document.get("_current") == 0 if database is not None else chosen is hits[0]),
        "run": {"run_id": document["run_id"], **_run_facts(manifest),
                "run_dir": str(run_dir.root) if run_dir else None},
        "batch": batch,
        "batch_file": str(run_dir.batch_path(batch)) if run_dir and batch is not None else None,
        "scored_at": document.get("_timestamp"),
        "models": _model_rows(chosen, name, version, registry, document[id_field]),
        "outcomes": outcomes,
        "other_runs": [{"run_id": h["document"]["run_id"],
                        "started_at": h["manifest"].started_at if h["manifest"] else None} for h in others],
    })


def _run_facts(manifest: Manifest | None) -> dict:
    """What a trace shows of a run: its status, times, who started it, how, on what (None: unknown)."""
    if manifest is None:
        return dict.fromkeys(("status", "started_at", "ended_at", "started_by", "engine", "branch", "status_override",
                              "input", "versions"))
    return {"status": manifest.status, "started_at": manifest.started_at, "ended_at": manifest.ended_at,
            "started_by": manifest.started_by or None, "engine": manifest.setting("engine"),
            "branch": manifest.setting("branch"), "status_override": manifest.setting("status_override"),
            "input": manifest.input.to_dict() if manifest.input else None, "versions": manifest.versions or None}


def _local_outcomes(hit: dict, id_field: str) -> list[dict]:
    from .outcomes import run_outcomes

    record_id = hit["document"][id_field]
    return [o for o in run_outcomes(hit["run_dir"].root) if _same_id(o.get(id_field), record_id)]


# -- one screen ---------------------------------------------------------------------

def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)


def format_trace(trace: dict) -> str:
    """The trace as one screen of text for a terminal."""
    run = trace["run"]
    who = run.get("started_by") or {}
    by = f"{who.get('user', '?')}@{who.get('host', '?')}"
    if who.get("job_name"):
        by += f", Jenkins {who['job_name']} #{who.get('build_number', '?')}"
    lines = [f"{trace['id_field']} {_short(trace['id'])}: {'live result' if trace['live'] else 'result'} "
             f"of run {run['run_id']} ({run.get('status') or 'status unknown'})"]
    lines.append(f"  started   {run.get('started_at')} by {by}; {run.get('engine')} engine"
                 + (f", branch {run['branch']}" if run.get("branch") else ""))
    data = run.get("input") or {}
    lines.append(f"  input     {data.get('path')}  sha256 {data.get('sha256')}")
    if trace["batch"] is not None:
        lines.append(f"  batch     {trace['batch']}: {trace['batch_file']}")
    else:
        lines.append("  batch     not recorded in MongoDB; add --run DIR (the run directory or its parent) to find it")
    if run.get("run_dir"):
        lines.append(f"  run dir   {run['run_dir']}")
    if trace.get("scored_at"):
        scored = dt.datetime.fromtimestamp(trace["scored_at"], dt.UTC).isoformat(timespec="seconds")
        lines.append(f"  scored    {scored}")
    for row in trace["models"]:
        lines.append(f"{row['name']} {row['version']} ({row.get('kind') or 'model'})")
        lines.append("  result    " + ", ".join(f"{k}={_short(v)}" for k, v in row["result"].items()
                                                if k != REASONS_KEY))
        if REASONS_KEY in row["result"]:
            reasons = row["result"][REASONS_KEY]
            lines.append("  reasons   " + (str(reasons) if reasons_problem(reasons) else reasons_text(reasons)))
        lines.append(f"  status    {row['status']}: {row['why']}")
        git = [f"commit {row['git_commit']}" + (" (uncommitted changes)" if row.get("git_dirty") else "")
               if row.get("git_commit") else "not a git checkout"]
        git += [f"repo {row['repository']}"] if row.get("repository") else []
        git += [f"branch {row['branch']}"] if row.get("branch") else []
        lines.append(f"  notebook  {row['source']}  sha256 {row['sha256']}")
        lines.append("  git       " + ", ".join(git))
        if row.get("bundle"):
            b = row["bundle"]
            hashes = f"  manifest sha256 {b['manifest_sha256']}, module sha256 {b.get('module_sha256')}"
            lines.append(f"  bundle    {b['path']}" + (" (gone)" if b.get("missing") else hashes))
        execution = row.get("execution") or {}
        if row.get("executed_notebook"):
            lines.append(f"  executed  {row['executed_notebook']} ({execution.get('status')})")
        elif execution:
            lines.append(f"  executed  in-process ({execution.get('status')}; no executed notebook)")
        if row.get("approval"):
            a = row["approval"]
            lines.append(f"  approved  by {a.get('by')} at {a.get('at')} for sha256 {a.get('sha256')}")
    for outcome in trace["outcomes"]:
        lines.append(f"outcome {outcome['label']} = {outcome['value']} (observed {outcome.get('observed_at')})")
    if trace["other_runs"]:
        lines.append("also scored in: " + ", ".join(f"{o['run_id']} ({o.get('started_at')})"
                                                    for o in trace["other_runs"]) + "  (--run-id picks one)")
    versions = run.get("versions") or {}
    lines.append("versions  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)
