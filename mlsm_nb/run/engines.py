"""Engines: how a model scores a batch. A registry of one shape, as papermill's.

An engine is an instance of one of two base classes, whose docstrings state
what a subclass supplies:

- `FileEngine` (e.g. papermill) runs each (notebook, batch) execution on its
  own, in threads of the run's process or on Dask workers, reading the batch
  file and writing the model's entries to a file;
- `InMemoryEngine` (e.g. inprocess) scores records it is handed, in worker
  processes (or on Dask workers); a whole batch is one task.

Each kind hands the run's scheduler (`run.schedule`) its *plan* for a batch
(`plan`: the tasks and what each needs, see `run.plans`) and the pools they
run in (`pools`); an engine itself only says how one model scores.

`register(name, engine)` adds one, `unregister(name)` removes it;
`get_engine(name)` finds it, or one a distribution declares in the entry-point
group ``mlsm_nb.engines`` (``name = "package.module:EngineClass"``, a class
made with no arguments, or an engine instance), as papermill finds its
engines: a third-party engine plugs in without editing run/. An unknown name
is a `ConfigError` naming the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..core.batch import BatchOutcome
    from ..core.timelimit import Board
    from ..notebook.contract import NotebookSpec
    from .context import RunContext
    from .execution import Executor
    from .plans import Plan

ENTRY_POINTS = "mlsm_nb.engines"


class Engine:
    """What every engine has. Subclass `FileEngine` or `InMemoryEngine`, not this.

    - ``check(executor, specs)``: once per run, before the run directory exists;
      raises `ConfigError` when the run cannot start (e.g. a bundle that does
      not match the notebooks). Default: nothing to check.
    - ``prepare(executor, specs)``: once per run, in the orchestrating process,
      after `check` and before any batch (e.g. write production notebooks into
      the run directory). Default: nothing.
    - ``finish(context)``: once the run's pools have stopped (default: nothing).
    """

    name = ""
    required: tuple[str, ...] = ()  # the methods a subclass must supply (`register` checks them)
    copies_lines = False  # whether its plans' batch files copy a JSON Lines input's lines (`records.Batch.lines`)

    def check(self, executor: Executor, specs: Sequence[NotebookSpec]) -> None:
        pass

    def prepare(self, executor: Executor, specs: Sequence[NotebookSpec]) -> None:
        pass

    def finish(self, context: RunContext) -> None:
        pass

    def pools(self, workers: int, scheduler: str | None) -> tuple[Any, Any]:
        """(the pool tasks run in, the pool merges run in): one Dask pool for both with a `scheduler`."""
        from .pools import DaskPool

        pool = DaskPool(scheduler)
        return pool, pool

    def reads_again(self, input_complete: bool) -> bool:
        """Whether a resumed run reads the records file again (else its batch files are used)."""
        return True

    def plan(self, context: RunContext, batch: int, records: list[dict] | None) -> Plan:
        raise NotImplementedError


class FileEngine(Engine):
    """An engine that runs each (notebook, batch) execution on its own. A subclass supplies:

    - ``kept(executor, key, batch) -> dict``: where the execution's audit artifacts
      go (e.g. the executed notebook), for its manifest entry;
    - ``execute(executor, key, batch) -> dict | None``: run model `key` over the
      batch file ``run.batch_path(batch)`` and write its entries to
      ``run.output_path(key, batch)`` (one JSON object per line, batch order);
      returns facts for the execution's manifest entry. It runs in a pool thread
      or on a Dask worker and raises on failure (the executor records it: notes
      added to the exception end the recorded error, and a dict of facts set as
      the exception's ``mlsm_facts`` joins the manifest entry);
    - optionally ``release()``: runs in each pool thread as the run's pool stops,
      to free what the engine kept in that thread between executions (warm kernels).

    Its plan for a batch (`plans.FilePlan`): one task per notebook, a summary's
    after its models' of the same batch; the batch is merged in a thread of its own.
    """

    required = ("kept", "execute")
    copies_lines = True

    def kept(self, executor: Executor, key: str, batch: int) -> dict:
        raise NotImplementedError

    def execute(self, executor: Executor, key: str, batch: int) -> dict | None:
        raise NotImplementedError

    def release(self) -> None:
        pass

    def pools(self, workers: int, scheduler: str | None) -> tuple[Any, Any]:
        from .pools import ThreadPool

        if scheduler:
            return super().pools(workers, scheduler)
        return ThreadPool(workers, self.release), ThreadPool(1)

    def reads_again(self, input_complete: bool) -> bool:
        return not input_complete

    def plan(self, context: RunContext, batch: int, records: list[dict] | None) -> Plan:
        from .plans import FilePlan

        return FilePlan(context, batch, records)


class InMemoryEngine(Engine):
    """An engine that scores records in memory. A subclass supplies:

    - ``score(executor, key, records, dependencies, *, board, stuck) -> core.batch.BatchOutcome``:
      model `key`'s entries for `records` (batch order); `dependencies` maps
      (name, version) of each model a summary needs to its entries. Called in
      a worker process (or on a Dask worker); a failure fails this model's
      execution of the batch only. Each record within ``executor.record_timeout``
      seconds (`--record-timeout`, None: no limit): `board` and `stuck` go to
      `core.batch.score_batch`, which enforces it (the board is the one the
      worker's pool reads, to find a record stuck where no interrupt reaches it;
      `stuck`: records found so before, to be given their timeout unscored).

    Its plan for a batch (`inmemory.BatchPlan`): one task scores the whole batch,
    every model then every summary, and merges it, in a worker; a batch whose
    worker is lost is scored again one model at a time (`inmemory.FallbackPlan`).
    """

    required = ("score",)

    def score(self, executor: Executor, key: str, records: Sequence[Mapping],
              dependencies: Mapping[tuple[str, str], Sequence[dict]], *, board: Board,
              stuck: Mapping[int, float]) -> BatchOutcome:
        raise NotImplementedError

    def pools(self, workers: int, scheduler: str | None) -> tuple[Any, Any]:
        from .pools import ProcessPool

        if scheduler:
            return super().pools(workers, scheduler)
        pool = ProcessPool(workers)
        return pool, pool

    def plan(self, context: RunContext, batch: int, records: list[dict] | None) -> Plan:
        from .inmemory import BatchPlan

        return BatchPlan(context, batch, records)


_ENGINES: dict[str, Engine] = {}
_FROM_ENTRY_POINTS: set[str] = set()  # names loaded once from an entry point (unregister keeps them out)


def register(name: str, engine: Engine) -> None:
    """Make `engine` available as `--engine name`; ConfigError naming what is missing when it is not a
    `FileEngine` or `InMemoryEngine` that supplies its kind's methods."""
    if not isinstance(engine, (FileEngine, InMemoryEngine)):
        raise ConfigError(f"engine {name!r} is {type(engine).__name__}, not a FileEngine or InMemoryEngine "
                          "(mlsm_nb.run.engines)")
    base = FileEngine if isinstance(engine, FileEngine) else InMemoryEngine
    missing = [m for m in engine.required if getattr(type(engine), m) is getattr(base, m)]
    if missing:
        raise ConfigError(f"engine {name!r} has no {', '.join(missing)} method")
    _ENGINES[name] = engine


def unregister(name: str) -> None:
    """Remove engine `name` (registered, or loaded from an entry point); ConfigError when unknown."""
    if _ENGINES.pop(name, None) is None:
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(engine_names())}")
    _FROM_ENTRY_POINTS.add(name)


