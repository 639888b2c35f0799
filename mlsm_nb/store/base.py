"""The one interface every place that keeps a run's results implements.

A run hands its merged batches, from memory, to each of its sinks in turn
(the run directory always; MongoDB when configured). The contract:

- ``open_run(manifest)`` is called once per start or resume, before any
  batch; ``manifest["run_id"]`` and ``manifest["started_at"]`` identify the
  run and its place in run order (a run started later is newer).
- ``write_batch(run_id, batch, documents)`` stores the result documents of one
  batch (DESIGN.md's shape; ids keep their JSON type: ``1`` and ``"1"`` are two
  records). It is idempotent per ``(run_id, batch)``: writing a batch again
  never duplicates a document. Each document's ``_timestamp`` (when the record
  was scored) is kept as given. An id repeated within a batch is stored each
  time, the later one live. A record the sink cannot hold as scored (a result
  too large, an id too large) is stored as its ``_error`` or left out, and
  reported in the returned list (one line each), never a failed batch.
- ``{"_current": 0}`` selects exactly one live document per id, by run order
  (``started_at``, then run id; within a run, batch then position): storing
  (or resuming) an older run never makes its results live over a newer run's.
- ``stored_batches(run_id)`` returns the batches the sink really holds (not
  what it was told), so resume can store again what a crash lost.
- ``finish_run(manifest)`` records the finished run (its manifest) and
  registers its models (``manifest["notebooks"]``, else ``manifest["models"]``).
- Failures raise `StoreError` (one line, no credentials); the run records the
  failure and a resume writes again.

`store_as_run` drives the four methods for a caller that has documents but no
run of its own (MLSM's ``RunModelsAll(db=...)``, the HTTP server).
"""

from __future__ import annotations

import datetime as dt
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

from ..clock import utc_now
from ..exceptions import MlsmError


class StoreError(MlsmError):
    """A sink could not store or read what it was asked to (the message never holds credentials)."""


class ResultSink(ABC):
    """Where a run's result documents go; see the module docstring for the contract."""

    name: str = "sink"

    @abstractmethod
    def open_run(self, manifest: Mapping) -> None:
        """Prepare for a run that starts or resumes."""

    @abstractmethod
    def write_batch(self, run_id: str, batch: int, documents: Sequence[Mapping]) -> list[str]:
        """Store one merged batch; idempotent per (run_id, batch). Returns one line per record
        stored only as its error or not stored (empty when all went in as given)."""

    @abstractmethod
    def stored_batches(self, run_id: str) -> set[int]:
        """The batches of `run_id` this sink holds."""

    @abstractmethod
    def finish_run(self, manifest: Mapping) -> None:
        """Record the finished (or failed) run."""


_last_start = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_start_lock = threading.Lock()


def _start_time() -> str:
    """Now, to the microsecond, later than any start this process handed out before
    (two one-off runs in a row keep their order)."""
    global _last_start
    with _start_lock:
        now = dt.datetime.now(dt.timezone.utc)
        _last_start = max(now, _last_start + dt.timedelta(microseconds=1))
        return _last_start.isoformat(timespec="microseconds")


def store_as_run(sink: ResultSink, documents: Iterable[Mapping], *, models: Sequence[Mapping] = (),
                 source: str = "store_as_run", batch_size: int = 5000) -> tuple[dict, list[str]]:
    """Store result documents as a run of their own: open it, write them in batches, finish it.

    For callers without a run (MLSM's ``RunModelsAll(db=...)``, the HTTP server).
    `models` are registry entries (``name``, ``version``, ``status``, ...). The run
    starts now, so it is newer than every run before it; an id repeated in
    `documents` is stored each time, the later one live. Returns the run's manifest
    and the per-record problems `write_batch` reported.
    """
    from .rundir import new_run_id

    started_at = _start_time()
    manifest = {"run_id": new_run_id(), "status": "running", "started_at": started_at, "ended_at": None,
                "source": source, "models": [dict(m) for m in models]}
    sink.open_run(manifest)
    problems: list[str] = []
    batch: list[Mapping] = []
    number = 0
    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            problems += sink.write_batch(manifest["run_id"], number, batch)
            batch, number = [], number + 1
    if batch:
        problems += sink.write_batch(manifest["run_id"], number, batch)
    manifest.update(status="succeeded", ended_at=utc_now())
    sink.finish_run(manifest)
    return manifest, problems
