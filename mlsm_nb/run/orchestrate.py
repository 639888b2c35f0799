"""`mlsm-nb run`: score record batches with model notebooks, then summary notebooks.

Orchestration only: settings, notebooks, bundle and records are checked before
the run directory exists (a run that cannot start leaves nothing behind), then
the manifest is opened and the scheduler (`schedule`) reads the records once,
in batches, and runs each batch as the engine plans it (`engines`, `plans`):
with the papermill engine one execution per (notebook, batch), a summary's
after the models it needs, then a merge; with the in-process engine a whole
batch scored and merged in memory by a worker process (`inmemory`). Both
engines call `core.batch.score_batch`, so they give the same results. Merged
batches go to the sinks (`sinks`). The manifest records every step, so
`resume` can finish a run that was interrupted or partly failed.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from ..clock import run_start, utc_now
from ..core.model import model_key
from ..exceptions import CELLS_COUNTED_FROM, ConfigError, MlsmError
from ..files import write_failure
from ..notebook.changes import parts
from ..notebook.contract import NotebookSpec, find_notebooks, lint_notebook
from ..notebook.dependencies import check_dependencies
from ..notebook.gitflow import forced_status
from ..notebook.provenance import git_info
from ..redact import redact_parameters, redact_text
from ..store.base import ResultSink, check_approvals
from ..store.manifest import Manifest
from ..store.rundir import RunDirectory, new_run_id
from .context import RunContext, build_executor, worker_count
from .engines import Engine, get_engine
from .execution import Executor
from .parameters import check_parameters
from .progress import ExecutionDone
from .records import check_records_file, check_same_input, declared_types, input_identity
from .schedule import Scheduler
from .settings import RunSettings
from .sinks import Sinks
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


def _notebook_entries(specs: Sequence[NotebookSpec]) -> list[dict]:
    return [{"name": s.name, "version": s.version, "status": s.status, "kind": s.kind, "sha256": s.sha256(),
             "sha256_without_status": s.sha256_without_status(), "source": str(s.path),
             **git_info(s.path.resolve()), **parts(s)} for s in specs]


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
            "executions": {}, "versions": _versions(), "cells_counted_from": CELLS_COUNTED_FROM}


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
                  **options: Any) -> Manifest:
    """Run model notebooks then summary notebooks over the records; returns the manifest (typed).

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
    workers = worker_count(settings)
    status, reason = forced_status(settings.branch)
    check_approvals(sinks, specs, status)  # a registry that requires approvals refuses unapproved active versions
    recorded = {**asdict(settings), "workers": workers, "parameters": redact_parameters(settings.parameters),
                "status_override": {"status": status, "reason": reason} if status else None}
    for name in ("out", "run_id", "resume"):
        recorded.pop(name)
    check_records_file(records)
    engine = get_engine(settings.engine)
    executor = build_executor(specs, run_dir, settings, status, workers)
    engine.check(executor, specs)  # e.g. the bundle: a run that cannot start leaves no run directory
    if not settings.resume:
        run_dir.create()
    elif not run_dir.manifest_path.is_file():
        raise ConfigError(f"{run_dir.root}: no run to resume (no manifest.json)")
    with run_dir.lock():
        return _run_locked(specs, records, settings, run_dir, recorded, sinks, engine, executor, on_progress)


def _run_locked(specs, records: Path, settings: RunSettings, run_dir: RunDirectory, recorded: dict, sinks,
                engine: Engine, executor: Executor, on_progress) -> Manifest:
    manifest = _open_run(run_dir, settings.resume, specs, records, recorded)
    manifest["sinks"] = [sink.name for sink in sinks]
    for entry in manifest["notebooks"]:  # the status a model runs as: its bundle's (a develop bundle: draft)
        entry["status"] = executor.bundled_status.get(model_key(entry["name"], entry["version"]), entry["status"])
    run_dir.prepare([model_key(s.name, s.version) for s in specs])
    for spec in specs:  # the report's training cells, and `approve`'s earlier versions, come from these copies
        run_dir.keep_authored(model_key(spec.name, spec.version), spec.path)
    run_dir.write_manifest(manifest)
    try:
        engine.prepare(executor, specs)
        context = RunContext(specs, run_dir, manifest, settings, executor, keep=bool(sinks))
        writer = Sinks(sinks, context.run_id)
        context.record_sink_errors(writer.open(manifest))
        types = declared_types(s.fields for s in specs)
        pools = engine.pools(worker_count(settings), settings.scheduler)
        Scheduler(context, engine, records, types, writer, pools, on_progress).run()
        manifest["status"], manifest["verdict"] = judge(manifest, settings.max_error_rate)
        manifest["ended_at"] = utc_now()
        context.record_sink_errors(writer.finish(manifest))
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
    return Manifest.from_dict(manifest)


def _read_notebooks(paths: Sequence) -> list[NotebookSpec]:
    """The notebooks' specs, models first, then summaries after the models they need."""
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise ConfigError(f"no notebooks found in {', '.join(map(str, paths))}")
    specs = [lint_notebook(p) for p in notebooks]
    check_dependencies(specs)
    return _order(specs)
