"""`mlsm-nb run`: score record batches with model notebooks, then summary notebooks.

Records are split into batch files once; each (notebook, batch) is one
execution — papermill runs the production notebook (the papermill engine) or
the extracted Model scores in-process (the in-process engine); both call
`batch.score_batch`, so they give the same results. An execution starts when
the executions it depends on (the models a summary needs, same batch) are
done; when every execution of a batch is done its results are merged into the
result documents. The manifest records every step, so `resume` can finish a
run that was interrupted or partly failed.
"""

from __future__ import annotations

import getpass
import logging
import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nbformat

from .._version import __version__
from ..clock import utc_now
from ..exceptions import ConfigError, MlsmError
from ..notebook.extract import check_dependencies, git_info
from ..files import file_sha256, read_jsonl, write_jsonl
from ..notebook.gitflow import forced_status
from ..notebook.contract import NotebookSpec, find_notebooks, lint_notebook, read_notebook
from .records import Rejected, check_records_file, declared_types, read_records
from ..redact import is_secret, redact_parameters, redact_text
from .execution import Executor, secret_env
from .merge import Merger, Tally
from .pools import DaskPool, ThreadPool
from ..store.mongo import MongoStore
from ..store.rundir import RunDirectory, model_key, new_run_id
from ..audit.approvals import check_approvals

log = logging.getLogger(__name__)

ENGINES = ("papermill", "inprocess")
DEFAULT_BATCH_SIZE = 50_000
_PACKAGES = ("papermill", "nbclient", "nbformat", "ipykernel", "pandas", "numpy", "pyarrow", "pymongo")

_RUNNER_SOURCE = """\
# mlsm-nb runner: score this batch with the model defined above and save its outputs
from mlsm_nb.run.runtime import run_in_notebook

mlsm_summary = run_in_notebook(globals(), mlsm_batch_path, mlsm_output_path, mlsm_dependencies, mlsm_status)"""
_SHOW_SOURCE = "mlsm_summary.show()"


class _RunnerParameterNoise(logging.Filter):
    """Drop papermill's warnings about the runner's own parameters (expected, not the author's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Passed unknown parameter: mlsm_")
                    or message.startswith("Input notebook does not contain a cell with tag 'parameters'"))


logging.getLogger("papermill").addFilter(_RunnerParameterNoise())


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


def _production_notebook(spec: NotebookSpec, secret_names: Sequence[str]) -> nbformat.NotebookNode:
    """The notebook papermill runs: production cells, secret loading, the runner's cells."""
    source = read_notebook(spec.path)
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    for cell in spec.cells:
        code = nbformat.v4.new_code_cell(cell.source)
        code.metadata["tags"] = [cell.tag]
        code.metadata["mlsm"] = {"source_cell": cell.index, "tag": cell.tag}
        nb.cells.append(code)
        if cell.tag == "parameters" and secret_names:
            nb.cells.append(_secrets_cell(secret_names))
    if secret_names and spec.cell("parameters") is None:
        nb.cells.insert(0, _secrets_cell(secret_names))
    for text in (_RUNNER_SOURCE, _SHOW_SOURCE):
        runner = nbformat.v4.new_code_cell(text)
        runner.metadata["tags"] = ["mlsm-runner"]
        nb.cells.append(runner)
    return nb


def _secrets_cell(names: Sequence[str]) -> nbformat.NotebookNode:
    lines = ["# credentials come from the environment, never written into this notebook",
             "import json as _mlsm_json, os as _mlsm_os"]
    lines += [f"{name} = _mlsm_json.loads(_mlsm_os.environ[{secret_env(name)!r}])" for name in names]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["mlsm-runner"]
    return cell


