"""`mlsm-nb run`: score record batches with model notebooks, then summary notebooks.

Orchestration only. The records are read once, in batches. With the papermill
engine each batch is written to a batch file and each (notebook, batch) is one
execution of the production notebook; an execution starts when the executions
it depends on (the models a summary needs, same batch) are done, and when every
execution of a batch is done its outputs are merged into the result documents.
With the in-process engine a whole batch is scored and merged in memory by a
worker process (`inmemory`). Both engines call `core.batch.score_batch`, so they
give the same results. The manifest records every step, so `resume` can finish
a run that was interrupted or partly failed.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from ..clock import run_start, utc_now
from ..exceptions import ConfigError, DataFileError, MlsmError
from ..files import file_sha256, read_jsonl, write_failure, write_jsonl
from ..notebook.contract import NotebookSpec, find_notebooks, lint_notebook
from ..notebook.dependencies import check_dependencies
from ..notebook.provenance import git_info
from ..notebook.gitflow import forced_status
from ..redact import is_secret, redact_parameters, redact_text
from ..store.base import ResultSink, check_approvals
from ..core.model import model_key
from ..store.rundir import RunDirectory, new_run_id
from .engines import get_engine
from .execution import Executor
from .merge import Merger, Tally
from .parameters import check_parameters
from .pools import DaskPool, ThreadPool
from .progress import ExecutionDone
from .inmemory import score_in_memory
from .records import (check_records_file, check_same_input, declared_types, estimate_records, input_identity,
                      planned_batches, read_batches)
from .settings import RunSettings
from .verdict import FAILED, INTERRUPTED, RUNNING, judge

_PACKAGES = ("papermill", "nbclient", "nbformat", "ipykernel", "pandas", "numpy", "pyarrow", "pymongo")


def _versions() -> dict:
    found = {"mlsm-nb": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _started_by() -> dict:
    who = {"user": getpass.getuser(), "host": socket.gethostname()}
    for var in ("JOB_NAME", "BUILD_NUMBER", "BUILD_URL", "GIT_COMMIT", "BRANCH_NAME"):
        if os.environ.get(var):
            who[var.lower()] = redact_text(os.environ[var])
    return who


def _order(specs: Sequence[NotebookSpec]) -> list[NotebookSpec]:
    """Models first, then summaries after the models they need."""
    seen: dict[tuple[str, str], NotebookSpec] = {}
    for spec in specs:
        if (spec.name, spec.version) in seen:
            raise ConfigError(f"{spec.path}: model {spec.name} {spec.version} is also defined in "
                              f"{seen[spec.name, spec.version].path}")
        seen[spec.name, spec.version] = spec
    ordered, placed = [], set()
    pending = list(specs)
    while pending:
        ready = [s for s in pending if all((m["name"], m["version"]) in placed for m in s.models)]
        if not ready:
            raise ConfigError("summary models depend on each other in a cycle: "
                              + ", ".join(f"{s.name} {s.version}" for s in pending))
        for spec in ready:
            ordered.append(spec)
            placed.add((spec.name, spec.version))
            pending.remove(spec)
    return ordered


class _Run:
    """One run's state: notebooks, run directory, manifest, sinks, and the executor."""

    def __init__(self, specs, run_dir: RunDirectory, manifest: dict, settings: RunSettings,
                 sinks: Sequence[ResultSink] = (), status: str | None = None, workers: int = 1):
        self.specs = {model_key(s.name, s.version): s for s in specs}
        self.run = run_dir
        self.manifest = manifest
        self.settings = settings
        self.sinks = list(sinks)
        parameters = settings.parameters
        secrets = {k: v for k, v in parameters.items() if is_secret(k, v)}
        self.executor = Executor(
            run_root=str(run_dir.root.resolve()), engine=settings.engine, timeout=settings.timeout,
            sources={key: str(spec.path.resolve()) for key, spec in self.specs.items()},
            labels={key: str(spec.path) for key, spec in self.specs.items()},
            needs={key: [model_key(m["name"], m["version"]) for m in spec.models] for key, spec in self.specs.items()},
            parameters={k: v for k, v in parameters.items() if k not in secrets}, secrets=secrets,
            status=status, bundle=str(Path(settings.bundle).resolve()) if settings.bundle else None,
            # Kept kernels per thread: its share of the notebooks, at least 4 (any thread may run any
            # notebook, so a smaller share keeps stopping kernels that are needed next).
            warm_kernels=max(-(-len(self.specs) // workers) + 1, min(len(self.specs), 4)) if settings.warm_kernels
            else 0, own_threads=not settings.scheduler)
        get_engine(settings.engine).prepare(self.executor, specs)
        for entry in manifest["notebooks"]:  # the status a model runs as: its bundle's (a develop bundle: draft)
            entry["status"] = self.executor.bundled_status.get(model_key(entry["name"], entry["version"]),
                                                               entry["status"])
        self.merger = Merger(run_root=self.executor.run_root, run_id=manifest["run_id"], id_field=settings.id_field,
                             models={key: (spec.name, spec.version) for key, spec in self.specs.items()})
        self.held: dict[str, set[int]] = {}

    def open_sinks(self) -> None:
        """Open the run in every sink and ask each which batches it really holds (resume stores the rest)."""
        for sink in self.sinks:
            self._guard(sink, "opening the run", lambda: (sink.open_run(self.manifest),
                                                          self.held.__setitem__(sink.name, sink.stored_batches(
                                                              self.manifest["run_id"]))))

    def store_batch(self, batch: int, documents: Sequence | None = None) -> None:
        """Hand a merged batch to every sink that lacks it (from memory when given, else from the run
        directory); after a sink fails, the run stops trying it (resume stores the rest). The batch's
        state in the manifest's `batch_states` becomes "stored" when every sink holds it, else stays
        "merged" (its results are in the run directory)."""
        for sink in self.sinks:
            if sink.name not in self.held or batch in self.held[sink.name]:
                continue
            docs = documents if documents is not None else list(read_jsonl(self.run.results_path(batch)))

            def write():
                problems = sink.write_batch(self.manifest["run_id"], batch, docs)
                self.held[sink.name].add(batch)
                if problems:
                    kept = self.manifest.setdefault("store_problems", [])
                    kept += [redact_text(p) for p in problems[:max(0, 20 - len(kept))]]

            self._guard(sink, f"batch {batch}", write)
        stored = all(batch in self.held.get(sink.name, ()) for sink in self.sinks)
        self.manifest.setdefault("batch_states", {})[str(batch)] = "stored" if stored else "merged"

    def finish_sinks(self) -> None:
        for sink in self.sinks:
            if sink.name in self.held:
                self._guard(sink, "the run record", lambda: sink.finish_run(self.manifest))

    def _guard(self, sink: ResultSink, what: str, action) -> None:
        from pymongo.errors import PyMongoError  # a sink may let a driver error through

        try:
            action()
        except (MlsmError, PyMongoError) as exc:
            self.held.pop(sink.name, None)
            self.manifest.setdefault("store_error", redact_text(f"{sink.name}: {what}: {exc}"))


def _notebook_entries(specs: Sequence[NotebookSpec]) -> list[dict]:
    return [{"name": s.name, "version": s.version, "status": s.status, "kind": s.kind, "sha256": s.sha256(),
             "source": str(s.path), **git_info(s.path.resolve())} for s in specs]


def _open_run(run_dir: RunDirectory, resume: bool, specs, records: Path, settings: dict) -> dict:
    notebooks = _notebook_entries(specs)
    if resume:
        manifest = run_dir.read_manifest().to_dict()
        _check_same_run(manifest, notebooks, records, settings)
        manifest.update(status=RUNNING, resumed_at=utc_now(), ended_at=None)
        for stale in ("store_error", "merge_errors", "error", "verdict"):
            manifest.pop(stale, None)
        return manifest
    return {"run_id": run_dir.root.name, "status": RUNNING, "started_at": run_start(), "ended_at": None,
            "started_by": _started_by(), **settings, "notebooks": notebooks,
            "input": {"path": redact_text(str(records)), **input_identity(records)},  # sha256: once read
            "executions": {}, "versions": _versions()}


def _check_same_run(manifest: dict, notebooks: list[dict], records: Path, settings: dict) -> None:
    """ConfigError naming the first thing that differs from what the run started with."""
    where = f"run {manifest['run_id']}"
    before = {(n["name"], n["version"]): n["sha256"] for n in manifest["notebooks"]}
    now = {(n["name"], n["version"]): n["sha256"] for n in notebooks}
    if before != now:
        changed = sorted(f"{name} {version}" for name, version in set(before) ^ set(now)) or sorted(
            f"{name} {version}" for (name, version), digest in now.items() if before[name, version] != digest)
        raise ConfigError(f"{where}: the notebooks differ from the ones it started with ({', '.join(changed)}); "
                          "resume with the same notebooks and artifacts, or start a new run")
    check_same_input(manifest["input"], records, where)
    for name in (*RunSettings.result_settings(), "status_override"):
        if name in settings and manifest.get(name) != settings[name]:
            raise ConfigError(f"{where}: {name} differs from the run's ({_show(manifest.get(name))} at the start, "
                              f"{_show(settings[name])} now); resume with the same settings, or start a new run")


def _show(value) -> str:
    return "none" if value is None else repr(value)


def run_notebooks(paths: Sequence, records: str | Path, settings: RunSettings | None = None, *,
                  sinks: Sequence[ResultSink] = (), on_progress: Callable[[ExecutionDone], None] | None = None,
                  **options: Any) -> dict:
    """Run model notebooks then summary notebooks over the records; returns the manifest.

    Results, executed notebooks and the manifest go to ``<out>/<run_id>/``
    (see `RunSettings` for every option). A failed execution is recorded (its
    records get `notebook_failed`) while everything else goes on. The
    manifest's `status` is "succeeded", "succeeded with errors" (every model's
    error rate within `max_error_rate`) or "failed" (see `verdict`);
    "interrupted" when stopped. `on_progress(ExecutionDone)` is called after
    each execution, and on a resume once for each execution done before it
    (`ExecutionDone.earlier`). Each merged batch goes, from memory, to the run
    directory and to every other `ResultSink` in `sinks` (e.g. MongoDB).
    Raises ConfigError or InputFileError before any notebook runs when the
    setup or the records file is unusable. `options` (RunSettings' fields)
    are a shorthand for ``settings=RunSettings(**options)``.
    """
    if settings and options:
        raise TypeError("pass either settings or RunSettings' fields as keyword arguments, not both")
    settings = settings or RunSettings(**options)
    records = Path(records)
    specs = _read_notebooks(paths)
    check_parameters(specs, settings.parameters)
    run_dir = RunDirectory(Path(settings.out) / (settings.run_id or new_run_id()))
    workers = settings.workers or os.cpu_count() or 1
    status, reason = forced_status(settings.branch)
    check_approvals(sinks, specs, status)  # a registry that requires approvals refuses unapproved active versions
    recorded = {**asdict(settings), "workers": workers, "parameters": redact_parameters(settings.parameters),
                "status_override": {"status": status, "reason": reason} if status else None}
    for name in ("out", "run_id", "resume"):
        recorded.pop(name)
    check_records_file(records)
    if not settings.resume:
        run_dir.create()
    elif not run_dir.manifest_path.is_file():
        raise ConfigError(f"{run_dir.root}: no run to resume (no manifest.json)")
    with run_dir.lock():
        return _run_locked(specs, records, settings, run_dir, recorded, sinks, status, workers, on_progress)


def _run_locked(specs, records: Path, settings: RunSettings, run_dir: RunDirectory, recorded: dict, sinks,
                status: str | None, workers: int, on_progress) -> dict:
    manifest = _open_run(run_dir, settings.resume, specs, records, recorded)
    manifest["sinks"] = [sink.name for sink in sinks]
    keys = [model_key(s.name, s.version) for s in specs]
    run_dir.prepare(keys)
    run_dir.write_manifest(manifest)
    try:
        types = declared_types(s.fields for s in specs)
        state = _Run(specs, run_dir, manifest, settings, sinks, status, workers)
        state.open_sinks()
        if getattr(get_engine(settings.engine), "in_memory", False):
            _score_batches(state, records, types, keys, workers, on_progress)
        else:
            _execute_all(state, records, types, keys, workers, on_progress)
        manifest["status"], manifest["verdict"] = judge(manifest, settings.max_error_rate)
        manifest["ended_at"] = utc_now()
        state.finish_sinks()
        manifest["status"], manifest["verdict"] = judge(manifest, settings.max_error_rate)  # a sink may have failed
        run_dir.write_manifest(manifest)
    except BaseException as exc:
        manifest.update(status=INTERRUPTED if isinstance(exc, KeyboardInterrupt) else FAILED,
                        ended_at=utc_now(), error=redact_text(f"{type(exc).__name__}: {exc}"))
        try:
            run_dir.write_manifest(manifest)
        except OSError:
            pass  # e.g. the disk is full: the manifest on disk says "running", which resume finishes
        if isinstance(exc, OSError):
            raise MlsmError(write_failure(run_dir.root, exc)) from exc
        raise
    return manifest


def _read_notebooks(paths: Sequence) -> list[NotebookSpec]:
    """The notebooks' specs, models first, then summaries after the models they need."""
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise ConfigError(f"no notebooks found in {', '.join(map(str, paths))}")
    specs = [lint_notebook(p) for p in notebooks]
    check_dependencies(specs)
    return _order(specs)


def _intact(state: _Run, key: str, batch: int) -> bool:
    entry = state.manifest["executions"].get(key, {}).get(str(batch))
    output = state.run.output_path(key, batch)
    return bool(entry and entry["status"] == "ok" and output.is_file()
                and file_sha256(output) == entry.get("output_sha256"))


_MERGE = "<merge>"  # marks a batch's merge among the running executions


def _outcome(state: _Run, pool, future, key: str, batch: int) -> dict:
    """The manifest entry of a finished execution; a task the pool lost (a dead Dask worker) is failed."""
    try:
        return pool.result(future)
    except Exception as exc:  # noqa: BLE001 - e.g. distributed's KilledWorker
        error = state.executor.describe(exc, key, batch)
        records = state.executor.write_failure(key, batch, error)
        return {"status": "failed", "error": error, "worker": "lost", "seconds": None, "records": records,
                "errors": records}


def _merge_failed(state: _Run, keys: list[str], batch: int, exc: Exception) -> None:
    """Record why a batch could not be merged. A model's output that cannot be read back fails that
    model's execution (resume runs it again); anything else is the batch's `merge_errors` entry (resume
    merges it again)."""
    outputs = {state.run.output_path(key, batch).resolve(): key for key in keys}
    culprit = outputs.get(Path(exc.path).resolve()) if isinstance(exc, DataFileError) else None
    if culprit is not None:
        error = f"{state.executor.location(culprit)}: batch {batch}: its output cannot be merged: {exc}"
        state.manifest["executions"][culprit][str(batch)].update(status="failed", error=redact_text(error))
        return
    why = exc if isinstance(exc, MlsmError) else f"{type(exc).__name__}: {exc}"
    state.manifest.setdefault("merge_errors", {})[str(batch)] = redact_text(
        f"batch {batch}: its results could not be merged: {why}")


def _execute_all(state: _Run, records: Path, types: Mapping[str, str], keys: list[str], workers: int,
                 on_progress) -> None:
    """Run every execution not done yet, merge each batch when its executions are done; count per model.

    The records are read while executions run, a batch file at a time, as far ahead as the workers need:
    the first executions start after one batch, not after the whole input (a resume reads the input
    again unless the run had read all of it).
    """
    manifest, run, settings = state.manifest, state.run, state.settings
    needs = state.executor.needs
    batch_stats: dict[str, dict] = manifest.setdefault("batch_stats", {})
    summary: dict = {}
    reader = None
    if not manifest["input"].get("complete"):
        reader = read_batches(records, settings.id_field, settings.batch_size, types, run.rejected_path, summary)
    expected = estimate_records(records) if reader is not None else None
    done: set[tuple[str, int]] = set()
    todo: list[tuple[str, int]] = []
    merged: set[int] = set()
    ids: dict[int, list] = {}  # record ids of batches read and not merged yet: a merge need not read its batch again
    finished = 0
    running: dict[Any, tuple[str, int]] = {}
    pool = (DaskPool(settings.scheduler) if settings.scheduler
            else ThreadPool(workers, getattr(get_engine(settings.engine), "release", None)))
    # Here, batches merge in a thread of their own, so that a merge never holds back an execution.
    merges = pool if settings.scheduler else ThreadPool(1)
    keep = bool(state.sinks) and not settings.scheduler  # a thread's merge hands its documents to the sinks in memory

    def total() -> int | None:
        batches = planned_batches(manifest["input"] if reader is None else summary, expected, settings.batch_size)
        return None if batches is None else len(keys) * batches

    def add(batch: int) -> None:
        """A batch whose file is written: what of it is done (resume), what to run, and its merge if due."""
        nonlocal finished
        for key in keys:  # models before the summaries that consume them: a re-run model re-runs its summaries
            if _intact(state, key, batch) and all((dep, batch) in done for dep in needs[key]):
                done.add((key, batch))
                finished += 1
                if on_progress:
                    on_progress(ExecutionDone.of(key, state.executor.labels[key], batch,
                                                 manifest["executions"][key][str(batch)], finished, total(), True))
            else:
                todo.append((key, batch))
        if all((k, batch) in done for k in keys):
            if run.results_path(batch).is_file() and str(batch) in batch_stats:
                merged.add(batch)
                ids.pop(batch, None)
            else:  # executions done, merge lost (killed in between, or deleted)
                merge(batch)

    def merge(batch: int) -> None:
        running[merges.submit(state.merger.merge, batch, keep, ids.pop(batch, None))] = (_MERGE, batch)

    def ready() -> list[tuple[str, int]]:  # an execution starts as soon as the ones it needs (same batch) are done
        return [i for i in todo if all((d, i[1]) in done for d in needs[i[0]])]

    try:
        if reader is None:
            for batch in range(manifest["input"]["batches"]):
                add(batch)
        while True:
            startable = ready()
            while reader is not None and len(startable) < pool.capacity:  # read ahead as far as the workers need
                item = next(reader, None)
                if item is None:
                    reader = None
                    manifest["input"].update(summary)
                    run.write_manifest(manifest)
                    break
                batch, chunk = item
                write_jsonl(run.batch_path(batch), chunk)
                ids[batch] = [record[settings.id_field] for record in chunk]
                add(batch)
                startable = ready()
            busy = sum(key is not _MERGE or merges is pool for key, _ in running.values())
            for item in startable[:max(0, pool.capacity - busy)]:
                todo.remove(item)
                running[pool.submit(state.executor.execute, *item)] = item
            if not running:
                break
            for future in pool.wait_any(running):
                key, batch = running.pop(future)
                if key is _MERGE:  # the batch's result documents are written
                    try:
                        outcome = merges.result(future)
                    except Exception as exc:  # noqa: BLE001 - one batch's merge failing never stops the others
                        _merge_failed(state, keys, batch, exc)
                    else:
                        batch_stats[str(batch)] = outcome["models"]
                        merged.add(batch)
                        state.store_batch(batch, outcome.get("documents"))
                    run.write_manifest(manifest)
                    continue
                entry = _outcome(state, pool, future, key, batch)
                manifest["executions"].setdefault(key, {})[str(batch)] = entry
                done.add((key, batch))
                finished += 1
                run.write_manifest(manifest)  # the execution is recorded before anything builds on it
                if all((k, batch) in done for k in keys) and batch not in merged:
                    merge(batch)
                if on_progress:
                    on_progress(ExecutionDone.of(key, state.executor.labels[key], batch, entry, finished, total()))
    except BaseException:
        pool.close(cancel=True)
        if merges is not pool:
            merges.close(cancel=True)  # a running merge finishes its file, which resume merges again anyway
        if reader is not None:
            reader.close()
        raise
    pool.close()
    if merges is not pool:
        merges.close()
    _name_late_kernel_logs(state)
    for batch in sorted(merged):
        state.store_batch(batch)  # batches merged before a resume, not stored yet
    _count(manifest, keys)


def _name_late_kernel_logs(state: _Run) -> None:
    """Name in its execution's entry a kernel log written after the entry was: what a kernel wrote as it
    stopped (its kernels have all stopped now, and only logs that are not empty are left)."""
    run = state.run
    for key, batches in state.manifest["executions"].items():
        for batch, entry in batches.items():
            log = run.kernel_log_path(key, int(batch))
            if "kernel_log" not in entry and log.is_file():
                entry["kernel_log"] = str(log.relative_to(run.root))


def _score_batches(state: _Run, records: Path, types: Mapping[str, str], keys: list[str], workers: int,
                   on_progress) -> None:
    """The in-memory path (see `inmemory`): batches read, scored and merged in worker processes."""
    finished = 0

    def done(key: str, batch: int, entry: dict, total: int | None, earlier: bool) -> None:
        nonlocal finished
        finished += 1
        if on_progress:
            on_progress(ExecutionDone.of(key, state.executor.labels[key], batch, entry, finished, total, earlier))

    for batch in sorted(score_in_memory(state, records, types, workers, done)):
        state.store_batch(batch)  # batches merged before a resume, not stored yet
    _count(state.manifest, keys)


def _count(manifest: dict, keys: list[str]) -> None:
    """The run's failed executions and per-model counts, from its executions and batches."""
    batch_stats = manifest.get("batch_stats", {})
    failed = sum(1 for k in keys for e in manifest["executions"].get(k, {}).values() if e["status"] != "ok")
    totals = {key: Tally() for key in keys}
    for _, per_model in sorted(batch_stats.items(), key=lambda item: int(item[0])):  # same sums whatever the order
        for key, counts in per_model.items():
            totals[key].merge(Tally(counts))
    manifest.update(failed_executions=failed, models={key: tally.as_dict() for key, tally in totals.items()})
