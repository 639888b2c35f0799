"""MLSM's names, kept for MLSM's users and its own test suite.

`Model`, `SummaryModel` and `SummaryModelListException` are the core's own
classes; this module adds MLSM's functions: `RunModels` (one record) and
`RunModelsAll` (many records, optionally stored in MongoDB as MLSM stored
them). Scoring lives in `core`, so the scoring core never imports storage.
docs/coming-from-mlsm.md lists every deliberate difference from MLSM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from .core.model import Model, SummaryModel
from .core.records import record_problem
from .core.scoring import iter_models_all, plan_run
from .exceptions import ConfigError, RecordError, SummaryModelListException

__all__ = ["Model", "SummaryModel", "RunModels", "RunModelsAll", "SummaryModelListException"]

log = logging.getLogger(__name__)


def _has_input(model: Model, data: Mapping) -> bool:
    """Whether `data` holds anything for `model`: its nested entry, or one of its fields (flat)."""
    inputs = model.inputs(data)
    if inputs is None:
        return False
    return inputs is not data or not model.specs or any(spec.name in data for spec in model.specs)


def RunModels(models: Sequence[Model], record: dict) -> dict:  # noqa: N802 - MLSM's name
    """MLSM's one-record function: score `record` with `models`, set ``record["results"]``, return it.

    Raises RecordError, where MLSM raised KeyError, when the record has no
    `data` mapping or no input at all for a model (no ``data[name][version]``
    and none of its fields); a missing or bad field is that model's `_error`.
    """
    plan = plan_run(models)
    problem = record_problem(record, id_field=None)
    if problem is not None:
        raise RecordError(problem, record_id=record.get("id") if isinstance(record, Mapping) else None)
    data = record["data"]
    for model in plan:
        if not _has_input(model, data):
            wanted = ", ".join(spec.name for spec in model.specs)
            raise RecordError(f"no input for model {model.name} {model.version}: neither "
                              f"data[{model.name!r}][{model.version!r}] nor its field(s) {wanted}",
                              record_id=record.get("id"))
    results: dict = {}
    for model in plan:
        model.execute(data, results)
    record["results"] = results
    return record


def RunModelsAll(models: Sequence[Model], records, summaryModels: Sequence[SummaryModel] = (),  # noqa: N802, N803
                 verbose: bool = False, db=None, collection: str | None = None,
                 dbIdentifier: str | None = None) -> list[dict]:  # noqa: N803 - MLSM's keyword names
    """MLSM's entry point: score every record with `models`, then `summaryModels`; return them in a list.

    Every record comes back, in order, with ``record["results"]``; without a
    database, records need no id. With `db` (a pymongo Database), `collection`
    and `dbIdentifier` (the id field) each record is also stored as MLSM
    stored it: one document per record with its `_timestamp`; the newest
    document of an id has ``_current: 0`` and older ones count up, so an id
    given twice is stored twice, the later one live. Ids keep their type.
    A record that cannot be scored (not a mapping, no `data` mapping, no id
    when storing) raises RecordError before anything is stored.
    """
    storing = not (db is None and collection is None and dbIdentifier is None)
    if storing and (db is None or collection is None or dbIdentifier is None):
        raise ConfigError("RunModelsAll stores results only when db, collection and dbIdentifier are all given")
    scored, stamps = [], []
    for record in iter_models_all(models, records, summaryModels, id_field=dbIdentifier if storing else None,
                                  progress=verbose, on_bad_record="raise"):
        scored.append(record)
        stamps.append(int(time.time()))
    if storing:
        _store(db, collection, dbIdentifier, plan_run(models, summaryModels), scored, stamps)
    return scored


def _store(db, collection: str, id_field: str, models: Sequence[Model], records: Sequence[dict],
           stamps: Sequence[int]) -> None:
    """Store the call's scored records as one run through the store's `ResultSink` interface.

    Run order makes MLSM's meaning hold: a call is newer than every call
    before it, and within it a later record is newer than an earlier one, so a
    repeated id is stored each time with the later one live. What MongoDB
    cannot hold as scored is stored as that record's error and logged.
    """
    from .store.base import store_as_run
    from .store.mongo import MongoStore

    sink = MongoStore.from_database(db, results_collection=collection, id_field=id_field)
    documents = ({id_field: record[id_field], "_timestamp": stamp, "results": record["results"]}
                 for record, stamp in zip(records, stamps, strict=True))
    entries = [{"name": m.name, "version": m.version, "status": m.status, "kind": m.kind} for m in models]
    _, problems = store_as_run(sink, documents, models=entries, source="RunModelsAll")
    for problem in problems:
        log.warning("RunModelsAll: %s", problem)
