"""MongoDB storage: results (MLSM's `_current`/`_timestamp`), runs, and the model registry.

Result documents keep DESIGN's shape; their `_id` is ``"<run_id>:<id>"``, so
writing a batch again (a re-run, a resume) never creates a second document
for the same (id, run). Storing a batch is two idempotent bulk steps:

1. when other runs have stored results in the collection, every older document
   of the batch's ids gets ``_current += 1`` once for this run (the filter
   ``_bumped_by != run_id`` makes a repeat a no-op);
2. the new documents are inserted unordered with ``_current: 0``; duplicate-key
   errors (already stored) are ignored.

So after a run exactly one document per id has ``_current: 0``, and a crash
between batches leaves a state that storing the same batches again completes.
Transient errors (network blips, primary step-down) are retried, boundedly.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

from ..files import dumps
from ..redact import redact_text
from .base import StoreError

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "mlsm"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 - 16 * 1024  # BSON's limit, less room for the wire envelope
_DUPLICATE_KEY = 11000


def _transient() -> tuple[type[Exception], ...]:
    from pymongo.errors import AutoReconnect, NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError

    return AutoReconnect, NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError


def encode(document: Mapping) -> RawBSONDocument:
    """BSON for a result document; numpy values and sets are converted where the meaning is
    clear, and a result that still cannot be encoded or is over BSON's size limit becomes
    that record's `_error` (never a failed batch)."""
    try:
        raw = bson.encode(document)
    except (bson.errors.InvalidDocument, OverflowError):
        try:
            import orjson

            raw = bson.encode(orjson.loads(dumps(document)))
        except (TypeError, ValueError, bson.errors.InvalidDocument, OverflowError) as exc:
            return RawBSONDocument(bson.encode(_replace_results(document, "bad_output",
                                                               f"result cannot be stored in MongoDB: {exc}")))
    if len(raw) > MAX_DOCUMENT_BYTES:
        return RawBSONDocument(bson.encode(_replace_results(
            document, "bad_output", f"result document is {len(raw):,} bytes, over BSON's 16 MiB limit")))
    return RawBSONDocument(raw)


def _replace_results(document: Mapping, kind: str, message: str) -> dict:
    results = {name: {version: {"_error": message, "_error_kind": kind} for version in versions}
               for name, versions in document.get("results", {}).items()}
    return {**{k: v for k, v in document.items() if k != "results"}, "results": results}


