"""Merge a batch's model outputs into result documents, and count what they hold.

`Merger` holds plain data only, so a batch's merge runs in the runner's merge
thread, a worker process (in-process engine) or a Dask worker, and the runner
only collects the counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._gc import full_collections_deferred
from ..core.output import is_score
from ..exceptions import DataFileError, describe_error
from ..files import read_jsonl
from ..store.rundir import RunDirectory


@dataclass
class Merger:
    """Writes ``results/batch-N.jsonl`` of one run from its record ids and its models' entries."""

    run_root: str
    run_id: str
    id_field: str
    models: dict[str, tuple[str, str]]  # key -> (name, version), in execution order

    def merge(self, batch: int, keep: bool = False, ids: Sequence | None = None) -> dict:
        """Write the batch's result documents to the run directory from its models' output files; returns
        ``{"models": per-model counts (see `Tally`)}``, plus ``"documents"`` when `keep` (for the
        run's other sinks, when the merge ran in this process). `ids` are the batch's record ids in
        order, when the caller still has them; otherwise they are read from the batch file. An output
        file that is not one JSON object per record of the batch raises `DataFileError` naming it."""
        run = RunDirectory(self.run_root)
        if ids is None:
            ids = [record[self.id_field] for record in read_jsonl(run.batch_path(batch))]
        outputs = [_entries(run.output_path(k, batch), len(ids)) for k in self.models]
        return self._write(run, batch, ids, outputs, keep)

    def merge_entries(self, batch: int, records: Iterable[Mapping], entries: Mapping[str, Sequence[dict]],
                      keep: bool = False) -> dict:
        """`merge`, from records and their models' entries in memory (key -> entries, batch order)."""
        ids = (record[self.id_field] for record in records)
        return self._write(RunDirectory(self.run_root), batch, ids, [entries[k] for k in self.models], keep)

    @full_collections_deferred()  # see mlsm_nb._gc
    def _write(self, run: RunDirectory, batch: int, ids: Iterable, outputs: list[Iterable[dict]],
               keep: bool) -> dict:
        keys, timestamp = list(self.models), int(time.time())
        tallies = [Tally() for _ in keys]
        scores: list[list] = [[] for _ in keys]  # every entry's score, counted once the batch is written
        columns = [(name, version, scores[i].append, tallies[i])
                   for i, (name, version) in enumerate(self.models.values())]

        def documents():
            for record_id, *entries in zip(ids, *outputs, strict=True):
                results: dict = {}
                for (name, version, add_score, tally), entry in zip(columns, entries, strict=True):
                    results.setdefault(name, {})[version] = entry
                    add_score(entry.get("score"))
                    if is_error(entry):
                        tally.add_error(entry, record_id)
                yield {self.id_field: record_id, "run_id": self.run_id, "_timestamp": timestamp,
                       "_current": 0, "results": results}

        # Streamed unless other sinks want the documents: a batch of live documents costs memory and
        # makes the garbage collector scan them all, slowing every thread.
        kept = list(documents()) if keep else None
        run.write_batch(self.run_id, batch, kept if keep else documents())
        for tally, batch_scores in zip(tallies, scores, strict=True):
            tally.add_scores(batch_scores)
        merged = {"models": {key: tally.as_dict() for key, tally in zip(keys, tallies, strict=True)}}
        if keep:
            merged["documents"] = kept
        return merged


def is_error(entry: Mapping) -> bool:
    """Whether a result entry is a failed model's (it has an `_error_kind`)."""
    return bool(entry.get("_error_kind"))


def count_errors(entries: Iterable[Mapping]) -> int:
    """How many of a model's entries are errors (see `is_error`)."""
    return sum(1 for entry in entries if is_error(entry))


def _entries(path: Path, records: int) -> Iterator[dict]:
    """A model's entries from its output file, which must hold one JSON object per record of the batch."""
    count = 0
    for count, entry in enumerate(read_jsonl(path), 1):
        if count > records:
            raise DataFileError(path, f"more entries than the batch's {records} records")
        if not isinstance(entry, dict):
            raise DataFileError(path, f"entry {count} is not a JSON object")
        yield entry
    if count < records:
        raise DataFileError(path, f"{count} entries for the batch's {records} records")


EXAMPLES = 3  # record ids and error lines kept per model, for the run's summary


class Tally:
    """Per-model counts over result entries: records, errors by kind (with a few examples),
    numeric `score` range and sum."""

    def __init__(self, data: Mapping | None = None):
        data = data or {}
        self.records = data.get("records", 0)
        self.errors: dict[str, int] = dict(data.get("errors", {}))
        self.examples: list = list(data.get("examples", []))
        self.scored = data.get("scored", 0)
        self.score_sum = data.get("score_sum", 0.0)
        self.score_min = data.get("score_min")
        self.score_max = data.get("score_max")

    def add_error(self, entry: Mapping, record_id=None) -> None:
        """Count an entry with an error (`_error_kind`); the first few are kept as examples."""
        kind = entry["_error_kind"]
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"id": record_id, "kind": kind, "error": describe_error(entry)[:300]})

    def add_scores(self, scores: Sequence) -> None:
        """Count records from their entries' `score` values, one per record (None when it has none);
        only those `is_score` accepts are scores."""
        self.records += len(scores)
        numbers = [s for s in scores if is_score(s)]
        if numbers:
            self.scored += len(numbers)
            self.score_sum = sum(numbers, self.score_sum)
            low, high = min(numbers), max(numbers)
            self.score_min = low if self.score_min is None else min(self.score_min, low)
            self.score_max = high if self.score_max is None else max(self.score_max, high)

    def merge(self, other: Tally) -> None:
        self.records += other.records
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        self.examples = (self.examples + other.examples)[:EXAMPLES]
        self.scored += other.scored
        self.score_sum += other.score_sum
        for bound, pick in (("score_min", min), ("score_max", max)):
            values = [v for v in (getattr(self, bound), getattr(other, bound)) if v is not None]
            setattr(self, bound, pick(values) if values else None)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Share of records with an error entry (0 when there are no records)."""
        return self.error_count / self.records if self.records else 0.0

    def as_dict(self) -> dict:
        out = {"records": self.records, "errors": self.errors, "error_rate": round(self.error_rate, 6),
               "examples": self.examples, "scored": self.scored,
               "score_sum": self.score_sum, "score_min": self.score_min, "score_max": self.score_max}
        if self.scored:
            out["score_mean"] = self.score_sum / self.scored
        return out
