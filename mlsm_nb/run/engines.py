"""Engines: how a model scores a batch. A registry of one shape, as papermill's.

An engine is an object with a ``name``, ``prepare(executor, specs)`` (called
once per run, in the orchestrating process, before any batch: load and check
models, write production notebooks; raises `ConfigError` when the run cannot
start) and an ``in_memory`` flag (default False) saying which of two kinds it is:

- a file engine (``in_memory = False``, e.g. papermill) runs each
  (notebook, batch) execution on its own, reading the batch file and writing
  the model's entries to ``run.output_path(key, batch)`` (one line per record,
  batch order): ``kept(executor, key, batch) -> dict`` says where the
  execution's audit artifacts go (e.g. the executed notebook), and
  ``execute(executor, key, batch)`` does it, returning facts for the
  execution's manifest entry or None; it runs in a pool thread or on a Dask
  worker and raises on failure (the executor records it: notes added to the
  exception end the recorded error, and a dict of facts set as the
  exception's ``mlsm_facts`` joins the manifest entry). An optional
  ``release()`` runs in each pool thread as the run's pool stops, to free
  what the engine kept in that thread between executions (warm kernels);
- an in-memory engine (``in_memory = True``, e.g. inprocess) scores records
  it is handed: ``score(executor, key, records, dependencies) -> BatchOutcome``,
  called in a worker process (or on a Dask worker) by `run.inmemory`.

`register(name, engine)` adds one; `get_engine(name)` finds it, or raises a
`ConfigError` naming the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..core.batch import BatchOutcome
    from ..notebook.contract import NotebookSpec
    from .execution import Executor


class Engine(Protocol):
    name: str
    in_memory: bool

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None: ...


_ENGINES: dict[str, Engine] = {}


def register(name: str, engine: Engine) -> None:
    """Make `engine` available as `--engine name`."""
    needed = ("prepare", "score") if getattr(engine, "in_memory", False) else ("prepare", "kept", "execute")
    missing = [m for m in needed if not callable(getattr(engine, m, None))]
    if missing:
        raise ConfigError(f"engine {name!r} has no {', '.join(missing)} method")
    _ENGINES[name] = engine


def get_engine(name: str) -> Engine:
    """The engine registered as `name`; ConfigError naming the known engines otherwise."""
    try:
        return _ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(sorted(_ENGINES))}") from None


def engine_names() -> list[str]:
    return sorted(_ENGINES)


class PapermillEngine:
    """Executes the production notebook with papermill: the audit path, one executed notebook per execution."""

    name = "papermill"
    in_memory = False

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None:
        import nbformat

        from ..core.model import model_key
        from .fork import FORKER
        from .kernels import remove_stale_kernel_files
        from .notebooks import production_notebook

        remove_stale_kernel_files()  # what a killed run's kernels left behind
        FORKER.prepare(specs)  # what the kernel template imports
        for spec in specs:
            key = model_key(spec.name, spec.version)
            nbformat.write(production_notebook(spec, sorted(executor.secrets)), executor.run.notebook_path(key))

    def kept(self, executor: "Executor", key: str, batch: int) -> dict:
        run = executor.run
        return {"executed": str(run.executed_path(key, batch).relative_to(run.root))}

    def execute(self, executor: "Executor", key: str, batch: int) -> dict | None:
        import papermill
        from jupyter_core.utils import run_sync

        from .kernels import kernel_log_written, kernel_manager_class, thread_kernels
        from .notebooks import secret_env

        run = executor.run
        notebook, cwd = str(run.notebook_path(key)), str(Path(executor.sources[key]).parent)
        parameters = {**executor.parameters, "mlsm_batch_path": str(run.batch_path(batch)),
                      "mlsm_output_path": str(run.output_path(key, batch)),
                      "mlsm_dependencies": executor.dependencies(key, batch), "mlsm_status": executor.status}
        env = {secret_env(name): json.dumps(value) for name, value in executor.secrets.items()}  # JSON: a dict stays a dict
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
        # the executions this kernel ran before this one
        facts = {"kernel_runs": km.executions} if executor.warm_kernels else {}
        origin = km.origin if km else lambda: {"kernel": "launched", "kernel_launched_because": launched_because}
        try:
            # The kernel's working directory is set through nbclient's resources, not papermill's
            # `cwd`, which changes the whole process's directory and so is unsafe in threads.
            papermill.execute_notebook(
                notebook, str(run.executed_path(key, batch)), parameters=parameters, kernel_name="python3",
                progress_bar=False, log_output=False, execution_timeout=executor.timeout, km=km,
                kernel_manager_class=manager_class, resources={"metadata": {"path": cwd}})
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
        facts.update(origin())
        if km is not None:
            run_sync(kernels.keep)(notebook, km, cwd)
        return {**facts, **log_fact} if written else facts

    def release(self) -> None:
        from .kernels import release_thread_kernels

        release_thread_kernels()


class InProcessEngine:
    """Scores with the extracted Model objects, in memory, in worker processes: no kernels, no files between models."""

    name = "inprocess"
    in_memory = True

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None:
        if executor.bundle:  # a bundle that does not match the notebooks fails the run before any batch
            executor.check_bundle()

    def score(self, executor: "Executor", key: str, records: Sequence[Mapping],
              dependencies: Mapping[tuple[str, str], Sequence[dict]]) -> "BatchOutcome":
        from ..core.batch import score_batch

        return score_batch(executor.model(key), records, dependencies)


register("papermill", PapermillEngine())
register("inprocess", InProcessEngine())