def get_engine(name: str) -> Engine:
    """The engine registered as `name`, else the one entry point `name` of group ``mlsm_nb.engines``
    names (loaded once); ConfigError naming the known engines otherwise."""
    if name not in _ENGINES and name not in _FROM_ENTRY_POINTS:
        found = [ep for ep in metadata.entry_points(group=ENTRY_POINTS) if ep.name == name]
        if found:
            _FROM_ENTRY_POINTS.add(name)
            register(name, _load(found[0]))
    try:
        return _ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(engine_names())}") from None


def _load(entry_point: metadata.EntryPoint) -> Engine:
    try:
        loaded = entry_point.load()
        return loaded() if isinstance(loaded, type) else loaded
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is one error naming it
        raise ConfigError(f"engine {entry_point.name!r} (entry point {entry_point.value} of group "
                          f"{ENTRY_POINTS}) cannot be loaded: {type(exc).__name__}: {exc}") from None


def engine_names() -> list[str]:
    """The registered engines and those entry points declare (not loaded here)."""
    declared = {ep.name for ep in metadata.entry_points(group=ENTRY_POINTS)} - _FROM_ENTRY_POINTS
    return sorted(set(_ENGINES) | declared)


class PapermillEngine(FileEngine):
    """Executes the production notebook with papermill: the audit path, one executed notebook per execution."""

    name = "papermill"

    def prepare(self, executor: Executor, specs: Sequence[NotebookSpec]) -> None:
        import nbformat

        from ..core.model import model_key
        from .fork import FORKER
        from .kernels import remove_stale_kernel_files, start_template
        from .notebooks import production_notebook
        from .watchdog import remove_stale_boards

        remove_stale_kernel_files()  # what a killed run's kernels left behind
        remove_stale_boards()
        FORKER.prepare(specs)  # what the kernel template imports
        if executor.own_threads and not executor.warm_kernels:
            start_template()  # it imports while the run writes the production notebooks and reads the first batch
        for spec in specs:
            key = model_key(spec.name, spec.version)
            nbformat.write(production_notebook(spec, sorted(executor.secrets)), executor.run.notebook_path(key))

    def kept(self, executor: Executor, key: str, batch: int) -> dict:
        run = executor.run
        return {"executed": str(run.executed_path(key, batch).relative_to(run.root))}

    def execute(self, executor: Executor, key: str, batch: int) -> dict | None:
        """Execute the production notebook over the batch. A kernel stopped because a record was stuck past
        --record-timeout where no interrupt reached it (`run.watchdog`) is replaced: the notebook runs again
        in a new kernel, that record given its timeout unscored (at most `MAX_STUCK` records)."""
        from ..core.timelimit import MAX_STUCK
        from .watchdog import KernelBoard

        stuck: dict[int, float] = {}
        while True:
            with KernelBoard() as board:
                limit = {"seconds": executor.record_timeout, "board": board.path, "stuck": dict(stuck),
                         "id_field": executor.id_field}
                try:
                    return self._execute(executor, key, batch, limit)
                except BaseException as exc:
                    if board.stuck is None or len(stuck) >= MAX_STUCK:
                        if board.stuck is not None:
                            exc.add_note(f"more than {MAX_STUCK} records were stuck past --record-timeout where no "
                                         "interrupt reached them (C code?); their kernel was stopped each time")
                        raise
                    stuck[board.stuck.position] = round(board.stuck.seconds, 3)

    def _execute(self, executor: Executor, key: str, batch: int, limit: dict) -> dict:
        """One execution in one kernel; returns its facts for the manifest (see `FileEngine.execute`)."""
        import papermill
        from jupyter_core.utils import run_sync

        from .executed import ENGINE
        from .kernels import KERNEL_ARGUMENTS, kernel_log_written, kernel_manager_class, thread_kernels
        from .notebooks import secret_env

        run = executor.run
        notebook, cwd = str(run.notebook_path(key)), str(Path(executor.sources[key]).parent)
        parameters = {**executor.parameters, "mlsm_batch_path": str(run.batch_path(batch)),
                      "mlsm_output_path": str(run.output_path(key, batch)),
                      "mlsm_dependencies": executor.dependencies(key, batch), "mlsm_status": executor.status,
                      "mlsm_limit": limit}
        env = {secret_env(name): json.dumps(value) for name,
               value in executor.secrets.items()}  # JSON: a dict stays a dict
        launched_because = ("--warm-kernels: kept kernels are launched" if executor.warm_kernels else
                            None if executor.own_threads else "--scheduler: Dask workers launch their kernels")
        manager_class = kernel_manager_class(env, run.kernel_log_path(key, batch), executor.secrets,
                                             launched_because)
        # In the run's own threads, the thread's kernels: its kept kernel of the notebook (--warm-kernels), or a
        # new one nbclient starts and leaves running, which the thread keeps or stops (in the background).
        # On Dask, nbclient starts and stops the kernel.
        kernels = thread_kernels(executor.warm_kernels) if executor.own_threads else None
        km = (run_sync(kernels.take)(notebook) or kernels.new(manager_class)) if kernels else None
        log = Path(km.kernel_log if km else manager_class.kernel_log)  # a kept kernel's log is its first execution's
        log_fact = {"kernel_log": str(log.relative_to(run.root))}
        facts = {"kernel_runs": km.executions} if executor.warm_kernels else {}  # executions it ran before
        origin = km.origin if km else lambda: {"kernel": "launched", "kernel_launched_because": launched_because}
        try:
            # The kernel's working directory is set through nbclient's resources, not papermill's
            # `cwd`, which changes the whole process's directory and so is unsafe in threads.
            executed = papermill.execute_notebook(
                notebook, str(run.executed_path(key, batch)), parameters=parameters, kernel_name="python3",
                engine_name=ENGINE, progress_bar=False, log_output=False, execution_timeout=executor.timeout, km=km,
                kernel_manager_class=manager_class, resources={"metadata": {"path": cwd}},
                extra_arguments=KERNEL_ARGUMENTS)
        except BaseException as exc:
            facts.update(origin())
            if km is not None:
                run_sync(kernels.discard)(km)
            exc.mlsm_facts = facts
            if kernel_log_written(log, executor.secrets):
                exc.add_note(f"kernel log: {log_fact['kernel_log']}")
                exc.mlsm_facts = {**facts, **log_fact}
            raise
        # Before the kernel is asked to stop: a log is not rewritten (redacted) while its kernel writes its exit
        # lines; those are redacted when it has stopped.
        written = kernel_log_written(log, executor.secrets)
        facts.update(origin(), **_facts(executed))
        if km is not None:
            run_sync(kernels.keep)(notebook, km, cwd)
        return {**facts, **log_fact} if written else facts

    def release(self) -> None:
        from .kernels import release_thread_kernels

        release_thread_kernels()

    def finish(self, context: RunContext) -> None:
        """Name in its execution's entry a kernel log written after the entry was: what a kernel wrote as it
        stopped (its kernels have all stopped now, and only logs that are not empty are left). The kernel
        template is closed (one started as the run began and never forked from is closed here)."""
        from .fork import FORKER

        FORKER.close()
        run = context.run
        for key, batch, entry in context.executions():
            log = run.kernel_log_path(key, batch)
            if "kernel_log" not in entry and log.is_file():
                entry["kernel_log"] = str(log.relative_to(run.root))


def _facts(executed) -> dict:
    """The error count and the slowest records (and those found stuck before) the runner cell showed
    (`overview.FACTS`), for the execution's manifest entry."""
    from .overview import FACTS

    for cell in executed.cells:
        for output in cell.get("outputs", ()):
            facts = output.get("data", {}).get(FACTS)
            if facts is not None:
                return {k: v for k, v in facts.items() if v or k == "errors"}
    return {}


class InProcessEngine(InMemoryEngine):
    """Scores with the extracted Model objects, in memory, in worker processes: no kernels, no files between models."""

    name = "inprocess"

    def check(self, executor: Executor, specs: Sequence[NotebookSpec]) -> None:
        if executor.bundle:  # a bundle that does not match the notebooks fails the run before it starts
            executor.check_bundle()

    def score(self, executor: Executor, key: str, records: Sequence[Mapping],
              dependencies: Mapping[tuple[str, str], Sequence[dict]], *, board: Board,
              stuck: Mapping[int, float]) -> BatchOutcome:
        from ..core.batch import score_batch

        return score_batch(executor.model(key), records, dependencies, limit=executor.record_timeout, board=board,
                           stuck=stuck)


register("papermill", PapermillEngine())
register("inprocess", InProcessEngine())
