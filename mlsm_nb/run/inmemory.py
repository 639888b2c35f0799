"""The in-memory run path (the in-process engine): each record read once, scored in memory, written once.

The orchestrating process reads the records file once, batch by batch, and
hands each batch to a worker process (or a Dask worker). There the batch is
written to its batch file (the run's copy of its input, for resume, trace
and replay), every model then every summary scores the records in memory,
and the merged result documents are written: no file between two models.

Model code runs in the workers, so `sys.exit` costs a record (see `Model`)
and `os._exit`, a crash or a hang cost one execution: a worker that dies or
overruns `--timeout` (per model) is replaced, and its batch is scored again
model by model, to fail only the (model, batch) that cannot finish; the
others keep their results.

    read ─► batch ─► worker: batch file ─► model, model, …, summary ─► merge ─► results file
                                                                              └─► other sinks
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._gc import full_collections_deferred
from ..clock import utc_now
from ..core.model import error_entry, split_model_key
from ..exceptions import MlsmError
from ..files import write_jsonl
from ..store.rundir import RunDirectory
from .engines import get_engine
from .execution import Executor, worker_name
from .merge import Merger
from .pools import DaskPool, ProcessPool, TaskLost
from .records import estimate_records, planned_batches, read_batches

if TYPE_CHECKING:
    from .orchestrate import _Run


class ExecutionLost(MlsmError):
    """A worker process died or overran the timeout while a model scored a batch."""


@dataclass
class BatchScorer:
    """Scores whole batches in a worker; plain data (an Executor and a Merger), so it pickles."""

    executor: Executor
    merger: Merger

    @property
    def keys(self) -> list[str]:
        return list(self.merger.models)  # execution order: models, then summaries

    @full_collections_deferred()  # as a worker process's task is (run.pools), also on a Dask worker
    def score(self, batch: int, records: list[dict], keep: bool) -> dict:
        """Write the batch file, score every model, merge and write the results; returns the merge's
        counts (and documents when `keep`) with ``"executions"``: each model's manifest entry."""
        write_jsonl(self.executor.run.batch_path(batch), records)
        entries: dict[str, list[dict]] = {}
        executions = {}
        for key in self.keys:
            executions[key], entries[key] = self.score_model(key, batch, records, entries)
        return {**self.merger.merge_entries(batch, records, entries, keep), "executions": executions}

    def score_model(self, key: str, batch: int, records: Sequence[dict],
                    entries: Mapping[str, Sequence[dict]]) -> tuple[dict, list[dict]]:
        """One model over the batch: (its manifest entry, its entries); a failure fails this model only."""
        started = time.perf_counter()
        entry: dict[str, Any] = {"status": "ok", "started_at": utc_now(), "worker": worker_name()}
        dependencies = {split_model_key(dep): entries[dep] for dep in self.executor.needs[key]}
        try:
            scored = get_engine(self.executor.engine).score(self.executor, key, records, dependencies).entries
            entry.update(records=len(scored), errors=sum(1 for e in scored if "_error_kind" in e))
        except Exception as exc:  # noqa: BLE001 - one model failing never stops the batch's other models
            entry, scored = self.failed(key, batch, len(records), exc, entry)
        except SystemExit as exc:  # in the notebook's setup code (in `score` it costs one record)
            entry, scored = self.failed(key, batch, len(records),
                                        ExecutionLost(f"the notebook's code called sys.exit({exc.code!r})"), entry)
        entry["seconds"] = round(time.perf_counter() - started, 3)
        return entry, scored

    def failed(self, key: str, batch: int, size: int, exc: BaseException, entry: dict | None = None
               ) -> tuple[dict, list[dict]]:
        """The manifest entry and `notebook_failed` entries of a (model, batch) that could not finish."""
        error = self.executor.describe(exc, key, batch)
        entry = {**(entry or {"started_at": None, "worker": "lost", "seconds": None}),
                 "status": "failed", "error": error, "records": size, "errors": size}
        return entry, [error_entry("notebook_failed", error)] * size


def lost(exc: BaseException) -> ExecutionLost:
    """Why a task came back without a result, in words."""
    if isinstance(exc, TaskLost) and exc.timeout is not None:
        return ExecutionLost(f"ran longer than the timeout ({exc.timeout:g} s per model); its worker was stopped")
    if isinstance(exc, TaskLost):
        return ExecutionLost(f"the worker process exited (code {exc.exitcode}) while scoring: the model's code "
                             "called os._exit, crashed or was killed")
    return ExecutionLost(f"{type(exc).__name__}: {exc}")  # e.g. Dask's KilledWorker


