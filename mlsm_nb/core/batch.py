"""Score one batch of records with one model: the core both run engines share.

The papermill engine calls this inside each executed notebook's runner cell;
the in-process engine calls it with extracted models. Same code, same results.
Every entry is checked to be a valid output (`core.output.encoded_entry`) here,
where a batch's results are made to be written, and its JSON kept for the file
engines to write; `run_models_all` hands back the Python objects `score` returned.
A model with `score_frame` scores its valid rows in one pandas call (falling
back to `score` per record if that raises or returns the wrong shape).

With a per-record time `limit` (see `core.timelimit`), a record whose score
runs over it is stopped and gets a `timeout` entry, and the batch goes on; a
frame's limit is the records' limit times its rows, and a frame over it is
scored again record by record, to find the slow ones. Each record is timed:
the outcome names the slowest.

A batch is scored with full garbage collections deferred (see `mlsm_nb._gc`).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._gc import full_collections_deferred
from .model import Model
from .output import encoded_entry, error_entry, stored_entry
from .timelimit import FRAME, POSITION, START, Board, RecordTimeout, timeout_entry, watching

SLOWEST = 5  # records an outcome names as the slowest


@dataclass
class BatchOutcome:
    """Entries of one (model, batch), in batch order, and how they were computed."""

    model: str
    version: str
    entries: list[dict]
    method: str = "score"
    notes: list[str] = field(default_factory=list)
    slowest: list[tuple[int, float]] = field(default_factory=list)  # (position, seconds), slowest first
    json_lines: bytes | None = None  # the entries' JSON, a line each, made as they were checked (None: not kept)

    @classmethod
    def checked(cls, model: Model, entries: Sequence[dict], method: str, notes: list[str],
                slowest: list[tuple[int, float]] | None = None, keep_json: bool = False) -> BatchOutcome:
        """The outcome of `entries` as a run stores them (`core.output.encoded_entry`), with their JSON Lines
        if `keep_json`. Joined as they are made: each bytes orjson returns holds about 4 KiB until freed."""
        stored, lines = [], bytearray() if keep_json else None
        for entry in entries:
            entry, line = encoded_entry(entry)
            stored.append(entry)
            if lines is not None:
                lines += line
                lines += b"\n"
        return cls(model.name, model.version, stored, method, notes, slowest or [],
                   None if lines is None else bytes(lines))

    def error_counts(self) -> Counter:
        """Errors by kind."""
        return Counter(e["_error_kind"] for e in self.entries if "_error_kind" in e)


def by_id(timed: Sequence[tuple[int, float]], records: Sequence[Mapping], id_field: str) -> list[list]:
    """[[record id, seconds], ...] from [(position, seconds), ...] (e.g. `BatchOutcome.slowest`); a whole
    frame's (position FRAME) is left out."""
    return [[records[position].get(id_field), seconds] for position, seconds in timed if position >= 0]


def dependency_results(model: Model, dependencies: Mapping[tuple[str, str], Sequence[dict]], size: int) -> list[dict]:
    """Per-record `results` dicts built from the dependency models' entries."""
    per_record: list[dict] = [{} for _ in range(size)]
    for (name, version), entries in dependencies.items():
        for results, entry in zip(per_record, entries, strict=False):  # an output cut short leaves the rest without it
            results.setdefault(name, {})[version] = entry
    return per_record


def input_frame(model: Model, rows: Sequence[Mapping], index: Sequence[int] | None = None):
    """The DataFrame `score_frame` gets for valid inputs `rows`: one column per field, in field order.

    A float field's column is float64 whatever its rows hold (an int, as JSON clients send 100 for 100.0,
    would otherwise make it int64 when every row of the batch has one), and so is an int field's that may
    hold None or be left out (None is NaN): a row's values never depend on the other rows of its batch,
    so a record scores the same in any batch (a run's, or served requests batched together).
    """
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=[s.name for s in model.specs], index=index)
    for spec in model.specs:
        numeric = spec.type == "float" or (spec.type == "int" and (spec.nullable or not spec.required))
        if numeric and frame[spec.name].dtype != "float64":
            frame[spec.name] = frame[spec.name].astype("float64")
    return frame


def _frame_entries(model: Model, datas: Sequence[Mapping], notes: list[str], limit: float | None,
                   board: Board) -> list[dict] | None:
    import pandas as pd

    entries: list = [None] * len(datas)
    rows, positions = [], []
    for i, data in enumerate(datas):
        inputs = model.inputs(data)
        if not isinstance(inputs, Mapping):
            entries[i] = model._entry(data, {})  # the per-record path words the error
            continue
        problem = model.check_inputs(inputs)
        if problem is not None:
            entries[i] = error_entry(*problem)
        else:
            rows.append(inputs)
            positions.append(i)
    if rows:
        frame = input_frame(model, rows, positions)
        frame_limit = None if limit is None else limit * len(rows)
        try:
            out = _score_frame(model, frame, frame_limit, board)
            if out is None:
                notes.append(f"score_frame ran longer than its limit ({len(rows)} records x {limit:g} s); "
                             "scored record by record")
                return None
            if not isinstance(out, pd.DataFrame) or not out.index.equals(frame.index):
                raise TypeError("score_frame must return a DataFrame with the input's index")
        except Exception as exc:  # noqa: BLE001 - fall back to score, record by record
            notes.append(f"score_frame failed ({type(exc).__name__}: {exc}); scored record by record")
            return None
        for i, values in zip(positions, out.to_dict("records"), strict=True):
            values["_status"] = model.status
            entries[i] = values
    return entries


