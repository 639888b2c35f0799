"""Plans: one batch's work as tasks, each with what it needs. The scheduler (`run.schedule`) starts
the tasks a plan says are ready, hands each result back to the plan, and merges and stores the
batch when the plan's executions are all settled; the plan keeps the batch's state.

`FilePlan` is a file engine's (papermill): a task per notebook, a summary's after its models' of
the same batch, then a merge of the model's output files. The in-memory engine's plans are in
`run.inmemory`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..files import dumps, write_lines
from ..store.manifest import ExecutionStatus
from .records import Batch

if TYPE_CHECKING:
    from .context import RunContext


@dataclass(eq=False)
class Task:
    """A unit of work of one batch: ``fn(*args)`` in a pool, once the executions in `needs` (same
    batch) are settled. `keys` are the executions it settles; a merge settles none."""

    batch: int
    keys: tuple[str, ...]
    fn: Callable
    args: tuple
    needs: tuple[str, ...] = ()
    timeout: float | None = None

    @property
    def is_merge(self) -> bool:
        return not self.keys


class Plan:
    """One batch's work. The scheduler asks `ready()` for the tasks it may start and `start`s each it
    starts; a finished task's result goes to `done`, the exception of a task that came back without
    one to `lost`; both return the executions they settled (key -> manifest entry). When every
    execution is settled, `merge_task()` is the batch's merge, unless the tasks merged it already
    (`merged` holds the merge's outcome then).

    At creation a plan settles what a resumed run did before (`earlier`), and says whether the batch
    was merged then too (`merged_before`). `then` is the plan that takes over the batch, if any (the
    in-memory engine's fallback after a lost worker).
    """

    def __init__(self, context: RunContext, batch: int):
        self.context, self.batch = context, batch
        self.settled: dict[str, dict] = {}
        self.earlier: dict[str, dict] = {}
        self.merged: dict | None = None
        self.merged_before = False
        self.then: Plan | None = None
        self._waiting: list[Task] = []

    def ready(self) -> list[Task]:
        return [t for t in self._waiting if all(need in self.settled for need in t.needs)]

    def start(self, task: Task) -> None:
        self._waiting.remove(task)

    @property
    def executed(self) -> bool:
        """Every execution of the batch is settled."""
        return len(self.settled) == len(self.context.keys)

    def done(self, task: Task, result: Any) -> dict[str, dict]:
        raise NotImplementedError

    def lost(self, task: Task, exc: BaseException) -> dict[str, dict]:
        raise NotImplementedError

    def merge_task(self) -> Task:
        raise NotImplementedError

    def _settle(self, entries: dict[str, dict]) -> dict[str, dict]:
        self.settled.update(entries)
        return entries


class FilePlan(Plan):
    """A file engine's batch: the batch file written (when its records are given, else it is the one a
    run before a resume wrote), one execution per notebook not done intact before, then the merge."""

    def __init__(self, context: RunContext, batch: int, records: Sequence[dict] | None):
        super().__init__(context, batch)
        self._ids = None
        self._tallies: dict[str, dict] = {}
        if records is not None:
            lines = records.lines if isinstance(records, Batch) else None  # the input's own lines, copied
            write_lines(context.run.batch_path(batch), lines if lines is not None else map(dumps, records))
            self._ids = [record[context.settings.id_field] for record in records]
        needs = context.executor.needs
        for key in context.keys:  # models before the summaries that consume them: a re-run model re-runs its summaries
            if context.intact(key, batch) and all(dep in self.earlier for dep in needs[key]):
                self.earlier[key] = self.settled[key] = context.execution(key, batch)
            else:
                self._waiting.append(Task(batch, (key,), context.executor.execute, (key, batch), tuple(needs[key])))
        self.merged_before = self.executed and context.merged(batch)

    def done(self, task: Task, result: dict) -> dict[str, dict]:
        tally = result.pop("tally", None)  # the kernel's counts of its entries, for the merge (not the manifest)
        if tally is not None:
            self._tallies[task.keys[0]] = tally
        return self._settle({task.keys[0]: result})

    def lost(self, task: Task, exc: BaseException) -> dict[str, dict]:
        """A task the pool lost (e.g. a dead Dask worker): its execution failed, its records get
        `notebook_failed`."""
        key, executor = task.keys[0], self.context.executor
        error = executor.describe(exc, key, self.batch)
        records = executor.write_failure(key, self.batch, error)
        return self._settle({key: {"status": ExecutionStatus.FAILED, "error": error, "worker": "lost", "seconds": None,
                                   "records": records, "errors": records}})

    def merge_task(self) -> Task:
        # Documents come back in memory only from a thread of this process, not from Dask.
        keep = self.context.keep and not self.context.settings.scheduler
        ids, self._ids = self._ids, None  # the record ids read: the merge need not read the batch file again
        return Task(self.batch, (), self.context.merger.merge, (self.batch, keep, ids, self._tallies))