@dataclass
class _Fallback:
    """A batch whose worker was lost, scored again one model at a time."""

    records: list[dict]
    keys: list[str]
    executions: dict
    entries: dict


def score_in_memory(state: "_Run", records: Path, types: Mapping[str, str], workers: int,
                    on_done: Callable[[str, int, dict, int | None, bool], None]) -> set[int]:
    """Score every batch not already done; returns the batches merged (now or before a resume).

    `state` is the orchestrator's run; `on_done(key, batch, entry, total, earlier)` follows each execution,
    and comes with `earlier` true for each execution of a batch done before a resume (so progress counts it).
    """
    manifest, run, settings = state.manifest, state.run, state.settings
    executions, batch_stats = manifest["executions"], manifest.setdefault("batch_stats", {})
    scorer = BatchScorer(state.executor, state.merger)
    keys, timeout = scorer.keys, settings.timeout
    done = {int(b) for b in batch_stats if _intact(run, manifest, keys, int(b))}
    keep = bool(state.sinks)
    summary: dict = {}
    reader = read_batches(records, settings.id_field, settings.batch_size, types, run.rejected_path, summary)
    pool = DaskPool(settings.scheduler) if settings.scheduler else ProcessPool(workers)
    running: dict[Any, tuple[int, str | None]] = {}  # future -> (batch, None for the whole batch, else the model)
    fallbacks: dict[int, _Fallback] = {}
    held: dict[int, list[dict]] = {}  # a running batch's records, should its worker be lost

    expected = estimate_records(records)

    def total() -> int | None:  # executions: exact once the reader is done, estimated from the file until then
        batches = planned_batches(summary, expected, settings.batch_size)
        return None if batches is None else len(keys) * batches

    def finish(batch: int, merged: dict) -> None:
        for key in keys:
            executions.setdefault(key, {})[str(batch)] = merged["executions"][key]
        batch_stats[str(batch)] = merged["models"]
        done.add(batch)
        state.store_batch(batch, merged.get("documents"))
        run.write_manifest(manifest)  # every execution is recorded before anything builds on it
        for key in keys:
            on_done(key, batch, merged["executions"][key], total(), False)

    def next_model(batch: int) -> None:
        step = fallbacks[batch]
        if not step.keys:
            del fallbacks[batch]
            merged = scorer.merger.merge_entries(batch, step.records, step.entries, keep)
            return finish(batch, {**merged, "executions": step.executions})
        key = step.keys[0]
        needed = {dep: step.entries[dep] for dep in state.executor.needs[key]}
        running[pool.submit(scorer.score_model, key, batch, step.records, needed, timeout=timeout)] = (batch, key)

    try:
        while True:
            while len(running) < pool.capacity and reader is not None:
                item = next(reader, None)
                if item is None:
                    reader = None
                    manifest["input"].update(summary)
                    run.write_manifest(manifest)
                elif item[0] in done:  # scored before a resume: counted as done, not run again
                    for key in keys:
                        on_done(key, item[0], manifest["executions"][key][str(item[0])], total(), True)
                else:
                    batch, held[batch] = item
                    running[pool.submit(scorer.score, batch, held[batch], keep,
                                        timeout=timeout * len(keys))] = (batch, None)
            if not running:
                break
            for future in pool.wait_any(running):
                batch, key = running.pop(future)
                try:
                    result = pool.result(future)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - the worker was lost
                    if key is None:  # score the batch again model by model, to fail only the one that loses it
                        fallbacks[batch] = _Fallback(held.pop(batch), list(keys), {}, {})
                        write_jsonl(run.batch_path(batch), fallbacks[batch].records)
                        next_model(batch)
                        continue
                    result = scorer.failed(key, batch, len(fallbacks[batch].records), lost(exc))
                if key is None:
                    del held[batch]
                    finish(batch, result)
                else:
                    step = fallbacks[batch]
                    step.executions[key], step.entries[key] = result
                    step.keys.pop(0)
                    next_model(batch)
    except BaseException:
        pool.close(cancel=True)
        if reader is not None:
            reader.close()
        raise
    pool.close()
    return done


def _intact(run: RunDirectory, manifest: dict, keys: Sequence[str], batch: int) -> bool:
    """Whether a batch was merged with every execution ok (resume keeps it)."""
    return run.results_path(batch).is_file() and all(
        manifest["executions"].get(key, {}).get(str(batch), {}).get("status") == "ok" for key in keys)