class _Run:
    """One run's state: notebooks, run directory, manifest, store, and the executor."""

    def __init__(self, specs, run_dir: RunDirectory, manifest: dict, engine: str, parameters: Mapping,
                 timeout: float, id_field: str, store: MongoStore | None = None, status: str | None = None,
                 bundle: Path | None = None):
        self.specs = {model_key(s.name, s.version): s for s in specs}
        self.run = run_dir
        self.manifest = manifest
        self.id_field = id_field
        self.store = store
        secrets = {k: v for k, v in parameters.items() if is_secret(k, v)}
        self.executor = Executor(
            run_root=str(run_dir.root.resolve()), engine=engine, timeout=timeout,
            sources={key: str(spec.path.resolve()) for key, spec in self.specs.items()},
            labels={key: str(spec.path) for key, spec in self.specs.items()},
            needs={key: [model_key(m["name"], m["version"]) for m in spec.models] for key, spec in self.specs.items()},
            parameters={k: v for k, v in parameters.items() if k not in secrets}, secrets=secrets,
            status=status, bundle=str(bundle.resolve()) if bundle else None)
        if engine == "inprocess":
            self.executor.check_models()  # a bad bundle or notebook fails the run before any batch
        else:
            for key, spec in self.specs.items():
                nbformat.write(_production_notebook(spec, sorted(secrets)), run_dir.notebook_path(key))

        self.merger = Merger(run_root=self.executor.run_root, run_id=manifest["run_id"], id_field=id_field,
                             models={key: (spec.name, spec.version) for key, spec in self.specs.items()})

    def store_batch(self, batch: int) -> None:
        """Store a merged batch in MongoDB; after one failure the run stops trying (resume stores it)."""
        stored = self.manifest.setdefault("stored", {})
        if self.store is None or stored.get(str(batch)) or self.manifest.get("store_error"):
            return
        from pymongo.errors import PyMongoError

        try:
            self.store.write_results(read_jsonl(self.run.results_path(batch)))
            stored[str(batch)] = True
        except (MlsmError, PyMongoError) as exc:
            self.manifest["store_error"] = redact_text(f"batch {batch}: {exc}")


def _split_batches(run: RunDirectory, records: Path, id_field: str, batch_size: int,
                   types: Mapping[str, str] | None = None) -> dict:
    """Stream the records file into batch files and rejected.jsonl; returns the input summary."""
    summary = {"records": 0, "batches": 0}

    def rejections():  # streamed to rejected.jsonl as they come: never all held in memory
        batch = []
        for line, record in read_records(records, id_field, types):
            if isinstance(record, Rejected):
                yield record.to_dict()
                continue
            batch.append(record)
            summary["records"] += 1
            if len(batch) == batch_size:
                write_jsonl(run.batch_path(summary["batches"]), batch)
                summary["batches"], batch = summary["batches"] + 1, []
        if batch:
            write_jsonl(run.batch_path(summary["batches"]), batch)
            summary["batches"] += 1

    rejected = write_jsonl(run.rejected_path, rejections())
    return {"records": summary["records"], "rejected": rejected, "batches": summary["batches"], "complete": True}


def _notebook_entries(specs: Sequence[NotebookSpec]) -> list[dict]:
    return [{"name": s.name, "version": s.version, "status": s.status, "kind": s.kind, "sha256": s.sha256(),
             "source": str(s.path), **git_info(s.path.resolve())} for s in specs]


def _open_run(run_dir: RunDirectory, resume: bool, specs, records: Path, settings: dict) -> dict:
    notebooks = _notebook_entries(specs)
    if resume:
        manifest = run_dir.read_manifest()
        before = {(n["name"], n["version"]): n["sha256"] for n in manifest["notebooks"]}
        now = {(n["name"], n["version"]): n["sha256"] for n in notebooks}
        if before != now:
            raise ConfigError(f"{run_dir.root}: the notebooks differ from the ones this run started with; "
                              "resume with the same notebooks, or start a new run")
        if manifest["input"].get("sha256") not in (None, file_sha256(records)):
            raise ConfigError(f"{records}: the records file changed since run {manifest['run_id']} started")
        manifest.update(status="running", resumed_at=utc_now())
        manifest.pop("store_error", None)
        return manifest
    if run_dir.root.exists():
        raise ConfigError(f"{run_dir.root}: run directory exists; pass --resume to finish it, or another --run-id")
    return {"run_id": run_dir.root.name, "status": "running", "started_at": utc_now(), "ended_at": None,
            "started_by": _started_by(), **settings, "notebooks": notebooks,
            "input": {"path": redact_text(str(records)), "sha256": file_sha256(records)},
            "executions": {}, "versions": _versions()}


