"""One (notebook, batch) execution, as a picklable unit of work.

`Executor` holds only plain data (paths, settings), so the same object runs
executions in this process's threads or, pickled, in worker processes and on
Dask workers; the models of the in-process engine are loaded once per worker
process and cached.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import orjson

from ..clock import utc_now
from ..core.model import Model, error_entry, model_key
from ..exceptions import ConfigError, MlsmError, format_location
from ..files import count_lines, write_jsonl
from ..redact import redact_text
from ..store.manifest import ExecutionStatus
from ..store.rundir import RunDirectory
from .engines import get_engine
from .merge import count_errors

_MODELS: dict[tuple, Model | MlsmError] = {}  # (settings, key) -> the model, or why it cannot load
_MODELS_LOCK = threading.Lock()


def worker_name() -> str:
    """The Dask worker's address, or "local". A Dask worker has imported distributed already; elsewhere
    importing it just to ask would cost about half a second of CPU in every worker process."""
    if "distributed" not in sys.modules:
        return "local"
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # distributed is loaded (or half so), but this is not one of its workers
        return "local"


@dataclass
class Executor:
    """Runs one (notebook, batch) of a run; plain data only, so it pickles to Dask workers.

    `secrets` (credential parameters) live only in memory: each kernel gets them
    in its own environment, never written into a notebook, manifest or `os.environ`.
    """

    run_root: str
    engine: str
    timeout: float
    sources: dict[str, str]
    needs: dict[str, list[str]]
    labels: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)
    status: str | None = None
    bundle: str | None = None
    warm_kernels: int = 0  # papermill: kernels a thread may keep between executions (see run.kernels); 0: none
    own_threads: bool = False  # executions run in the run's pool threads (not on Dask), which release what they kept
    bundled_status: dict[str, str] = field(default_factory=dict)  # key -> status in the bundle (`check_bundle`)
    record_timeout: float | None = None  # seconds one record may take to score (--record-timeout); None: no limit
    id_field: str = "id"

    @property
    def run(self) -> RunDirectory:
        return RunDirectory(self.run_root)

    def _cache_key(self) -> tuple:
        return (self.bundle, self.status, tuple(sorted(self.sources.items())), repr(sorted(self.parameters.items())),
                tuple(sorted(self.secrets)))

    def model(self, key: str) -> Model:
        """The in-process engine's model `key`, loaded once per process: in a worker, since loading runs the
        notebook's setup code. A model that cannot load raises the same error for every batch it is given."""
        settings = self._cache_key()
        with _MODELS_LOCK:
            if (settings, key) not in _MODELS:
                _MODELS.update({(settings, k): found for k, found in self._load(key).items()})
            found = _MODELS[settings, key]
        if isinstance(found, MlsmError):
            raise found
        return found

    def check_bundle(self) -> None:
        """ConfigError, before any batch, when the bundle lacks a model or was extracted from other notebooks
        (read from its manifest: no model code runs here)."""
        from ..notebook.bundle import bundle_entries
        from ..notebook.contract import lint_notebook

        try:
            bundled = {model_key(e["name"], e["version"]): e for e in bundle_entries(self.bundle)}
        except MlsmError as exc:
            raise ConfigError(str(exc)) from None
        self.bundled_status = {key: entry["status"] for key, entry in bundled.items()}
        for key, source in self.sources.items():
            if key not in bundled:
                raise ConfigError(f"{self.bundle}: the bundle has no model {key} (from {source})")
            if bundled[key].get("sha256") != lint_notebook(source).sha256():
                raise ConfigError(f"{self.bundle}: model {key} was extracted from a different version of "
                                  f"{source}; extract the bundle again")

    def _load(self, key: str) -> dict[str, Model | MlsmError]:
        """key -> model: the notebook `key`'s, or every model of the bundle (its modules run once); or the error."""
        from ..notebook.bundle import load_bundle
        from ..notebook.execute import load_notebook

        try:
            if self.bundle:
                models = {model_key(m.name, m.version): m for m in load_bundle(self.bundle)}
            else:
                models = {key: load_notebook(self.sources[key], {**self.parameters, **self.secrets})}
        except MlsmError as exc:
            return {key: exc}
        for model in models.values():
            model.status = self.status or model.status
        return models

    def dependencies(self, key: str, batch: int) -> dict[str, str]:
        return {dep: str(self.run.output_path(dep, batch)) for dep in self.needs[key]}

    def execute(self, key: str, batch: int, *_after) -> dict:
        """Run one (notebook, batch); returns its manifest entry. Never raises for a failure.

        The entry holds the execution's `records` and `errors` counts. Extra
        arguments are ignored: Dask passes the executions this one waits for.
        """
        run = self.run
        started = time.perf_counter()
        entry: dict[str, Any] = {"status": ExecutionStatus.OK, "started_at": utc_now(), "worker": worker_name()}
        output = run.output_path(key, batch)
        engine = get_engine(self.engine)
        entry.update(engine.kept(self, key, batch))
        try:
            entry.update(engine.execute(self, key, batch) or {})
            if not output.is_file():
                raise MlsmError("the runner cell did not write the model's outputs")
            entry.update(_output_facts(output, entry.get("errors")))
        except Exception as exc:  # noqa: BLE001 - one execution failing never stops the run
            entry.update(getattr(exc, "mlsm_facts", {}))  # e.g. the papermill engine's kernel log
            entry.update(status=ExecutionStatus.FAILED, error=self.describe(exc, key, batch))
            entry.update(records=self.write_failure(key, batch, entry["error"]))
            entry["errors"] = entry["records"]
        entry["seconds"] = round(time.perf_counter() - started, 3)
        return entry

    def location(self, key: str) -> str:
        """How errors name a notebook: its label, or its source path."""
        return self.labels.get(key, self.sources[key])

    def describe(self, exc: BaseException, key: str, batch: int) -> str:
        """One line naming the notebook cell that failed (as JupyterLab counts the source notebook's cells,
        with its tag), and what the engine noted on the failure."""
        where = self.location(key)
        executed = self.run.executed_path(key, batch)
        if self.engine == "papermill" and executed.is_file():
            cells = nbformat.read(executed, as_version=4).cells
            failed = next((c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
                          None)
            if failed is None:  # a timeout leaves no error output: the last cell papermill started is the one
                started = [c for c in cells if c.metadata.get("papermill", {}).get("start_time")]
                failed = started[-1] if started else None
            if failed is not None:
                origin = failed.metadata.get("mlsm")
                where = (format_location(where, origin["source_cell"], origin["tag"]) if origin
                         else where + " (runner cell)")
        name = getattr(exc, "ename", type(exc).__name__)
        value = getattr(exc, "evalue", str(exc))
        message = (str(value).strip().splitlines() or [""])[0]
        notes = redact_text("".join(f" ({note})" for note in getattr(exc, "__notes__", ())), self.secrets)
        # Redacted before it is cut short: a secret cut in two would no longer be recognised.
        return redact_text(f"{where}: batch {batch}: {name}: {message}", self.secrets)[:500 - len(notes)] + notes

    def write_failure(self, key: str, batch: int, error: str) -> int:
        """Give every record of the batch a `notebook_failed` entry for this model; returns how many."""
        size = count_lines(self.run.batch_path(batch))
        failed = error_entry("notebook_failed", error)
        return write_jsonl(self.run.output_path(key, batch), (failed for _ in range(size)))


def _output_facts(path: Path, errors: int | None = None) -> dict:
    """sha256, record count and error count of a model's output file (one JSON entry per line): `errors` as
    the engine counted them as it wrote the file (the papermill engine's runner cell), else counted from the
    entries (see `merge.count_errors`), not from the bytes."""
    data = path.read_bytes()
    return {"output_sha256": hashlib.sha256(data).hexdigest(), "records": data.count(b"\n"),
            "errors": count_errors(_objects(data)) if errors is None else errors}


def _objects(data: bytes) -> Iterator[dict]:
    """The JSON objects among the lines of `data` (a line that is not one is for the merge to name)."""
    for line in data.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry
