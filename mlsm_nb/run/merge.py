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

    def merge(self, batch: int, keep: bool = False) -> dict:
        """Write the batch's result documents to the run directory from its batch and output files; returns
        ``{"models": per-model counts (see `Tally`)}``, plus ``"documents"`` when `keep` (for the
        run's other sinks, when the merge ran in this process)."""
        run = RunDirectory(self.run_root)
        outputs = [read_jsonl(run.output_path(k, batch)) for k in self.models]
        return self._write(run, batch, read_jsonl(run.batch_path(batch)), outputs, keep)

    def merge_entries(self, batch: int, records: Iterable[Mapping], entries: Mapping[str, Sequence[dict]],
                      keep: bool = False) -> dict:
        """`merge`, from records and their models' entries in memory (key -> entries, batch order)."""
        return self._write(RunDirectory(self.run_root), batch, records, [entries[k] for k in self.models], keep)

    @full_collections_deferred()  # see mlsm_nb._gc
    def _write(self, run: RunDirectory, batch: int, records: Iterable[Mapping], outputs: list[Iterable[dict]],
               keep: bool) -> dict:
        keys = list(self.models)
        tallies = {key: Tally() for key in keys}
        timestamp = int(time.time())

        def documents():
            for record, *entries in zip(records, *outputs):
                results: dict = {}
                for key, entry in zip(keys, entries):
                    name, version = self.models[key]
                    results.setdefault(name, {})[version] = entry
                    tallies[key].add(entry, record[self.id_field])
                yield {self.id_field: record[self.id_field], "run_id": self.run_id, "_timestamp": timestamp,
                       "_current": 0, "results": results}

        # Streamed unless other sinks want the documents: a batch of live documents costs memory and
        # makes the garbage collector scan them all, slowing every thread.
        kept = list(documents()) if keep else None
        run.write_batch(self.run_id, batch, kept if keep else documents())
        merged = {"models": {key: tally.as_dict() for key, tally in tallies.items()}}
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

    def add(self, entry: Mapping, record_id=None) -> None:
        self.records += 1
        kind = entry.get("_error_kind")
        if kind:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.examples) < EXAMPLES:
                self.examples.append({"id": record_id, "kind": kind, "error": describe_error(entry)[:300]})
        score = entry.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool) and score == score:
            self.scored += 1
            self.score_sum += score
            self.score_min = score if self.score_min is None else min(self.score_min, score)
            self.score_max = score if self.score_max is None else max(self.score_max, score)

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
