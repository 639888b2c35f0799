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

import orjson

from .._gc import full_collections_deferred
from ..core.output import is_score
from ..exceptions import DataFileError, describe_error
from ..files import dumps, read_jsonl, to_native
from ..store.rundir import RunDirectory


@dataclass
class Merger:
    """Writes ``results/batch-N.jsonl`` of one run from its record ids and its models' entries.

    A result document's JSON is made from each entry's JSON as it is, between the bytes the document puts
    around it (`_layout`): the entries are not read into objects and written again. A file engine's output
    lines are the kernel's own encoding (orjson's, as `files.dumps`), so the documents are the bytes
    `files.dumps` would give them."""

    run_root: str
    run_id: str
    id_field: str
    models: dict[str, tuple[str, str]]  # key -> (name, version), in execution order

    def merge(self, batch: int, keep: bool = False, ids: Sequence | None = None,
              tallies: Mapping[str, Mapping] | None = None) -> dict:
        """Write the batch's result documents to the run directory from its models' output files; returns
        ``{"models": per-model counts (see `Tally`)}``, plus ``"documents"`` when `keep` (for the
        run's other sinks, when the merge ran in this process). `ids` are the batch's record ids in
        order, when the caller still has them; otherwise they are read from the batch file. `tallies`
        (key -> `Tally.as_dict()`): the counts a model's kernel made of the entries it wrote, which spare
        the merge from reading them; the others' entries are read, and counted here. An output file that is
        not one JSON object per record of the batch raises `DataFileError` naming it."""
        run = RunDirectory(self.run_root)
        if ids is None:
            ids = [record[self.id_field] for record in read_jsonl(run.batch_path(batch))]
        tallies = tallies or {}
        lines, counted = [], []
        for key in self.models:
            path = run.output_path(key, batch)
            data = path.read_bytes()
            lines.append(_entry_lines(path, data, len(ids)))
            if key in tallies:
                _check_objects(path, data, lines[-1])
                counted.append(Tally(tallies[key]))
            else:
                counted.append(Tally.of(list(_entries(path, lines[-1])), ids))
        return self._write(run, batch, ids, lines, counted, keep)

    def merge_entries(self, batch: int, records: Iterable[Mapping], entries: Mapping[str, Sequence[dict]],
                      keep: bool = False) -> dict:
        """`merge`, from records and their models' entries in memory (key -> entries, batch order)."""
        ids = [record[self.id_field] for record in records]
        lines = [map(dumps, entries[k]) for k in self.models]  # encoded as each document is made, then freed
        return self._write(RunDirectory(self.run_root), batch, ids, lines,
                           [Tally.of(entries[k], ids) for k in self.models], keep)

    @full_collections_deferred()  # see mlsm_nb._gc
    def _write(self, run: RunDirectory, batch: int, ids: Sequence, lines: list[Iterable[bytes]], tallies: list[Tally],
               keep: bool) -> dict:
        order, between = self._layout(int(time.time()))
        entries = [lines[i] for i in order]
        pieces = [b""] * (2 * len(between) - 1)  # between[0], id, between[1], entry, between[2], entry, ...
        pieces[0::2] = between

        def documents() -> Iterator[bytes]:
            for record_id, *record_entries in zip(ids, *entries, strict=True):
                pieces[1] = dumps(record_id)
                pieces[3::2] = record_entries
                yield b"".join(pieces)

        # Streamed unless other sinks want the documents: a batch of them in memory costs memory (and, read into
        # objects, makes the garbage collector scan them all, slowing every thread).
        kept = list(documents()) if keep else None
        run.write_batch_lines(batch, kept if keep else documents())
        merged = {"models": {key: tally.as_dict() for key, tally in zip(self.models, tallies, strict=True)}}
        if keep:
            merged["documents"] = [orjson.loads(document) for document in kept]
        return merged

    def _layout(self, timestamp: int) -> tuple[list[int], list[bytes]]:
        """Where the entries go in a result document's JSON: (the models' indexes in the order their entries
        appear, the bytes before the record id, between it and each entry, and after the last). The document
        is ``{id_field: id, "run_id", "_timestamp", "_current": 0, "results": {name: {version: entry}}}``,
        names and their versions in execution order."""
        names: dict[str, list[tuple[int, str]]] = {}
        for index, (name, version) in enumerate(self.models.values()):
            names.setdefault(name, []).append((index, version))
        between, order = [b"{" + dumps(self.id_field) + b":"], []
        text = b',"run_id":' + dumps(self.run_id) + b',"_timestamp":' + dumps(timestamp) + b',"_current":0,"results":{'
        for n, (name, versions) in enumerate(names.items()):
            text += (b"," if n else b"") + dumps(name) + b":{"
            for v, (index, version) in enumerate(versions):
                between.append(text + (b"," if v else b"") + dumps(version) + b":")
                order.append(index)
                text = b""
            text = b"}"
        between.append(text + b"}}")
        return order, between


def is_error(entry: Mapping) -> bool:
    """Whether a result entry is a failed model's (it has an `_error_kind`)."""
    return bool(entry.get("_error_kind"))


def entry_scores(entries: Iterable[Mapping]) -> list:
    """Each entry's `score` as its JSON holds it (a numpy scalar as the number it is), None when it has none."""
    return [to_native(entry.get("score")) for entry in entries]


def count_errors(entries: Iterable[Mapping]) -> int:
    """How many of a model's entries are errors (see `is_error`)."""
    return sum(1 for entry in entries if is_error(entry))


def _entry_lines(path: Path, data: bytes, records: int) -> list[bytes]:
    """A model's entries as its output file holds them (`data`), a line each: one per record of the batch."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if len(lines) > records:
        raise DataFileError(path, f"more entries than the batch's {records} records")
    if len(lines) < records:
        raise DataFileError(path, f"{len(lines)} entries for the batch's {records} records")
    return lines


def _check_objects(path: Path, data: bytes, lines: Sequence[bytes]) -> None:
    """DataFileError unless every line is braced as a JSON object: the check of entries a kernel wrote and
    counted (`_entries` reads the others, which checks them whole). Counted over the whole file first: JSON
    text holds no raw newline, so when each line starts with "{" and ends with "}", a "}", a newline and a
    "{" join every two of them, and nowhere else."""
    if data.startswith(b"{") and data.endswith(b"}\n") and data.count(b"}\n{") == len(lines) - 1:
        return
    for number, line in enumerate(lines, 1):
        if not (line.startswith(b"{") and line.endswith(b"}")):
            raise DataFileError(path, f"entry {number} is not a JSON object")


def _entries(path: Path, lines: Sequence[bytes]) -> Iterator[dict]:
    """A model's entries, read from the lines of its output file (see `_entry_lines`)."""
    for number, line in enumerate(lines, 1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DataFileError(path, f"line {number} is not JSON ({exc.msg}, column {exc.pos + 1})") from None
        if not isinstance(entry, dict):
            raise DataFileError(path, f"entry {number} is not a JSON object")
        yield entry


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
    def of(cls, entries: Sequence[Mapping], ids: Sequence, scores: Sequence | None = None) -> Tally:
        """The counts of a model's entries of one batch (`ids`: their records' ids, for the error examples;
        `scores`: their `entry_scores`, when the caller has them)."""
        if len(ids) != len(entries):
            raise ValueError(f"{len(entries)} entries for {len(ids)} records")
        tally = cls()
        for entry, record_id in zip(entries, ids, strict=True):
            if is_error(entry):
                tally.add_error(entry, record_id)
        tally.add_scores(entry_scores(entries) if scores is None else scores)
        return tally

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
