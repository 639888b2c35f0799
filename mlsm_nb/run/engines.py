"""Engines: how one (notebook, batch) is scored. A registry of one shape, as papermill's.

An engine is an object with:

- ``name``;
- ``prepare(executor, specs)``: called once per run, in the orchestrating
  process, before any batch (load and check models, write production notebooks);
  raises `ConfigError` when the run cannot start;
- ``kept(executor, key, batch) -> dict``: where the execution's audit
  artifacts go (e.g. the executed notebook), recorded in its manifest entry
  whether it succeeds or fails;
- ``execute(executor, key, batch)``: scores the batch's records with the
  model `key` and writes the model's entries to ``run.output_path(key, batch)``
  (one line per record, batch order). It runs in a pool thread or on a Dask
  worker, so it reads only the picklable `Executor`. A failure raises; the
  executor turns it into that execution's `notebook_failed`.

`register(name, engine)` adds one; `get_engine(name)` finds it, or raises a
`ConfigError` naming the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..notebook.contract import NotebookSpec
    from .execution import Executor


class Engine(Protocol):
    name: str

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None: ...

    def kept(self, executor: "Executor", key: str, batch: int) -> dict: ...

    def execute(self, executor: "Executor", key: str, batch: int) -> None: ...


_ENGINES: dict[str, Engine] = {}


def register(name: str, engine: Engine) -> None:
    """Make `engine` available as `--engine name`."""
    missing = [m for m in ("prepare", "kept", "execute") if not callable(getattr(engine, m, None))]
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

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None:
        import nbformat

        from ..store.rundir import model_key
        from .notebooks import production_notebook

        for spec in specs:
            key = model_key(spec.name, spec.version)
            nbformat.write(production_notebook(spec, sorted(executor.secrets)), executor.run.notebook_path(key))

    def kept(self, executor: "Executor", key: str, batch: int) -> dict:
        run = executor.run
        return {"executed": str(run.executed_path(key, batch).relative_to(run.root))}

    def execute(self, executor: "Executor", key: str, batch: int) -> None:
        import papermill

        from .kernels import kernel_manager_class
        from .notebooks import secret_env

        run = executor.run
        parameters = {**executor.parameters, "mlsm_batch_path": str(run.batch_path(batch)),
                      "mlsm_output_path": str(run.output_path(key, batch)),
                      "mlsm_dependencies": executor.dependencies(key, batch), "mlsm_status": executor.status}
        env = {secret_env(name): json.dumps(value) for name, value in executor.secrets.items()}  # JSON: a dict stays a dict
        # The kernel's working directory is set through nbclient's resources, not papermill's
        # `cwd`, which changes the whole process's directory and so is unsafe in threads.
        papermill.execute_notebook(
            str(run.notebook_path(key)), str(run.executed_path(key, batch)),
            parameters=parameters, kernel_name="python3", progress_bar=False, log_output=False,
            execution_timeout=executor.timeout, kernel_manager_class=kernel_manager_class(env),
            resources={"metadata": {"path": str(Path(executor.sources[key]).parent)}})


class InProcessEngine:
    """Scores with the extracted Model objects in this process (or the Dask worker's): no kernels."""

    name = "inprocess"

    def prepare(self, executor: "Executor", specs: Sequence["NotebookSpec"]) -> None:
        executor.models()  # a bad bundle or notebook fails the run before any batch

    def kept(self, executor: "Executor", key: str, batch: int) -> dict:
        return {}

    def execute(self, executor: "Executor", key: str, batch: int) -> None:
        from .runtime import score_file_batch

        run = executor.run
        score_file_batch(executor.models()[key], str(run.batch_path(batch)), str(run.output_path(key, batch)),
                         executor.dependencies(key, batch))


register("papermill", PapermillEngine())
register("inprocess", InProcessEngine())
