"""Notebook -> Model in this process: `load_notebook` runs a notebook's production cells.

The production cells (the tagged ones, in authored order) run in a fresh
module namespace with the notebook's folder as working directory; the
declarations (name, version, status, fields, models) come from `ast` literals
read before anything runs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
import types
from collections.abc import Mapping
from pathlib import Path

from ..core.fields import PARSE_LOCK
from ..core.model import Model, build_model
from ..exceptions import NotebookError, format_location
from .contract import NotebookSpec, declarations, lint_notebook
from .provenance import provenance

_CWD_LOCK = threading.RLock()  # chdir is process-wide


@contextlib.contextmanager
def working_directory(folder: Path):
    """Run with `folder` as working directory and importable, as a kernel started there would."""
    with _CWD_LOCK, contextlib.chdir(folder):
        sys.path.insert(0, str(folder))
        try:
            yield
        finally:
            sys.path.remove(str(folder))


def _failure_line(exc: BaseException, filename: str) -> int | None:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        lines.append(exc.lineno)
    return lines[-1] if lines else None


def run_source(source: str, filename: str, namespace: dict) -> None:
    """Compile `source` (named `filename` in tracebacks) and run it in `namespace`."""
    with PARSE_LOCK:
        code = compile(source, filename, "exec")
    exec(code, namespace)  # noqa: S102 - running the model's code is the point


class _CellTimeout(BaseException):
    """Raised inside a production cell when its time is up (BaseException: `except Exception` cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Interrupt the code inside after `seconds` (SIGALRM: only in the main thread; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _CellTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def new_namespace(name: str, version: str, filename: str) -> dict:
    """The globals of a fresh module for model `name` `version`, its `__file__` set to `filename`."""
    module = types.ModuleType(f"mlsm_model_{name}_{version}".replace(".", "_").replace("-", "_"))
    module.__file__ = filename
    return module.__dict__


def execute_production_cells(spec: NotebookSpec, parameters: Mapping | None = None,
                             timeout: float | None = None) -> dict:
    """Run the production cells of a linted notebook; returns the namespace.

    `parameters` override the `parameters` cell's defaults (set right after
    it, or first when there is none), as papermill does. A cell that raises,
    or runs longer than `timeout` seconds, becomes a NotebookError naming the
    cell, tag and line.
    """
    namespace = new_namespace(spec.name, spec.version, str(spec.path))
    if spec.cell("parameters") is None:
        namespace.update(parameters or {})
    with working_directory(spec.path.parent.resolve()):
        for cell in spec.cells:
            filename = format_location(spec.path, cell.index, cell.tag)  # names the cell in tracebacks
            try:
                with time_limit(timeout):
                    run_source(cell.source, filename, namespace)
            except _CellTimeout:
                raise NotebookError(spec.path, f"did not finish within {timeout:g} s (a loop that never ends? "
                                    "a slow download?); give it longer with --timeout", cell.index, cell.tag) from None
            except Exception as exc:  # noqa: BLE001 - any failure of the notebook's code
                line = _failure_line(exc, filename)
                where = f" at line {line}" if line else ""
                hint = ("; production runs only the tagged cells: define it in a tagged cell, or save it beside "
                        "the notebook and load it in `setup`" if isinstance(exc, NameError) else "")
                raise NotebookError(spec.path, f"raised {type(exc).__name__}{where}: {exc}{hint}",
                                    cell.index, cell.tag) from None
            if cell.tag == "parameters":
                namespace.update(parameters or {})
    if not callable(namespace.get("score")):
        raise NotebookError(spec.path, "running the score cell did not define a callable `score`",
                            *spec.where("score"))
    return namespace


def load_notebook(path: str | Path, parameters: Mapping | None = None, timeout: float | None = None) -> Model:
    """Lint a notebook, run its production cells and return its Model or SummaryModel.

    The object carries `provenance`: source path, sha256 of the production
    cells (and artifacts), git commit of the file, extraction time.
    `parameters` override the notebook's `parameters` cell; `timeout`
    bounds each cell (in the main thread). Raises NotebookError naming the
    file, cell and tag on any problem.
    """
    return load_spec(lint_notebook(path), parameters, timeout)


def load_spec(spec: NotebookSpec, parameters: Mapping | None = None, timeout: float | None = None) -> Model:
    """`load_notebook` for a notebook already linted."""
    namespace = execute_production_cells(spec, parameters, timeout)
    return build_model(declarations(spec), namespace, provenance(spec))