def run_notebooks(paths: Sequence, records: str | Path, *, out: str | Path = "runs", run_id: str | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None, id_field: str = "id",
                  timeout: float = 600, resume: bool = False, engine: str = "papermill",
                  parameters: Mapping[str, Any] | None = None, store: MongoStore | None = None,
                  branch: str | None = None, bundle: str | Path | None = None, scheduler: str | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Run model notebooks then summary notebooks over the records; returns the manifest.

    Results, executed notebooks and the manifest go to ``<out>/<run_id>/``.
    A failed execution is recorded (and its records get `notebook_failed`)
    while everything else goes on; the manifest's `status` is "succeeded"
    only when every execution succeeded. `on_progress(done, total)` is called
    after each execution. With a MongoDB `store`, each merged batch is also
    stored there, the manifest goes to its `runs` and the models to its
    registry. `scheduler` ("local:N" or a Dask scheduler address) runs the
    executions as Dask tasks; the run directory must be on a path the workers
    share. `branch` applies the git-flow rules (see `gitflow`): on a
    development branch every model runs as draft. `bundle` (in-process engine
    only) scores with an extracted bundle of these notebooks. Raises
    ConfigError or InputFileError before any notebook runs when the setup or
    the records file is unusable.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if batch_size < 1:
        raise ConfigError("batch size must be at least 1")
    if resume and not run_id:
        raise ConfigError("--resume needs the --run-id of the run to finish")
    if bundle and engine != "inprocess":
        raise ConfigError("--bundle scores in-process: use it with --engine inprocess")
    records = Path(records)
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise ConfigError(f"no notebooks found in {', '.join(map(str, paths))}")
    specs = [lint_notebook(p) for p in notebooks]
    check_dependencies(specs)
    specs = _order(specs)
    parameters = dict(parameters or {})
    run_dir = RunDirectory(Path(out) / (run_id or new_run_id()))
    workers = workers or os.cpu_count() or 1
    status, reason = forced_status(branch)
    check_approvals(store, specs, status)  # audit: an unapproved active version refuses the run
    settings = {"engine": engine, "batch_size": batch_size, "workers": workers, "id_field": id_field,
                "timeout": timeout, "parameters": redact_parameters(parameters), "branch": branch,
                "status_override": {"status": status, "reason": reason} if status else None,
                "bundle": str(bundle) if bundle else None, "scheduler": scheduler}
    check_records_file(records)
    manifest = _open_run(run_dir, resume, specs, records, settings)
    manifest["mongodb"] = {"database": store.db.name, "results": store.results.name} if store else None
    keys = [model_key(s.name, s.version) for s in specs]
    run_dir.prepare(keys)
    run_dir.write_manifest(manifest)
    try:
        if store:
            _verify_stored(store, manifest)
            store.record_run(manifest)
        if not manifest["input"].get("complete"):
            manifest["input"].update(_split_batches(run_dir, records, id_field, batch_size,
                                                    declared_types(s.fields for s in specs)))
            run_dir.write_manifest(manifest)
        state = _Run(specs, run_dir, manifest, engine, parameters, timeout, id_field, store, status,
                     Path(bundle) if bundle else None)
        _execute_all(state, keys, workers, on_progress, scheduler)
        if store and not manifest.get("store_error"):
            _finish_in_store(store, manifest)
            run_dir.write_manifest(manifest)
    except BaseException as exc:
        manifest.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                        ended_at=utc_now(), error=redact_text(f"{type(exc).__name__}: {exc}"))
        run_dir.write_manifest(manifest)
        raise
    return manifest


def _verify_stored(store: MongoStore, manifest: dict) -> None:
    """On resume, forget "stored" marks the database does not bear out (a server that lost
    acknowledged writes in a crash); storing is idempotent, so those batches are simply stored again."""
    stored = manifest.get("stored") or {}
    if not stored:
        return
    size, total = manifest["batch_size"], manifest["input"]["records"]
    expected = sum(min(size, total - int(b) * size) for b in stored)
    if store.count_run(manifest["run_id"]) != expected:
        manifest["stored"] = {}


def _finish_in_store(store: MongoStore, manifest: dict) -> None:
    """Register the models and the run in MongoDB; a failure fails the run (resume finishes it)."""
    from pymongo.errors import PyMongoError

    try:
        store.register_models(manifest["notebooks"], run_id=manifest["run_id"], event="ran")
        store.record_run(manifest)
    except (MlsmError, PyMongoError) as exc:
        manifest.update(status="failed", store_error=redact_text(f"run record: {exc}"))


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
        state.executor.write_failure(key, batch, error)
        return {"status": "failed", "error": error, "worker": "lost", "seconds": None}


def _execute_all(state: _Run, keys: list[str], workers: int, on_progress, scheduler: str | None = None) -> None:
    manifest, run = state.manifest, state.run
    batches = manifest["input"]["batches"]
    needs = state.executor.needs
    done = {(k, b) for k in keys for b in range(batches) if _intact(state, k, b)}
    todo = [(k, b) for b in range(batches) for k in keys if (k, b) not in done]
    merged = {b for b in range(batches) if run.results_path(b).is_file() and all((k, b) in done for k in keys)}
    total, finished = len(keys) * batches, len(done)
    batch_stats: dict[str, dict] = manifest.setdefault("batch_stats", {})
    running: dict[Any, tuple[str, int]] = {}
    pool = DaskPool(scheduler) if scheduler else ThreadPool(workers)
    try:
        while todo or running:
            # An execution starts as soon as the executions it needs (same batch) are done.
            for item in [i for i in todo if all((d, i[1]) in done for d in needs[i[0]])]:
                if len(running) >= pool.capacity:
                    break
                todo.remove(item)
                running[pool.submit(state.executor.execute, *item)] = item
            for future in pool.wait_any(running):
                key, batch = running.pop(future)
                if key is _MERGE:  # the batch's result documents are written
                    batch_stats[str(batch)] = pool.result(future)
                    merged.add(batch)
                    state.store_batch(batch)
                    run.write_manifest(manifest)
                    continue
                manifest["executions"].setdefault(key, {})[str(batch)] = _outcome(state, pool, future, key, batch)
                done.add((key, batch))
                finished += 1
                if all((k, batch) in done for k in keys) and batch not in merged:
                    running[pool.submit(state.merger.merge, batch)] = (_MERGE, batch)
                run.write_manifest(manifest)
                if on_progress:
                    on_progress(finished, total)
    except BaseException:
        pool.close(cancel=True)
        raise
    pool.close()
    for batch in sorted(merged):
        state.store_batch(batch)  # batches merged before a resume, not stored yet
    failed = sum(1 for k in keys for e in manifest["executions"].get(k, {}).values() if e["status"] != "ok")
    totals = {key: Tally() for key in keys}
    for per_model in batch_stats.values():
        for key, counts in per_model.items():
            totals[key].merge(Tally(counts))
    succeeded = not failed and not manifest.get("store_error")
    manifest.update(status="succeeded" if succeeded else "failed", ended_at=utc_now(), failed_executions=failed,
                    models={key: tally.as_dict() for key, tally in totals.items()})
    run.write_manifest(manifest)
