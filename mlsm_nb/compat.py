"""MLSM's names, kept for MLSM's users and its own test suite.

`Model`, `SummaryModel` and `SummaryModelListException` are the core's own
classes; this module adds MLSM's functions: `RunModels` (one record) and
`RunModelsAll` (many records, optionally stored in MongoDB as MLSM stored
them). Scoring lives in `core`, so the scoring core never imports storage.
docs/coming-from-mlsm.md lists every deliberate difference from MLSM.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from .core.engine import iter_models_all, plan_run
from .core.model import Model, SummaryModel
from .exceptions import ConfigError, RecordError, SummaryModelListException

__all__ = ["Model", "SummaryModel", "RunModels", "RunModelsAll", "SummaryModelListException"]


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
    data = record.get("data")
    if not isinstance(data, Mapping):
        raise RecordError(f"'data' must be a mapping, got {type(data).__name__}", record_id=record.get("id"))
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
        _store(db, collection, dbIdentifier, scored, stamps)
    return scored


def _store(db, collection: str, id_field: str, records: Sequence[dict], stamps: Sequence[int]) -> None:
    """Store scored records with MLSM's `_current` meaning: each write is one run, in record order.

    The k-th write holds the k-th occurrence of each id, so a repeated id is
    stored once per occurrence with the later one live, and no write holds
    two ids that print alike (``1`` and ``"1"``), whatever keys the store derives.
    """
    from .store.mongo import MongoStore
    from .store.rundir import new_run_id

    store = MongoStore.from_database(db, results_collection=collection, id_field=id_field)
    for generation in _generations(records, id_field):
        run_id = new_run_id()
        store.write_results({id_field: records[i][id_field], "run_id": run_id, "_timestamp": stamps[i],
                             "_current": 0, "results": records[i]["results"]} for i in generation)


def _generations(records: Sequence[Mapping], id_field: str) -> list[list[int]]:
    """Positions of `records` grouped by occurrence: the k-th list holds each id's k-th appearance."""
    seen: dict[str, int] = {}
    generations: list[list[int]] = []
    for position, record in enumerate(records):
        occurrence = seen.get(text := str(record[id_field]), 0)
        seen[text] = occurrence + 1
        if occurrence == len(generations):
            generations.append([])
        generations[occurrence].append(position)
    return generations