class MongoStore:
    """Results, runs and model registry in one MongoDB database.

    Create with `connect(uri)` (checks the server and credentials at once) or
    `from_database(db)` (an existing pymongo Database, as MLSM's RunModelsAll had).
    """

    def __init__(self, database, *, results_collection: str = "results", id_field: str = "id",
                 retries: int = 5, retry_wait: float = 0.5):
        self.db = database
        self.results = database[results_collection]
        self.runs = database["runs"]
        self.models = database["models"]
        self.id_field = id_field
        self.retries = retries
        self.retry_wait = retry_wait
        self._indexed = False

    @classmethod
    def connect(cls, uri: str, database: str | None = None, *, timeout_ms: int = 5000, **options) -> "MongoStore":
        """Connect and check the server answers and accepts the credentials; StoreError if not.

        The error message never contains the password.
        """
        from pymongo import MongoClient
        from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

        safe = redact_text(uri)
        try:
            client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                                 appname="mlsm-nb")
            name = database or (client.get_default_database(DEFAULT_DATABASE).name)
            client[name].list_collection_names()
        except OperationFailure as exc:
            raise StoreError(f"MongoDB at {safe} refused the request: {redact_text(str(exc.details or exc))}") from None
        except (ConfigurationError, PyMongoError, ValueError) as exc:
            raise StoreError(f"MongoDB at {safe} is not reachable: {redact_text(str(exc)).splitlines()[0][:300]}") from None
        return cls(client[name], **options)

    @classmethod
    def from_database(cls, database, **options) -> "MongoStore":
        """A store over an existing pymongo Database."""
        return cls(database, **options)

    def close(self) -> None:
        self.db.client.close()

    # -- writes ---------------------------------------------------------------

    def _retry(self, what: str, operation: Callable[[], Any]) -> Any:
        for attempt in range(1, self.retries + 1):
            try:
                return operation()
            except _transient() as exc:
                if attempt == self.retries:
                    raise StoreError(f"MongoDB {what} failed after {attempt} attempts: "
                                     f"{redact_text(str(exc)).splitlines()[0][:300]}") from None
                log.warning("MongoDB %s failed (%s); retrying (%d/%d)", what, type(exc).__name__, attempt,
                            self.retries)
                time.sleep(self.retry_wait * attempt)
        raise AssertionError("unreachable")

    def ensure_indexes(self) -> None:
        """Indexes the queries need: (id, _current) and run_id on results; (name, version) on models."""
        if self._indexed:
            return
        self._retry("index creation", lambda: (
            self.results.create_index([(self.id_field, 1), ("_current", 1)], name="id_current"),
            self.results.create_index("run_id", name="run_id"),
            self.models.create_index([("name", 1), ("version", 1)], name="name_version", unique=True)))
        self._indexed = True

    def _others_stored(self, run_id: str) -> bool:
        return self._retry("read of results", lambda: self.results.find_one(
            {"run_id": {"$ne": run_id}}, {"_id": 1})) is not None

    def write_results(self, documents: Iterable[Mapping], chunk_size: int = 5000) -> int:
        """Store result documents (DESIGN's shape, all of one run); idempotent per run id.

        Returns the number of documents handed in.
        """
        from pymongo import UpdateMany
        from pymongo.errors import BulkWriteError

        self.ensure_indexes()
        count, supersede = 0, None
        chunk: list[dict] = []

        def flush():
            nonlocal supersede
            rid = chunk[0]["run_id"]
            if supersede is None:
                supersede = self._others_stored(rid)
            if supersede:
                bumps = [UpdateMany({self.id_field: d[self.id_field], "run_id": {"$ne": rid},
                                     "_bumped_by": {"$ne": rid}},
                                    {"$inc": {"_current": 1}, "$set": {"_bumped_by": rid}}) for d in chunk]
                self._retry("update of _current", lambda: self.results.bulk_write(bumps, ordered=False))
            raw = [encode({"_id": f"{d['run_id']}:{d[self.id_field]}", **d, "_current": 0}) for d in chunk]

            def insert():
                try:
                    self.results.insert_many(raw, ordered=False)
                except BulkWriteError as exc:
                    others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
                    if others:
                        raise StoreError(f"MongoDB refused {len(others)} result document(s): "
                                         f"{others[0].get('errmsg', '')[:300]}") from None

            self._retry("insert of results", insert)
            chunk.clear()

        for document in documents:
            chunk.append(document)
            count += 1
            if len(chunk) >= chunk_size:
                flush()
        if chunk:
            flush()
        return count

    def record_run(self, manifest: Mapping) -> None:
        """Upsert a run's manifest (already redacted) into `runs`, keyed by run id."""
        document = {k: v for k, v in manifest.items() if k not in ("batch_stats",)}
        self._retry("write of the run", lambda: self.runs.replace_one({"_id": manifest["run_id"]},
                                                                      {"_id": manifest["run_id"], **document},
                                                                      upsert=True))

    def register_models(self, entries: Sequence[Mapping], *, run_id: str | None = None, event: str) -> None:
        """Upsert registry documents per (name, version); `event` ("extracted", "validated", "ran") is timestamped."""
        from pymongo import UpdateOne

        now = dt.datetime.now(dt.timezone.utc)
        operations = []
        for entry in entries:
            fields = {k: entry[k] for k in ("status", "kind", "fields", "models", "sha256", "git_commit",
                                            "source", "repository", "branch", "commit") if k in entry}
            update: dict = {"$set": {**fields, f"{event}_at": now}}
            if run_id:
                update["$addToSet"] = {"runs": run_id}
            operations.append(UpdateOne({"name": entry["name"], "version": entry["version"]}, update, upsert=True))
        if operations:
            self.ensure_indexes()
            self._retry("write of the model registry", lambda: self.models.bulk_write(operations, ordered=False))

    # -- queries for consumers --------------------------------------------------

    def current_results(self, ids: Iterable) -> dict:
        """The live result document of each id (``_current: 0``), by id."""
        ids = list(ids)
        found = self.results.find({self.id_field: {"$in": ids}, "_current": 0})
        return {doc[self.id_field]: doc for doc in found}

    def count_run(self, run_id: str) -> int:
        """How many result documents a run has stored."""
        return self._retry("count of results", lambda: self.results.count_documents({"run_id": run_id}))

    def history(self, record_id) -> list[dict]:
        """Every stored result of one id, newest first."""
        return list(self.results.find({self.id_field: record_id}).sort("_current", 1))
