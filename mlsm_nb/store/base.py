"""The one interface every place that keeps a run's results implements.

A run hands its merged batches, from memory, to each of its sinks in turn
(the run directory always; MongoDB when configured). The contract:

- ``open_run(manifest)`` is called once per start or resume, before any
  batch; ``manifest["run_id"]`` and ``manifest["started_at"]`` identify the
  run and its place in run order (a run started later is newer).
- ``write_batch(run_id, batch, documents)`` stores the result documents of one
  batch (DESIGN.md's shape; ids keep their JSON type). It is idempotent per
  ``(run_id, batch)``: writing a batch again never duplicates a document.
- ``{"_current": 0}`` selects exactly one live document per id, by run order:
  storing (or resuming) an older run never makes its results live over a
  newer run's.
- ``stored_batches(run_id)`` returns the batches the sink really holds (not
  what it was told), so resume can store again what a crash lost.
- ``finish_run(manifest)`` records the finished run (its manifest).
- Failures raise `StoreError` (one line, no credentials); the run records the
  failure and a resume writes again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

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
    def write_batch(self, run_id: str, batch: int, documents: Sequence[Mapping]) -> None:
        """Store one merged batch; idempotent per (run_id, batch)."""

    @abstractmethod
    def stored_batches(self, run_id: str) -> set[int]:
        """The batches of `run_id` this sink holds."""

    @abstractmethod
    def finish_run(self, manifest: Mapping) -> None:
        """Record the finished (or failed) run."""
