"""Score one batch of records with one model: the core both run engines share.

The papermill engine calls this inside each executed notebook's runner cell;
the in-process engine calls it with extracted models. Same code, same results.
Every entry is checked to be a valid output (`core.output.stored_entry`) here,
where a batch's results are made to be written; `run_models_all` hands back
the Python objects `score` returned.
A model with `score_frame` scores its valid rows in one pandas call (falling
back to `score` per record if that raises or returns the wrong shape).

A batch is scored with full garbage collections deferred (see `mlsm_nb._gc`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._gc import full_collections_deferred
from .model import Model
from .output import error_entry, stored_entry


@dataclass
class BatchOutcome:
    """Entries of one (model, batch), in batch order, and how they were computed."""

    model: str
    version: str
    entries: list[dict]
    method: str = "score"
    notes: list[str] = field(default_factory=list)

    def error_counts(self) -> Counter:
        """Errors by kind."""
        return Counter(e["_error_kind"] for e in self.entries if "_error_kind" in e)


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


def _frame_entries(model: Model, datas: Sequence[Mapping], notes: list[str]) -> list[dict] | None:
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
        try:
            out = model.score_frame(frame)
            if not isinstance(out, pd.DataFrame) or not out.index.equals(frame.index):
                raise TypeError("score_frame must return a DataFrame with the input's index")
        except Exception as exc:  # noqa: BLE001 - fall back to score, record by record
            notes.append(f"score_frame failed ({type(exc).__name__}: {exc}); scored record by record")
            return None
        for i, values in zip(positions, out.to_dict("records"), strict=True):
            values["_status"] = model.status
            entries[i] = values
    return entries


@full_collections_deferred()
def score_batch(model: Model, records: Sequence[Mapping],
                dependencies: Mapping[tuple[str, str], Sequence[dict]] | None = None) -> BatchOutcome:
    """Score `records` (dicts with `data`) with `model`; never raises for a record.

    `dependencies` maps (name, version) to the entries that model gave this
    batch, in the same order (summary models read them as `results`).
    """
    datas = [r.get("data") for r in records]
    notes: list[str] = []
    if model.score_frame is not None and not dependencies:
        entries = _frame_entries(model, datas, notes)
        if entries is not None:
            return BatchOutcome(model.name, model.version, list(map(stored_entry, entries)), "score_frame", notes)
    results = dependency_results(model, dependencies or {}, len(records))
    entries = []
    for data, result in zip(datas, results, strict=True):
        model.execute(data, result)
        entries.append(result[model.name][model.version])
    return BatchOutcome(model.name, model.version, list(map(stored_entry, entries)), "score", notes)
