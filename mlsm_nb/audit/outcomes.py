"""`mlsm-nb outcomes`: attach observed outcomes (did the lead convert?) to scored ids.

An outcome is ``{<id field>: id, "label": column name, "value": 0 or 1,
"observed_at": ISO time, "source": file name}``. Outcomes never touch result
documents: a run directory keeps them in ``outcomes.jsonl`` beside its
results, MongoDB in the `outcomes` collection. A file is attached whole or not
at all: every row is checked (known id, 0/1 label, no duplicate) first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..clock import utc_now
from ..core.labels import label_value
from ..exceptions import MlsmError
from ..files import read_jsonl, to_native, write_jsonl
from ..store.rundir import RunDirectory
from .database import AuditDatabase

OUTCOMES_FILE = "outcomes.jsonl"
_SHOWN = 3  # ids named in an error message


class OutcomeError(MlsmError):
    """An outcome that cannot be attached: for a file, nothing was stored.

    `record_id` and `field` name what was wrong when it is one record's
    (None otherwise), so that `serve`'s POST /outcomes can refuse that record alone.
    """

    def __init__(self, message: str, record_id: Any = None, field: str | None = None):
        super().__init__(message)
        self.record_id = record_id
        self.field = field


def _rows(path: Path, label: str) -> Iterator[tuple[int, dict]]:
    from ..run.records import check_records_file

    kind = check_records_file(path)
    if kind == "jsonl":
        import orjson

        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except ValueError as exc:
                    raise OutcomeError(f"{path}: line {number}: not valid JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise OutcomeError(f"{path}: line {number}: an outcome must be a JSON object")
                yield number, row
        return
    import pandas as pd

    # a CSV label is read as its text, so that "1.0" is not taken for 1 (see core.labels)
    frame = pd.read_csv(path, dtype={label: str}) if kind == "csv" else pd.read_parquet(path)
    for number, row in enumerate(frame.to_dict("records"), 2):  # line 1 is the header
        yield number, {k: (None if v != v else to_native(v)) for k, v in row.items()}


def _observed(value: Any, where: str, record_id: Any, column: str) -> str:
    if value is None:
        return utc_now()
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise OutcomeError(f"{where}: {column} {value!r} is not an ISO date or time", record_id, column) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()  # naive means UTC


def check_outcome(row: Any, label: str, id_field: str = "id", observed_column: str = "observed_at", *,
                  where: str, source: str) -> dict:
    """The outcome document of one record (see the module docstring): its id, its label as 0/1
    (`core.labels`), when it was observed (default: now). `where` starts each message (a file's line,
    a request's record). Raises OutcomeError naming the id and the field for a record that is not an
    object, has no id, no label column, a label that is not 0/1 or true/false, or a bad observed time.
    Duplicates and ids never scored are the caller's to check: they depend on what else arrives.
    """
    if not isinstance(row, dict):
        raise OutcomeError(f"{where}: an outcome must be a JSON object, got {type(row).__name__}")
    record_id = row.get(id_field)
    if not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
        raise OutcomeError(f"{where}: no id in column {id_field!r}", None, id_field)
    where += f", id {record_id!r}"
    if label not in row:
        raise OutcomeError(f"{where}: no label column {label!r} (columns: {', '.join(map(str, row))})",
                           record_id, label)
    value = label_value(row[label])
    if value is None:
        shown = "empty" if row[label] is None else repr(row[label])
        raise OutcomeError(f"{where}: label {label} is {shown}; labels must be 0/1 or true/false", record_id, label)
    return {id_field: record_id, "label": label, "value": value,
            "observed_at": _observed(row.get(observed_column), where, record_id, observed_column), "source": source}


def read_outcomes(path: str | Path, label: str, id_field: str = "id",
                  observed_column: str = "observed_at") -> list[dict]:
    """The outcome documents of a file (JSON Lines, CSV or Parquet), every row checked.

    Raises OutcomeError naming the file, line, id and column for a missing id,
    a label that is not 0/1 or true/false, a bad `observed_column` value, or an
    id listed twice.
    """
    path = Path(path)
    outcomes, seen = [], {}
    for number, row in _rows(path, label):
        try:
            outcome = check_outcome(row, label, id_field, observed_column, where=f"{path}: line {number}",
                                    source=path.name)
        except OutcomeError as exc:
            if exc.field == label and label not in row:  # the file's columns, not one record, are wrong
                raise OutcomeError(f"{path}: no label column {label!r} (columns: {', '.join(map(str, row))})") from None
            raise
        record_id = outcome[id_field]
        key = (type(record_id), record_id)
        if key in seen:
            raise OutcomeError(f"{path}: line {number}, id {record_id!r}: duplicate outcome "
                               f"(line {seen[key]} has the same id)", record_id, id_field)
        seen[key] = number
        outcomes.append(outcome)
    if not outcomes:
        raise OutcomeError(f"{path}: holds no outcomes")
    return outcomes


def _named(ids: list) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN])
    return shown + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def _refuse_unknown_and_duplicates(path: Path, outcomes: list[dict], id_field: str, scored: set,
                                   existing: list[dict], where: str) -> None:
    unknown = [o[id_field] for o in outcomes if (type(o[id_field]), o[id_field]) not in scored]
    if unknown:
        raise OutcomeError(f"{path}: {len(unknown)} id(s) were never scored in {where}: {_named(unknown)}; "
                           "nothing attached")
    label = outcomes[0]["label"]
    already = [o[id_field] for o in existing if o.get("label") == label]
    if already:
        raise OutcomeError(f"{path}: {len(already)} id(s) already have a {label} outcome in {where}: "
                           f"{_named(already)}; outcomes are recorded once, nothing attached")


def _typed(ids) -> set:
    return {(type(i), i) for i in ids}


def attach_outcomes(path: str | Path, label: str, *, run: str | Path | None = None,
                    database: AuditDatabase | None = None, observed_column: str = "observed_at") -> dict:
    """Attach the outcomes in `path` to the ids scored in a run directory or in MongoDB.

    Returns ``{"attached": n, "positives": k, "where": ...}``. All or nothing:
    raises OutcomeError (nothing stored) for a bad row, an id never scored
    there, or an id that already has an outcome for this label.
    """
    path = Path(path)
    if (run is None) == (database is None):
        raise OutcomeError("say where the scores are: --run RUN_DIR or --mongo-uri URI (one of them)")
    if database is not None:
        outcomes = read_outcomes(path, label, database.id_field, observed_column)
        ids = [o[database.id_field] for o in outcomes]
        where = f"MongoDB ({database.store.db.name}.{database.results.name})"
        _refuse_unknown_and_duplicates(path, outcomes, database.id_field, _typed(database.scored_ids(ids)),
                                       database.outcomes_for(ids), where)
        database.insert_outcomes(outcomes, import_id=uuid.uuid4().hex)
        where = f"MongoDB ({database.store.db.name}.{database.outcomes.name})"
    else:
        rundir = RunDirectory(run)
        manifest = rundir.read_manifest()
        id_field = manifest.id_field
        outcomes = read_outcomes(path, label, id_field, observed_column)
        target = rundir.root / OUTCOMES_FILE
        existing = list(read_jsonl(target)) if target.is_file() else []
        wanted = _typed(o[id_field] for o in outcomes)
        stored = _typed(d[id_field] for d in rundir.results())
        _refuse_unknown_and_duplicates(path, outcomes, id_field, stored,
                                       [o for o in existing if (type(o[id_field]), o[id_field]) in wanted],
                                       f"run {manifest.run_id}")
        write_jsonl(target, existing + outcomes)  # atomic: readers see the old file or the whole new one
        where = str(target)
    return {"attached": len(outcomes), "positives": sum(o["value"] for o in outcomes), "where": where}


def run_outcomes(run: str | Path) -> list[dict]:
    """The outcomes attached to a run directory (empty when none)."""
    target = Path(run) / OUTCOMES_FILE
    return list(read_jsonl(target)) if target.is_file() else []


def outcome_models(run_dir: str | Path | None = None, database: AuditDatabase | None = None,
                   label: str | None = None) -> dict:
    """Model versions paired with outcomes (`audit.metrics.join_outcomes`), by name@version: from MongoDB when
    given (every stored run, the newest score per id), else from the run directory and its `outcomes.jsonl`.
    `label` picks one outcome label (default: every outcome)."""
    from ..core.model import model_key
    from .metrics import join_outcomes

    kinds = {}
    if run_dir is not None:
        manifest = RunDirectory(run_dir).read_manifest()
        kinds = {model_key(n.name, n.version): n.kind or "model" for n in manifest.notebooks}
    if database is None:
        outcomes = run_outcomes(run_dir)
        return join_outcomes(RunDirectory(run_dir).results(), outcomes, manifest.id_field, kinds, label) \
            if outcomes else {}
    outcomes = database.all_outcomes(label)
    documents = database.results_for([o[database.id_field] for o in outcomes]) if outcomes else []
    return join_outcomes(documents, outcomes, database.id_field, kinds, label)
