"""MLSM's names, kept for MLSM's users and its own test suite.

Scoring lives in `core`; this module adds MLSM's spelling and its optional
MongoDB storing, so the scoring core never imports storage.
"""

from __future__ import annotations

import time

from .core.engine import run_models_all
from .exceptions import ConfigError


def RunModelsAll(models, records, summaryModels=(), verbose=False, db=None, collection=None,  # noqa: N802
                 dbIdentifier=None):  # noqa: N803 - MLSM's spelling, kept as an alias
    """MLSM's entry point: `run_models_all` with MLSM's keyword names.

    With `db` (a pymongo Database) and `collection`, results are also stored
    with MLSM's `_current`/`_timestamp` meaning, keyed by `dbIdentifier`.
    """
    id_field = dbIdentifier or "id"
    if db is None and collection is None:
        return run_models_all(models, records, summaryModels, id_field=id_field, progress=verbose)
    if db is None or collection is None or dbIdentifier is None:
        raise ConfigError("RunModelsAll stores results only when db, collection and dbIdentifier are all given")
    from .store.mongo import MongoStore
    from .store.rundir import new_run_id

    store = MongoStore.from_database(db, results_collection=collection, id_field=id_field)
    scored = run_models_all(models, records, summaryModels, id_field=id_field, progress=verbose)
    run_id, timestamp = new_run_id(), int(time.time())
    store.write_results({id_field: r[id_field], "run_id": run_id, "_timestamp": timestamp, "_current": 0,
                         "results": r["results"]} for r in scored)
    return scored
