"""Every MongoDB read (and the few writes) of the audit commands, in one place, but the model registry's.

Collections are the ones `MongoStore` names (results, runs) plus `outcomes`
(observed labels per id). The model registry and its approvals are read and
written through the store's `store.registry` (`store/registry.py`), the one
place that knows them. Each method is one query, so a caller can count what it
costs; the indexes they use are created by `ensure_indexes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..store.base import StoreError
from ..store.mongo import DUPLICATE_KEY, driver_message


class AuditDatabase:
    """Audit queries over a `MongoStore`'s database (results, runs, outcomes); its registry: `store.registry`."""

    def __init__(self, store):
        self.store = store
        self.id_field = store.id_field
        self.results = store.results
        self.runs = store.runs
        self.outcomes = store.db["outcomes"]
        self.monitor = store.db["monitor"]

    def ensure_indexes(self) -> None:
        """(id, _current) on results, so a trace reads an id's whole history through an index (the store's
        own index leads with `_current`, for live reads); (id, label) on outcomes, unique."""
        self.results.create_index([(self.id_field, 1), ("_current", 1)], name="id_current")
        self.outcomes.create_index([(self.id_field, 1), ("label", 1)], name="id_label", unique=True)

    # -- trace ------------------------------------------------------------------

    def results_for(self, ids: Sequence) -> list[dict]:
        """Every stored result document of these ids, live first (`_current` ascending)."""
        return list(self.results.find({self.id_field: {"$in": list(ids)}}).sort("_current", 1))

    def runs_by_id(self, run_ids: Iterable[str]) -> dict[str, dict]:
        """The run documents (manifests) of these run ids."""
        return {doc["_id"]: doc for doc in self.runs.find({"_id": {"$in": list(run_ids)}})}

    def notebooks_of_runs(self, run_ids: Iterable[str]) -> list[dict]:
        """`_id`, `started_at`, `branch` and `notebooks` (what ran, from where) of these runs, oldest first."""
        found = self.runs.find({"_id": {"$in": list(run_ids)}}, {"started_at": 1, "branch": 1, "notebooks": 1})
        return sorted(found, key=lambda run: (str(run.get("started_at")), run["_id"]))

    def outcomes_for(self, ids: Sequence) -> list[dict]:
        """Observed outcomes recorded for these ids."""
        return list(self.outcomes.find({self.id_field: {"$in": list(ids)}}, {"_id": 0}))

    # -- outcomes ---------------------------------------------------------------

    def scored_ids(self, ids: Sequence) -> set:
        """Which of these ids have at least one stored result."""
        return set(self.results.distinct(self.id_field, {self.id_field: {"$in": list(ids)}}))

    def insert_outcomes(self, documents: list[dict], import_id: str) -> None:
        """Insert outcome documents all or nothing: on any failure the ones of this import are removed."""
        from pymongo.errors import PyMongoError

        self.ensure_indexes()
        try:
            self.outcomes.insert_many([{**d, "import_id": import_id} for d in documents], ordered=True)
        except PyMongoError as exc:
            self.outcomes.delete_many({"import_id": import_id})
            raise StoreError(f"MongoDB refused the outcomes (none stored): {driver_message(exc)}") from None

    def add_outcomes(self, documents: list[dict]) -> int:
        """Insert outcome documents one by one as far as they go (`serve`'s POST /outcomes, retried until
        stored): one whose (id, label) is already stored is left out, the first kept, so that storing the
        same documents again after a failure part-way through stores each once. Returns how many were left
        out as already stored; a failure of any other kind raises (PyMongoError)."""
        from pymongo.errors import BulkWriteError

        try:
            self.outcomes.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return len(errors)
        return 0

    def all_outcomes(self, label: str | None = None) -> list[dict]:
        return list(self.outcomes.find({"label": label} if label else {}, {"_id": 0}))

    # -- drift ------------------------------------------------------------------

    def recent_runs(self, count: int) -> list[dict]:
        """The last `count` runs by start time, oldest first (no per-batch details)."""
        found = self.runs.find({}, {"executions": 0, "batch_stats": 0})
        found = found.sort([("started_at", -1), ("_id", -1)]).limit(count)  # ties: run ids sort by time
        return list(reversed(list(found)))

    def scores_of_runs(self, run_ids: Sequence[str]) -> list[dict]:
        """`run_id` and `results` of every result document of these runs."""
        return list(self.results.find({"run_id": {"$in": list(run_ids)}}, {"_id": 0, "run_id": 1, "results": 1}))

    # -- monitor ----------------------------------------------------------------

    def run_manifests(self) -> list[dict]:
        """Every run document, without its per-batch details."""
        return list(self.runs.find({}, {"executions": 0, "batch_stats": 0}))

    def documents_of_run(self, run_id: str) -> list[dict]:
        """The id, `_timestamp` and `results` of every result document of one run, in stored order."""
        return list(self.results.find({"run_id": run_id}, {"_id": 0, self.id_field: 1, "run_id": 1,
                                                            "_timestamp": 1, "results": 1}))

    def insert_monitor(self, document: dict) -> None:
        """Record one `mlsm-nb monitor` finding."""
        self.monitor.insert_one(document)

    def latest_monitor(self, run_id: str | None = None) -> dict | None:
        """The newest monitor finding (of `run_id`'s run when given), without `_id`."""
        found = self.monitor.find({"run_id": run_id} if run_id else {}, {"_id": 0})
        return next(iter(found.sort("checked_at", -1).limit(1)), None)


def open_database(uri: str, database: str | None = None, *, results_collection: str = "results",
                  id_field: str = "id") -> AuditDatabase:
    """Connect (StoreError, without the password, when the server is unusable), wrap the database and make
    sure the indexes audit reads through exist."""
    from ..store.mongo import MongoStore

    audit = AuditDatabase(MongoStore.connect(uri, database, results_collection=results_collection,
                                             id_field=id_field))
    audit.ensure_indexes()
    return audit


def as_plain(value: Any) -> Any:
    """A MongoDB document as plain JSON-ready data (dates as ISO text, `_id` dropped at the top)."""
    import datetime as dt

    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=value.tzinfo or dt.UTC).isoformat(timespec="seconds")
    return value
