"""The in-memory engine kind's plans: each record read once, scored in memory, written once.

The scheduler reads the records file once, batch by batch, and hands each
batch (`BatchPlan`: one task) to a worker process (or a Dask worker). There the batch is
written to its batch file (the run's copy of its input, for resume, trace
and replay), every model then every summary scores the records in memory,
and the merged result documents are written: no file between two models.

Model code runs in the workers, so `sys.exit` costs a record (see `Model`)
and `os._exit`, a crash or a hang cost one execution: a worker that dies or
overruns `--timeout` (per model) is replaced, and its batch is scored again
model by model (`FallbackPlan`), to fail only the (model, batch) that cannot
finish; the others keep their results. A record over `--record-timeout` costs
only itself (`core.timelimit`); one stuck where no interrupt reaches it (C code)
costs its worker, which the pool stops and replaces: the batch is then scored
again model by model, that record given its `timeout` without being scored
(at most `MAX_STUCK` such records per model and batch).

    read ─► batch ─► worker: batch file ─► model, model, …, summary ─► merge ─► results file
                                                                              └─► other sinks
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._gc import full_collections_deferred
from ..clock import utc_now
from ..core.batch import by_id
from ..core.model import error_entry, split_model_key
from ..core.timelimit import MAX_STUCK, SLOT
from ..exceptions import MlsmError
from ..files import write_jsonl
from ..store.manifest import ExecutionStatus
from .engines import get_engine
from .execution import Executor, worker_name
from .merge import Merger, count_errors
from .plans import Plan, Task
from .pools import TaskLost, worker_board

if TYPE_CHECKING:
    from .context import RunContext


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

    def score_model(self, key: str, batch: int, records: Sequence[dict], entries: Mapping[str, Sequence[dict]],
                    stuck: Mapping[int, float] | None = None) -> tuple[dict, list[dict]]:
        """One model over the batch: (its manifest entry, its entries); a failure fails this model only.
        `stuck`: positions of records found stuck before (see `core.batch.score_batch`)."""
        started = time.perf_counter()
        entry: dict[str, Any] = {"status": ExecutionStatus.OK, "started_at": utc_now(), "worker": worker_name()}
        dependencies = {split_model_key(dep): entries[dep] for dep in self.executor.needs[key]}
        board = worker_board()
        board.cells[SLOT] = self.keys.index(key)  # which model, should its worker be stopped for a stuck record
        try:
            outcome = get_engine(self.executor.engine).score(self.executor, key, records, dependencies,
                                                             board=board, stuck=stuck or {})
            scored = outcome.entries
            entry.update(records=len(scored), errors=count_errors(scored),
                         slowest=by_id(outcome.slowest, records, self.merger.id_field))
            if stuck:
                entry["stuck"] = by_id(sorted(stuck.items()), records, self.merger.id_field)
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
                 "status": ExecutionStatus.FAILED, "error": error, "records": size, "errors": size}
        return entry, [error_entry("notebook_failed", error)] * size


def lost(exc: BaseException) -> ExecutionLost:
    """Why a task came back without a result, in words."""
    if isinstance(exc, TaskLost) and exc.stuck is not None:
        return ExecutionLost(f"more than {MAX_STUCK} records were stuck past --record-timeout where no interrupt "
                             "reached them (C code?); their worker was stopped each time")
    if isinstance(exc, TaskLost) and exc.timeout is not None:
        return ExecutionLost(f"ran longer than the timeout ({exc.timeout:g} s per model); its worker was stopped")
    if isinstance(exc, TaskLost):
        return ExecutionLost(f"the worker process exited (code {exc.exitcode}) while scoring: the model's code "
                             "called os._exit, crashed or was killed")
    return ExecutionLost(f"{type(exc).__name__}: {exc}")  # e.g. Dask's KilledWorker




class BatchPlan(Plan):
    """A batch scored whole: one task, in a worker, scores every model then every summary and merges
    the batch. A batch merged before a resume with every execution ok is settled as it was."""

    def __init__(self, context: RunContext, batch: int, records: list[dict]):
        super().__init__(context, batch)
        self.records = records
        previous = {key: context.execution(key, batch) for key in context.keys}
        if context.merged(batch) and all(e and e["status"] == ExecutionStatus.OK for e in previous.values()):
            self.earlier, self.settled = previous, dict(previous)
            self.merged_before = True
            return
        scorer = BatchScorer(context.executor, context.merger)
        self._waiting.append(Task(batch, tuple(context.keys), scorer.score, (batch, records, context.keep),
                                  timeout=context.settings.timeout * len(context.keys)))

    def done(self, task: Task, result: dict) -> dict[str, dict]:
        self.records = None
        self.merged = result
        return self._settle(result["executions"])

    def lost(self, task: Task, exc: BaseException) -> dict[str, dict]:
        """The worker was lost: the batch is scored again model by model, to fail only the one that loses it
        (a record stuck where no interrupt reached it given its timeout, unscored)."""
        self.then = FallbackPlan(self.context, self.batch, self.records, exc)
        return {}


class FallbackPlan(Plan):
    """A batch whose worker was lost, scored again one model at a time (each model's task after the one
    before), then merged here from the entries in memory (as the batch's task would have in its worker).
    `lost`: why the batch's worker was lost."""

    def __init__(self, context: RunContext, batch: int, records: list[dict], lost: BaseException | None = None):
        super().__init__(context, batch)
        self.records = records
        self.entries: dict[str, list[dict]] = {}
        self.stuck: dict[str, dict[int, float]] = {}  # key -> positions of its records found stuck, with seconds
        self._scorer = BatchScorer(context.executor, context.merger)
        write_jsonl(context.run.batch_path(batch), records)  # the lost worker may not have written it
        if lost is not None:
            self.stuck_in(lost)  # why the batch's worker was lost: a stuck record is not scored again
        self._next()

    def stuck_in(self, exc: BaseException) -> bool:
        """Note the record a worker was stopped for (a `TaskLost` with `stuck`); False when it is not one,
        or when its model had `MAX_STUCK` already."""
        found = getattr(exc, "stuck", None)
        if found is None:
            return False
        records = self.stuck.setdefault(self.context.keys[found.slot], {})
        if len(records) >= MAX_STUCK:
            return False
        records[found.position] = round(found.seconds, 3)
        return True

    def _next(self) -> None:
        if self.executed:
            self.merged = self.context.merger.merge_entries(self.batch, self.records, self.entries, self.context.keep)
            self.records = None
            return
        key = self.context.keys[len(self.settled)]
        needed = {dep: self.entries[dep] for dep in self.context.executor.needs[key]}
        self._waiting.append(Task(self.batch, (key,), self._scorer.score_model,
                                  (key, self.batch, self.records, needed, self.stuck.get(key)),
                                  timeout=self.context.settings.timeout))

    def done(self, task: Task, result: tuple[dict, list[dict]]) -> dict[str, dict]:
        key = task.keys[0]
        entry, self.entries[key] = result
        settled = self._settle({key: entry})
        self._next()
        return settled

    def lost(self, task: Task, exc: BaseException) -> dict[str, dict]:
        """A model's task lost its worker: scored again when a record was stuck (that record unscored), else
        (or past `MAX_STUCK`) its execution failed."""
        if self.stuck_in(exc):
            self._next()
            return {}
        return self.done(task, self._scorer.failed(task.keys[0], self.batch, len(self.records), lost(exc)))
