"""The run's sinks (MongoDB, ...), written from a thread of their own.

`Sinks` opens the run in every sink, hands each merged batch to every sink
that lacks it, and finishes the run in each. A sink that fails once is not
tried again in this run (resume stores the rest: each sink says which batches
it really holds). Writes run in one thread, batch after batch, so a sink's
retries never hold back an execution; they touch no manifest: each write's
`Stored` is applied to the manifest by the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import MlsmError
from ..files import read_jsonl
from ..store.base import ResultSink


@dataclass
class Stored:
    """What handing one batch to the sinks did: whether every sink now holds it, the problems they
    reported (documents not stored) and the sinks' errors (each sink that failed, once)."""

    batch: int
    stored: bool
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Sinks:
    """The run's sinks and the batches each holds (only those that have not failed are kept)."""

    def __init__(self, sinks: Sequence[ResultSink], run_id: str):
        self.sinks = list(sinks)
        self.run_id = run_id
        self.held: dict[str, set[int]] = {}

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def open(self, manifest: Mapping) -> list[str]:
        """Open the run in every sink and ask each which batches it holds; returns the sinks' errors."""
        errors: list[str] = []
        for sink in self.sinks:
            def start(sink=sink):
                sink.open_run(manifest)
                self.held[sink.name] = sink.stored_batches(self.run_id)

            self._guard(sink, "opening the run", start, errors)
        return errors

    def store(self, batch: int, documents: Sequence | None, results: Path) -> Stored:
        """Hand a merged batch to every sink that lacks it: `documents` from memory when given, else read
        from the run directory's `results` file."""
        outcome = Stored(batch, stored=False)
        for sink in self.sinks:
            if sink.name not in self.held or batch in self.held[sink.name]:
                continue
            docs = documents if documents is not None else list(read_jsonl(results))

            def write(sink=sink, docs=docs):
                outcome.problems += sink.write_batch(self.run_id, batch, docs)
                self.held[sink.name].add(batch)

            self._guard(sink, f"batch {batch}", write, outcome.errors)
        outcome.stored = all(batch in self.held.get(sink.name, ()) for sink in self.sinks)
        return outcome

    def finish(self, manifest: Mapping) -> list[str]:
        """The run's record in every sink that has not failed; returns the sinks' errors."""
        errors: list[str] = []
        for sink in self.sinks:
            if sink.name in self.held:
                self._guard(sink, "the run record", lambda sink=sink: sink.finish_run(manifest), errors)
        return errors

    def _guard(self, sink: ResultSink, what: str, action: Callable[[], None], errors: list[str]) -> None:
        try:
            action()
        except MlsmError as exc:  # a sink maps its driver's errors to StoreError (store.base's contract)
            self.held.pop(sink.name, None)
            errors.append(f"{sink.name}: {what}: {exc}")
