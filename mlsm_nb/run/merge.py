"""Merge a batch's model outputs into result documents, and count what they hold.

`Merger` holds plain data only, so the merge of a batch runs where its
executions ran (a thread here, or a Dask worker) and the runner only collects
the counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .._gc import full_collections_deferred
from ..exceptions import describe_error
from ..files import read_jsonl
from ..store.rundir import RunDirectory


@dataclass
class Merger:
    """Writes ``results/batch-N.jsonl`` of one run from the batch and its models' outputs."""

    run_root: str
    run_id: str
    id_field: str
    models: dict[str, tuple[str, str]]  # key -> (name, version), in execution order

    def merge(self, batch: int, keep: bool = False, ids: Sequence | None = None) -> dict:
        """Write the batch's result documents to the run directory from its models' output files; returns
        ``{"models": per-model counts (see `Tally`)}``, plus ``"documents"`` when `keep` (for the
        run's other sinks, when the merge ran in this process). `ids` are the batch's record ids in
        order, when the caller still has them; otherwise they are read from the batch file."""
        run = RunDirectory(self.run_root)
        if ids is None:
            ids = (record[self.id_field] for record in read_jsonl(run.batch_path(batch)))
        outputs = [read_jsonl(run.output_path(k, batch)) for k in self.models]
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
        # Per model: every entry's score, and the errors with their record ids; tallied once the batch is written.
        scores: list[list] = [[] for _ in keys]
        failed: list[list[tuple]] = [[] for _ in keys]
        columns = [(name, version, scores[i].append, failed[i].append)
                   for i, (name, version) in enumerate(self.models.values())]

        def documents():
            for record_id, *entries in zip(ids, *outputs):
                results: dict = {}
                for (name, version, add_score, add_failure), entry in zip(columns, entries):
                    results.setdefault(name, {})[version] = entry
                    add_score(entry.get("score"))
                    if entry.get("_error_kind"):
                        add_failure((record_id, entry))
                yield {self.id_field: record_id, "run_id": self.run_id, "_timestamp": timestamp,
                       "_current": 0, "results": results}

        # Streamed unless other sinks want the documents: a batch of live documents costs memory and
        # makes the garbage collector scan them all, slowing every thread.
        kept = list(documents()) if keep else None
        run.write_batch(self.run_id, batch, kept if keep else documents())
        merged = {"models": {key: Tally.of(scores[i], failed[i]).as_dict() for i, key in enumerate(keys)}}
        if keep:
            merged["documents"] = kept
        return merged


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

    @classmethod
    def of(cls, scores: Sequence, failed: Iterable[tuple]) -> "Tally":
        """The tally of one model's entries in a batch: every entry's `score` value (None when it has
        none; one per record) and the (record id, entry) of those with an error, in batch order."""
        tally = cls({"records": len(scores)})
        for record_id, entry in failed:
            kind = entry["_error_kind"]
            tally.errors[kind] = tally.errors.get(kind, 0) + 1
            if len(tally.examples) < EXAMPLES:
                tally.examples.append({"id": record_id, "kind": kind, "error": describe_error(entry)[:300]})
        numbers = [s for s in scores if isinstance(s, (int, float)) and not isinstance(s, bool) and s == s]
        if numbers:
            tally.scored, tally.score_sum = len(numbers), sum(numbers, 0.0)
            tally.score_min, tally.score_max = min(numbers), max(numbers)
        return tally

    def merge(self, other: "Tally") -> None:
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
