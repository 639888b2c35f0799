"""`mlsm-nb replay`: re-run a kept run from its own batch files and compare bit for bit.

The replay uses the run's own batches (so the same records in the same
batches), the notebooks at the paths the manifest recorded — refused when
their production cells or artifacts no longer hash to what the run recorded,
naming the artifact or the cell that changed (`_what_changed`) — and the run's
bundle when it scored from one. Every result document is then
compared with the original, key by key, as JSON: only the fields that differ
between any two runs by design (`IGNORED_FIELDS`) are left out.

A run kept from before mlsm-nb counted cells from 1 named them by index (``cell 4 [score]`` where
the replay says ``cell 5 [score]``): its stored results are never rewritten; the comparison reads
their cell numbers as the replay counts them (`as_counted_by`), so such a run still compares equal.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.model import model_key
from ..exceptions import MlsmError, NotebookError
from ..files import dumps, read_jsonl, write_jsonl
from ..notebook.changes import cell_parts, changed_artifacts, changed_cells, parts
from ..notebook.contract import NotebookSpec, lay_out, lint_notebook
from ..redact import REDACTED
from ..store.manifest import Manifest, NotebookEntry, RunStatus
from ..store.rundir import RunDirectory

IGNORED_FIELDS = ("run_id", "_timestamp", "_current")  # which run, when, and which is live: differ by design
_CELL_NUMBER = re.compile(r"\bcell (\d+)(?= \[\w+\])")  # a cell as messages name it (`exceptions.cell_ref`)
_KINDS_NAMING_CELLS = ("notebook_failed", "missing_dependency")  # whose `_error` mlsm-nb wrote, naming cells
MAX_SHOWN = 20


class ReplayRefused(MlsmError):
    """A kept run cannot be replayed as it ran (a file is missing or a notebook changed)."""


@dataclass
class Difference:
    """One value that differs: the record id, the model and version (None for the document), the key."""

    record_id: Any
    model: str | None
    version: str | None
    key: str
    original: Any
    replayed: Any

    def __str__(self) -> str:
        where = f"{self.model} {self.version} " if self.model else ""
        return f"id {self.record_id!r}: {where}{self.key}: {self.original!r} -> {self.replayed!r}"


@dataclass
class ReplayReport:
    """What a replay compared and found."""

    run_id: str
    replay_dir: Path
    replay_status: RunStatus
    original_status: RunStatus
    documents: int = 0
    differences: list[Difference] = field(default_factory=list)
    ignored: tuple[str, ...] = IGNORED_FIELDS

    @property
    def identical(self) -> bool:
        return not self.differences and self.replay_status == self.original_status


def _check_files(run: RunDirectory, manifest: Manifest) -> int:
    finished = manifest.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED)
    if not finished or not (manifest.input and manifest.input.complete):
        raise ReplayRefused(f"{run.manifest_path}: run {manifest.run_id} did not finish "
                            f"(status {manifest.status}); resume it before replaying")
    batches = manifest.input.batches
    for batch in range(batches):
        for path in (run.batch_path(batch), run.results_path(batch)):
            if not path.is_file():
                raise ReplayRefused(f"{path}: missing from the run directory; cannot replay without it")
    return batches


def _kept_cells(run: RunDirectory, key: str) -> list[tuple[int, str, str]] | None:
    """The production cells the run executed, as (index, tag, source): papermill runs keep that notebook."""
    import nbformat

    path = run.notebook_path(key)
    if not path.is_file():
        return None
    return [(c.metadata["mlsm"]["source_cell"], c.metadata["mlsm"]["tag"], c.source)
            for c in nbformat.read(path, as_version=4).cells if "source_cell" in c.metadata.get("mlsm", {})]


def _what_changed(run: RunDirectory, manifest: Manifest, entry: NotebookEntry, spec: NotebookSpec) -> str:
    """Why `spec` no longer hashes to what the run recorded: the artifact, or the cells (as people number them)
    and artifacts that differ. From the hash of each part the manifest recorded; for a run kept before it did,
    from the production cells it executed (papermill runs keep them), the artifacts judged by the whole hash."""
    key, source, now = model_key(entry.name, entry.version), Path(entry.source), parts(spec)
    if entry.cells is not None:
        cells = changed_cells(entry.cells, now["cells"])
        artifacts = changed_artifacts(entry.artifact_sha256 or {}, now["artifact_sha256"])
        recorded = {name: (entry.artifact_sha256 or {}).get(name) or "none" for name in artifacts}
    else:
        kept = _kept_cells(run, key)
        if kept is None:
            return (f"{source}: production cells or artifacts of {key} differ from the ones run {manifest.run_id} "
                    f"used (recorded sha256 {entry.sha256[:12]}…, now {spec.sha256()[:12]}…); the run kept no hash "
                    "of each cell and artifact (runs from before it did), nor its executed notebooks, so which one "
                    "changed cannot be told: compare with the notebook's recorded git commit")
        cells = changed_cells(cell_parts(kept), now["cells"])
        suspects = [] if spec.sha256(lay_out(kept)) == entry.sha256 else spec.artifacts
        artifacts = ({suspects[0]: f"artifact {suspects[0]} changed"} if len(suspects) == 1 else
                     {"": f"one of the artifacts {', '.join(suspects)} changed"} if suspects else {})
        recorded = {name: entry.sha256 for name in artifacts}  # only the notebook's whole hash is known
    if not cells and len(artifacts) == 1 and next(iter(artifacts)):
        [(name, digest)] = recorded.items()
        return (f"{source.parent / name}: artifact of {key} differs from the one run {manifest.run_id} used "
                f"(recorded sha256 {digest[:12]}…)")
    what = " and ".join(part for part, said in (("production cells", cells), ("artifacts", artifacts)) if said)
    return (f"{source}: {what} of {key} differ from the ones run {manifest.run_id} used: "
            + ", ".join([*cells, *artifacts.values()]))


def _check_notebooks(run: RunDirectory, manifest: Manifest) -> list[Path]:
    """The notebooks to run, each checked against the hash the run recorded; every one that differs is named."""
    sources, problems = [], []
    for entry in manifest.notebooks:
        problem = _notebook_problem(run, manifest, entry)
        if problem is None:
            sources.append(Path(entry.source))
        else:
            problems.append(problem)
    if len(problems) > 1:
        raise ReplayRefused(f"{len(problems)} notebooks are not the ones run {manifest.run_id} used:\n  "
                            + "\n  ".join(problems))
    if problems:
        raise ReplayRefused(problems[0])
    return sources


def _notebook_problem(run: RunDirectory, manifest: Manifest, entry: NotebookEntry) -> str | None:
    """Why the notebook of `entry` cannot be run again as the run ran it, or None."""
    key = model_key(entry.name, entry.version)
    source = Path(entry.source)
    if not source.is_file():
        return f"{source}: notebook of {key} is gone (paths are relative to where the run started; replay from there)"
    try:
        spec = lint_notebook(source)
    except NotebookError as exc:  # it no longer keeps the contract: it is not the notebook the run used either
        return str(exc)
    if (spec.name, spec.version) != (entry.name, entry.version):
        return f"{source}: now declares {spec.name} {spec.version}, the run ran {key}"
    if spec.sha256() != entry.sha256:
        return _what_changed(run, manifest, entry, spec)
    return None


def _parameters(manifest: Manifest, given: Mapping[str, Any]) -> dict:
    parameters = dict(manifest.setting("parameters") or {})
    for name, value in parameters.items():
        if value == REDACTED and name not in given:
            raise ReplayRefused(f"parameter {name} was a credential (never recorded): pass it with --param {name}=...")
    return {**parameters, **given}


def _rerun(manifest: Manifest, sources: list[Path], records: Path, out: Path, run_id: str,
           parameters: Mapping[str, Any]) -> Manifest:
    """Run the notebooks again with the settings the manifest recorded (the one place that calls the run
    path); only where it writes, its run id and the credentials differ. A Dask scheduler is not reused."""
    from dataclasses import fields

    from ..run.orchestrate import run_notebooks
    from ..run.settings import RunSettings

    mine = {"out", "run_id", "resume", "parameters", "scheduler"}
    recorded = {f.name: manifest.settings[f.name] for f in fields(RunSettings)
                if f.name in manifest.settings and f.name not in mine}
    return run_notebooks(sources, records, RunSettings(**recorded, out=str(out), run_id=run_id,
                                                       parameters=dict(parameters)))


def as_counted_by(entry: dict, shift: int) -> dict:
    """A result entry with the cell numbers mlsm-nb wrote in it (`_error_at`, and the `_error` of the kinds
    whose message it wrote) moved by `shift`: a kept run's entry as a run that counts cells `shift` higher
    writes it. The entry itself is not changed."""
    if not shift or "_error" not in entry:
        return entry

    def renumber(text):
        return _CELL_NUMBER.sub(lambda m: f"cell {int(m.group(1)) + shift}", text) if isinstance(text, str) else text

    moved = {**entry}
    if "_error_at" in moved:
        moved["_error_at"] = renumber(moved["_error_at"])
    if moved.get("_error_kind") in _KINDS_NAMING_CELLS:
        moved["_error"] = renumber(moved["_error"])
    return moved


def _compare_documents(original: dict, replayed: dict, id_field: str, shift: int = 0) -> list[Difference]:
    """The differences between a kept document and its replay; `shift`: how much higher the replay counts
    cells (1 for a run kept from before mlsm-nb counted them from 1)."""
    record_id = original.get(id_field)
    found = []
    for key in sorted((set(original) | set(replayed)) - set(IGNORED_FIELDS) - {"results"}):
        if dumps(original.get(key)) != dumps(replayed.get(key)):
            found.append(Difference(record_id, None, None, key, original.get(key), replayed.get(key)))
    a, b = original.get("results", {}), replayed.get("results", {})
    for model in sorted(set(a) | set(b)):
        for version in sorted(set(a.get(model, {})) | set(b.get(model, {}))):
            x, y = a.get(model, {}).get(version), b.get(model, {}).get(version)
            if x is None or y is None:
                found.append(Difference(record_id, model, version, "(model result)", x, y))
                continue
            counted = as_counted_by(x, shift)
            for key in sorted(set(x) | set(y)):
                if key == "_error_at" and key not in x:  # kept by a run before mlsm-nb named the cell
                    continue
                if key not in x or key not in y or dumps(counted[key]) != dumps(y[key]):
                    found.append(Difference(record_id, model, version, key, x.get(key), y.get(key)))
    return found


def compare_runs(original: RunDirectory, replay: RunDirectory, batches: int, id_field: str,
                 shift: int = 0) -> tuple[int, list]:
    """(documents compared, differences) between two runs of the same batches, batch by batch (`shift`: see
    `_compare_documents`)."""
    count, differences = 0, []
    for batch in range(batches):
        path = replay.results_path(batch)
        theirs = list(read_jsonl(path)) if path.is_file() else []
        ours = list(read_jsonl(original.results_path(batch)))
        for position in range(max(len(ours), len(theirs))):
            a = ours[position] if position < len(ours) else {}
            b = theirs[position] if position < len(theirs) else {}
            count += 1
            differences += _compare_documents(a, b, id_field, shift)
    return count, differences


def replay_run(run_dir: str | Path, out: str | Path | None = None,
               parameters: Mapping[str, Any] | None = None) -> ReplayReport:
    """Re-run the kept run `run_dir` and compare every result document with the original.

    The replay is a new run directory `<run_id>-replay-<UTC time>` in `out`
    (default: `RUN_DIR/replays`, so a folder of runs never takes a replay
    for the live run). `parameters` supplies credentials the manifest could
    not record. Raises ReplayRefused, before anything runs,
    naming the file when a batch or result file is missing or a notebook or
    artifact differs from the recorded hash.
    """
    run = RunDirectory(run_dir)
    manifest = run.read_manifest()
    batches = _check_files(run, manifest)
    sources = _check_notebooks(run, manifest)
    values = _parameters(manifest, parameters or {})
    bundle = manifest.setting("bundle")
    if bundle and not Path(bundle).is_dir():
        raise ReplayRefused(f"{bundle}: the bundle run {manifest.run_id} scored with is gone")
    out = Path(out) if out else run.root / "replays"
    replay_id = f"{manifest.run_id}-replay-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mlsm-replay-", dir=out) as scratch:
        records = Path(scratch) / "batches.jsonl"
        write_jsonl(records, (r for b in range(batches) for r in read_jsonl(run.batch_path(b))))
        replayed = _rerun(manifest, sources, records, out, replay_id, values)
    replay = RunDirectory(out / replay_id)
    shift = replayed.cells_counted_from - manifest.cells_counted_from
    count, differences = compare_runs(run, replay, batches, manifest.id_field, shift)
    return ReplayReport(manifest.run_id, replay.root, replayed.status, manifest.status, count, differences)


def format_replay(report: ReplayReport) -> str:
    """A few lines for the terminal: identical, or the differences (the first `MAX_SHOWN`)."""
    lines = [f"replayed run {report.run_id} as {report.replay_dir} ({report.replay_status})",
             f"compared {report.documents} result document(s); ignored fields that differ by design: "
             + ", ".join(report.ignored)]
    if report.identical:
        lines.append("identical: every result document matches the original")
        return "\n".join(lines)
    if report.replay_status != report.original_status:
        lines.append(f"the run {report.original_status}, the replay {report.replay_status}: see "
                     f"{report.replay_dir / 'manifest.json'}")
    lines.append(f"{len(report.differences)} difference(s):")
    lines += [f"  {d}" for d in report.differences[:MAX_SHOWN]]
    if len(report.differences) > MAX_SHOWN:
        lines.append(f"  ... and {len(report.differences) - MAX_SHOWN} more")
    return "\n".join(lines)