def _score_frame(model: Model, frame, limit: float | None, board: Board):
    """What `score_frame` returns for `frame`, or None when it ran over `limit` (seconds)."""
    cells = board.cells
    with watching(board, limit) as watch:
        try:
            cells[POSITION] = FRAME
            cells[START] = started = time.monotonic()
            out = model.score_frame(frame)
            seconds = time.monotonic() - started
            watch.leave()
        except RecordTimeout:
            watch.leave()
            return None
    return None if limit is not None and seconds > limit else out


class _Slowest:
    """The slowest records of a loop, kept in a small heap; `floor` is the time a record must beat."""

    def __init__(self, size: int = SLOWEST):
        self.heap: list[tuple[float, int]] = []
        self.size = size
        self.floor = -1.0

    def add(self, position: int, seconds: float) -> None:
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, (seconds, position))
        elif seconds > self.heap[0][0]:
            heapq.heapreplace(self.heap, (seconds, position))
        if len(self.heap) == self.size:
            self.floor = self.heap[0][0]

    def ranked(self) -> list[tuple[int, float]]:
        return [(position, round(seconds, 6)) for seconds, position in sorted(self.heap, reverse=True)]


def _score_records(model: Model, datas: Sequence, results: list[dict], limit: float | None, board: Board,
                   stuck: Mapping[int, float]) -> list[tuple[int, float]]:
    """Score each record into its `results` dict, each timed and (with a `limit`) interrupted when it runs
    over; returns the slowest (position, seconds). Positions in `stuck` get their timeout unscored."""
    execute, name, version, cells = model.execute, model.name, model.version, board.cells
    over = math.inf if limit is None else limit
    slow = _Slowest()
    threshold = min(slow.floor, over)
    marks, size, position, clock = sorted(p for p in stuck if 0 <= p < len(datas)), len(datas), 0, time.monotonic
    with watching(board, limit) as watch:
        started = clock()
        while True:
            first = position
            stop = next((p for p in marks if p >= first), size)
            try:
                for position in range(first, stop):
                    cells[START] = started
                    cells[POSITION] = position
                    execute(datas[position], results[position])
                    ended = clock()
                    if ended - started > threshold:  # rare: among the slowest so far, or over the limit
                        seconds = ended - started
                        slow.add(position, seconds)
                        if seconds > over:
                            results[position][name][version] = timeout_entry(limit)
                        threshold = min(slow.floor, over)
                    started = ended
                position = stop
                if stop == size:
                    watch.leave()
                    break
                seconds = stuck[position]  # found stuck before: not scored again
                entry = timeout_entry(limit, stuck=True)
            except RecordTimeout:
                if position >= size:  # meant for the last record, which was over and is marked
                    watch.leave()
                    break
                seconds = clock() - started
                if seconds < over and position not in stuck:
                    continue  # meant for the record before, which ended meanwhile: score this one again
                entry = timeout_entry(limit, stuck=position in stuck)
            results[position].setdefault(name, {})[version] = entry
            slow.add(position, seconds)
            threshold = min(slow.floor, over)
            position += 1
            started = clock()
    return slow.ranked()


def score_record(model: Model, data, results: Mapping | None = None, limit: float | None = None) -> dict:
    """One record's entry as a batch scores it (with `score`, within `limit` seconds: a `timeout` entry
    past it), checked as a run checks it (`core.output.stored_entry`). `results`: the results of the models
    a summary needs."""
    result = {name: dict(versions) for name, versions in (results or {}).items()}
    execute_within(model, [data], [result], limit, Board())
    return stored_entry(result[model.name][model.version])


def execute_within(model: Model, datas: Sequence, results: list[dict], limit: float | None, board: Board) -> None:
    """`model.execute` of each of `datas` into its `results` dict, each stopped past `limit` seconds (see
    `core.timelimit`; one timer for them all): a record's entry is then a `timeout` one. `board`: where the
    record being scored is written (one per caller)."""
    _score_records(model, datas, results, limit, board, {})


@full_collections_deferred()
def score_batch(model: Model, records: Sequence[Mapping],
                dependencies: Mapping[tuple[str, str], Sequence[dict]] | None = None, *,
                limit: float | None = None, board: Board | None = None,
                stuck: Mapping[int, float] | None = None, keep_json: bool = False) -> BatchOutcome:
    """Score `records` (dicts with `data`) with `model`; never raises for a record.

    `dependencies` maps (name, version) to the entries that model gave this
    batch, in the same order (summary models read them as `results`).
    `limit`: seconds one record may take (None: no limit). `board`: where the
    loop says which record it scores (a runner that watches for records stuck
    where no interrupt reaches passes one it reads; its SLOT cell set); `stuck`:
    positions found stuck by an earlier attempt (FRAME: the frame), with their
    seconds, which get their `timeout` entry without being scored again. `keep_json`: keep each entry's
    JSON, made as it was checked, for a file engine to write (`BatchOutcome.json_lines`).
    """
    datas = [r.get("data") for r in records]
    notes: list[str] = []
    board = board if board is not None else Board()
    stuck = stuck or {}
    if model.score_frame is not None and not dependencies:
        if FRAME in stuck:
            notes.append(f"score_frame was stuck for {stuck[FRAME]:.3g} s in an earlier attempt; scored record "
                         "by record")
        else:
            entries = _frame_entries(model, datas, notes, limit, board)
            if entries is not None:
                return BatchOutcome.checked(model, entries, "score_frame", notes, keep_json=keep_json)
    results = dependency_results(model, dependencies or {}, len(records))
    slowest = _score_records(model, datas, results, limit, board, stuck)
    entries = [result[model.name][model.version] for result in results]
    return BatchOutcome.checked(model, entries, "score", notes, slowest, keep_json)
