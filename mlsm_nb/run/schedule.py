"""The run's one scheduling loop: read batches, start their tasks, merge and store each batch.

The engine's kind says what a batch needs (its *plan*, see `run.plans`); the
scheduler only starts what the plans say is ready and reacts to four events:

    BatchRead ──▶ plan ──▶ tasks ──▶ Executed ──▶ … ──▶ Merged ──▶ store ──▶ Stored
    (records)      (engine)   (pool)      (plan settles)   (merge pool)   (sink thread)

- **a batch read** (`BatchRead`): the engine plans the batch; what a run did
  before a resume is settled at once (progress says so, `ExecutionDone.earlier`);
- **an execution done** (`Executed`): the plan settles the task's executions,
  which are recorded before anything that needs them starts; a batch whose
  executions are all settled is merged (in the merge pool: a thread of its own,
  a worker, or Dask) unless its task merged it already;
- **a merge done** (`Merged`): the batch's counts are recorded and its
  documents go to the sinks, in a thread of their own, batch after batch;
- **a batch stored** (`sinks.Stored`): the manifest says which sinks hold it.

The records are read while tasks run, as far ahead as the workers need: the
first tasks start after one batch is read; a task waiting to start and a
running one each count against the pool's `capacity`, and while no task is
ready to start the next batch is read (one batch ahead: a worker that frees
up starts its next task at once instead of waiting for a batch to be read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import DataFileError, MlsmError
from .context import RunContext
from .engines import Engine
from .plans import Plan, Task
from .pools import ThreadPool
from .progress import ExecutionDone
from .records import estimate_records, planned_batches, read_batches
from .sinks import Sinks, Stored

STORES_WITH_DOCUMENTS = 2  # stores queued with their documents in memory; later ones read them back from disk


@dataclass
class BatchRead:
    batch: int
    records: list[dict] | None  # None: the batch file a run before a resume wrote


@dataclass
class Executed:
    task: Task
    result: Any = None
    error: BaseException | None = None


@dataclass
class Merged:
    batch: int
    outcome: dict | None = None  # {"models": counts per model, "documents": ... when kept}
    error: BaseException | None = None


class Scheduler:
    """Runs every task of a run not done yet and merges and stores each batch; counts per model at the end.

    `pools` is (the pool tasks run in, the pool merges run in), as `Engine.pools` gives them;
    `on_progress(ExecutionDone)` follows each settled execution.
    """

    def __init__(self, context: RunContext, engine: Engine, records: Path, types: Mapping[str, str],
                 sinks: Sinks, pools: tuple[Any, Any],
                 on_progress: Callable[[ExecutionDone], None] | None = None):
        self.context, self.engine, self.sinks = context, engine, sinks
        self.pool, self.merges = pools
        self.stores = ThreadPool(1) if sinks else None
        self.on_progress = on_progress
        settings = context.settings
        self.counts: dict = {}  # the input's counts, once it is read to the end
        self.reader = None
        if engine.reads_again(bool(context.input.get("complete"))):
            self.reader = read_batches(records, settings.id_field, settings.batch_size, types,
                                       context.run.rejected_path, self.counts, lines=engine.copies_lines)
        self.records = records
        self.expected: int | None = None  # the records the file seems to hold, for progress until it is read
        self.plans: dict[int, Plan] = {}  # batches read and not merged yet
        self.due: list[Plan] = []  # batches whose executions are all settled: merged at the next start
        self.running: dict[Any, Task] = {}  # future -> task, in the pool or the merge pool
        self.storing: dict[Future, int] = {}  # future -> batch, in the sinks' thread
        self.finished = 0  # executions settled, for progress
        self._progress: list[ExecutionDone] = []  # reported once the manifest records them

    def run(self) -> None:
        """The loop; on any exception (an interrupt too) the pools stop at once and it is raised again."""
        try:
            if self.reader is not None:
                self.expected = estimate_records(self.records)
            else:
                for batch in range(self.context.input["batches"]):
                    self.batch_read(BatchRead(batch, None))
                self._report()
            while True:
                self._start()
                self._read_ahead()
                if not self.running:
                    break
                for future in self.pool.wait_any(self.running):
                    self._finished(future)
                self._collect_stores(wait_all=False)
                self.context.save()  # every execution is recorded before anything builds on it
                self._report()
        except BaseException:
            self._close(cancel=True)
            raise
        self._close(cancel=False)
        self.engine.finish(self.context)
        self.context.count()

    # -- the events
    def batch_read(self, event: BatchRead) -> None:
        """Plan the batch; settle what a run before a resume did; merge or store what it left undone."""
        plan = self.plans[event.batch] = self.engine.plan(self.context, event.batch, event.records)
        for key, entry in plan.earlier.items():
            self._settled(key, event.batch, entry, earlier=True)
        if plan.merged_before:
            del self.plans[event.batch]
            self._store(event.batch, None)  # a sink may lack it (resume stores the rest)
        elif plan.executed:  # executions done, merge lost (killed in between, or deleted)
            self.due.append(plan)

    def executed(self, event: Executed) -> None:
        """The plan settles the task's executions; a batch whose executions are all settled is merged."""
        batch = event.task.batch
        plan = self.plans[batch]
        if event.error is None:
            settled = plan.done(event.task, event.result)
        else:
            settled = plan.lost(event.task, event.error)
        if plan.then is not None:
            plan = self.plans[batch] = plan.then
        for key, entry in settled.items():
            self.context.record_execution(key, batch, entry)
            self._settled(key, batch, entry)
        if plan.merged is not None:
            self.merged(Merged(batch, plan.merged))
        elif plan.executed:
            self.due.append(plan)

    def merged(self, event: Merged) -> None:
        """Record the batch's counts and hand its documents to the sinks, or record why it is not merged."""
        del self.plans[event.batch]
        if event.error is not None:
            _merge_failed(self.context, event.batch, event.error)
            return
        self.context.record_merge(event.batch, event.outcome["models"])
        self._store(event.batch, event.outcome.get("documents"))

    def stored(self, event: Stored) -> None:
        self.context.record_stored(event.batch, event.stored, event.problems, event.errors)

    # -- reading and starting
    def _ready(self) -> list[tuple[Plan, Task]]:
        return [(plan, task) for plan in self.plans.values() for task in plan.ready()]

    def _busy(self) -> int:
        """Tasks running in the pool (merges count when they share it)."""
        return sum(1 for task in self.running.values() if not task.is_merge or self.merges is self.pool)

    def _read_ahead(self) -> None:
        """Read batches while fewer tasks are running or ready to start than the pool's capacity, or none is
        ready to start, starting each batch's tasks as soon as it is read."""
        while self.reader is not None and (not (ready := len(self._ready()))
                                           or ready + self._busy() < self.pool.capacity):
            item = next(self.reader, None)
            if item is None:
                self.reader = None
                self.context.record_input(self.counts)
                self.context.save()
                return
            self.batch_read(BatchRead(*item))
            self._start()

    def _start(self) -> None:
        """Start the merges due and as many ready tasks as the pool has room for (after the manifest is saved:
        nothing starts before what it builds on is recorded)."""
        due, self.due = self.due, []
        for plan in due:
            task = plan.merge_task()
            self.running[self.merges.submit(task.fn, *task.args, timeout=task.timeout)] = task
        for plan, task in self._ready()[:max(0, self.pool.capacity - self._busy())]:
            plan.start(task)
            self.running[self.pool.submit(task.fn, *task.args, timeout=task.timeout)] = task

    def _finished(self, future) -> None:
        task = self.running.pop(future)
        pool = self.merges if task.is_merge else self.pool
        try:
            result, error = pool.result(future), None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the task's plan decides what it means
            result, error = None, exc
        if task.is_merge:
            self.merged(Merged(task.batch, result, error))
        else:
            self.executed(Executed(task, result, error))

    # -- storing
    def _store(self, batch: int, documents: list | None) -> None:
        """Hand a merged batch to the sinks, in their thread (a batch's documents are kept in memory only
        while few stores wait: the others read them back from the run directory)."""
        if not self.sinks:
            self.stored(Stored(batch, stored=True))
            return
        if len(self.storing) >= STORES_WITH_DOCUMENTS:
            documents = None
        results = self.context.run.results_path(batch)
        self.storing[self.stores.submit(self.sinks.store, batch, documents, results)] = batch

    def _collect_stores(self, wait_all: bool) -> None:
        if wait_all:
            wait(self.storing)
        for future in [f for f in self.storing if f.done()]:
            del self.storing[future]
            self.stored(future.result())

    # -- progress and the end
    def _settled(self, key: str, batch: int, entry: dict, earlier: bool = False) -> None:
        self.finished += 1
        if self.on_progress:
            self._progress.append(ExecutionDone.of(key, self.context.label(key), batch, entry, self.finished,
                                                   self._total(), earlier))

    def _total(self) -> int | None:
        """Executions in the run: exact once the input is read, estimated from the file until then."""
        counts = self.counts if self.reader is not None else self.context.input
        batches = planned_batches(counts, self.expected, self.context.settings.batch_size)
        return None if batches is None else len(self.context.keys) * batches

    def _report(self) -> None:
        events, self._progress = self._progress, []
        for event in events:
            self.on_progress(event)

    def _close(self, cancel: bool) -> None:
        """Stop the pools: at once when `cancel` (a running merge finishes its file, which resume merges again
        anyway), else when their work is done; the sinks' thread stores every merged batch first."""
        self.pool.close(cancel=cancel)
        if self.merges is not self.pool:
            self.merges.close(cancel=cancel)
        if self.reader is not None:
            self.reader.close()
        if self.stores is not None:
            if not cancel:
                self._collect_stores(wait_all=True)
            self.stores.close(cancel=cancel)


def _merge_failed(context: RunContext, batch: int, exc: BaseException) -> None:
    """Record why a batch could not be merged. A model's output that cannot be read back fails that
    model's execution (resume runs it again); anything else is the batch's `merge_errors` entry (resume
    merges it again)."""
    outputs = {context.run.output_path(key, batch).resolve(): key for key in context.keys}
    culprit = outputs.get(Path(exc.path).resolve()) if isinstance(exc, DataFileError) else None
    if culprit is not None:
        error = f"{context.executor.location(culprit)}: batch {batch}: its output cannot be merged: {exc}"
        context.fail_execution(culprit, batch, error)
        return
    why = exc if isinstance(exc, MlsmError) else f"{type(exc).__name__}: {exc}"
    context.record_merge_error(batch, f"batch {batch}: its results could not be merged: {why}")
