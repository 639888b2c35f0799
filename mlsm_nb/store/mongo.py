"""MongoDB storage: result documents, runs, and the model registry.

Collections of one database: the results (``results`` unless named), ``runs``
(one document per run: its manifest), ``models`` (the registry, one document
per name and version) and ``stored_batches`` (one document per batch stored
completely, with how many documents it wrote).

Run order and ``_current``
--------------------------
A run's place in run order is its manifest's ``started_at``, then its run id
(a run started later is newer); within a run, the batch, then the position in
the batch. A result document's ``_id`` is that place, as one string::

    "<started_at in microseconds since 1970, 17 digits>:<run id>:<batch>:<position>"

so writing a batch again never duplicates a document; no two places give one
``_id`` (the first part and the last two are digits, so a run id holding
``:`` is read back whole); and the record id is not part of it, so its size
or type never touches the ``_id`` index. (A string rather than a document:
servers look string ``_id`` up directly, and documents not always.)

``_current`` is 0 for the one live document of an id: its newest in run order.
A superseded document's ``_current`` is ``1 - started / 10**16``, a number
between 0 and 1 fixed by its own run's start and smaller for newer runs (about
0.82 for runs started in 2026). Sorting an id's documents by ``_current``
lists them newest first, and documents MLSM wrote (1, 2, ... for older ones)
sort after them. Superseding a document never renumbers older ones, so storing
a run touches the documents it inserts and, at most, the one live document per
id it replaces: its cost does not grow with the history of its ids.

Storing a batch:

1. read the live documents of the batch's ids (``$in`` queries of `ids_per_query` ids);
2. insert the batch's documents (unordered, one bulk; already stored ones are
   skipped), each with ``_current`` 0 when it is the newest of its id, else its
   superseded value: an older run stored or resumed late never becomes live;
3. supersede the live documents it replaced (updates by ``_id``, `ids_per_query` at a time);
4. record the batch and its count in ``stored_batches``.

What the steps cost, measured (docs/operators.md, "What storing costs"): the insert
is a plain insert plus an entry in each of the two indexes; superseding rewrites
each replaced document, which on SecantusDB costs several inserts whatever the
query shape, so a superseding run costs a multiple of a plain insert there. The
read stays before the write: a conditional update (live documents of the ids,
older in run order) would spare it, but a server processes every document such a
filter selects, the batch's own new ones included, and on SecantusDB that costs
more than the read it spares, most of all for ids never stored before (measured).

A crash between the steps leaves a state that writing the batch again
completes (step 1 then finds two live documents for an id and keeps the newest).
Transient errors (network blips, primary step-down) are retried, boundedly.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import UpdateMany, WriteConcern

from ..exceptions import ConfigError
from ..files import dumps
from ..redact import redact_text, redact_uri, safe_uri
from .base import Approvable, ResultSink, StoreError
from .manifest import Manifest, manifest_dict
from .registry import ModelRegistry

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "mlsm"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 - 16 * 1024  # BSON's limit, less room for the wire envelope
_QUERY_BYTES = 8 * 1024 * 1024  # ids per `$in` query, well under the 16 MiB command limit
# Ids per `$in` query (reading live documents, superseding them), measured on SecantusDB, which checks each
# document a query finds against the whole `$in` list: 20 beat 5, 10, 30, 50 and 100 (docs/operators.md).
# MongoDB matches `$in` through the index bounds and would gain from more: fewer round trips (not measured here).
IDS_PER_QUERY = 20
DUPLICATE_KEY = 11000
_ORDER_SCALE = 10**16  # microseconds; 10**16 µs after 1970 is in the year 2286


def _transient() -> tuple[type[Exception], ...]:
    from pymongo.errors import AutoReconnect, NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError

    return AutoReconnect, NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError


def driver_message(exc: BaseException, uri: str | None = None) -> str:
    """What a driver error says that a person can use, in one line: a server's refusal as its `errmsg`
    and code name (not the raw reply, with `$clusterTime` and a binary signature), anything else without
    pymongo's timeouts and topology description; credentials hidden."""
    details = getattr(exc, "details", None)
    if isinstance(details, Mapping) and details.get("errmsg"):
        message = str(details["errmsg"]) + (f" ({details['codeName']})" if details.get("codeName") else "")
    else:
        message = str(exc)
    for dump in (" (configured timeouts", ", Timeout: ", ", Topology Description: "):
        message = message.split(dump)[0]
    message = redact_uri(message, uri) if uri else message
    return redact_text(message).splitlines()[0][:300] if message.strip() else type(exc).__name__


def started_micros(started_at: str) -> int:
    """A manifest's ``started_at`` (ISO 8601) as microseconds since 1970, UTC."""
    try:
        moment = dt.datetime.fromisoformat(str(started_at))
    except ValueError:
        raise StoreError(f"run manifest: started_at {started_at!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def superseded_value(started: int) -> float:
    """``_current`` of a superseded document whose run started `started` µs after 1970."""
    return (_ORDER_SCALE - min(max(started, 0), _ORDER_SCALE - 1)) / _ORDER_SCALE


def document_id(started: int, run_id: str, batch: int, n: int) -> str:
    """The `_id` of a run's `n`-th document of `batch` (see the module docstring)."""
    return f"{started:017d}:{run_id}:{batch}:{n}"


def _order(stored_id: Any) -> tuple | None:
    """A stored `_id`'s place in run order (started, run id, batch, position); None for
    documents written before (MLSM's ObjectIds, older mlsm-nb's "run:id")."""
    if not isinstance(stored_id, str):
        return None
    started, _, rest = stored_id.partition(":")
    parts = rest.rsplit(":", 2)
    if len(started) != 17 or not started.isdigit() or len(parts) != 3 or not (parts[1] + parts[2]).isdigit():
        return None
    return int(started), parts[0], int(parts[1]), int(parts[2])


def _superseded_value_of(document: Mapping) -> float:
    order = _order(document["_id"])
    if order is not None:
        return superseded_value(order[0])
    timestamp = document.get("_timestamp")  # written before: older than any run here, by its own time
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return superseded_value(int(timestamp * 1_000_000))
    return 1.0


def id_key(value: Any) -> tuple:
    """A key under which two ids are equal exactly when MongoDB matches them as equal:
    ``1`` and ``"1"`` differ, ``True`` and ``1`` differ, ``1`` and ``1.0`` are the same number."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("other", bson.encode({"v": value}))


def encode(document: Mapping) -> tuple[RawBSONDocument | None, str | None]:
    """BSON for a result document, and what went wrong with it (None when nothing did).

    numpy values and sets are converted where the meaning is clear; a result that still
    cannot be encoded, or is over BSON's size limit, is stored as that record's `_error`
    (never a failed batch). The document is None when even that cannot be stored (its id
    alone is too large)."""
    try:
        raw = bson.encode(document)
    except (bson.errors.InvalidDocument, OverflowError):
        try:
            import orjson

            raw = bson.encode(orjson.loads(dumps(document)))
        except (TypeError, ValueError, bson.errors.InvalidDocument, OverflowError) as exc:
            return _as_error(document, f"result cannot be stored in MongoDB: {exc}")
    if len(raw) > MAX_DOCUMENT_BYTES:
        return _as_error(document, f"result document is {len(raw):,} bytes, over BSON's 16 MiB limit")
    return RawBSONDocument(raw), None


def _as_error(document: Mapping, message: str) -> tuple[RawBSONDocument | None, str]:
    """The document with each result replaced by `message` as a `bad_output` error."""
    results = {name: {version: {"_error": message, "_error_kind": "bad_output"} for version in versions}
               for name, versions in (document.get("results") or {}).items()}
    try:
        raw = bson.encode({**{k: v for k, v in document.items() if k != "results"}, "results": results})
    except (bson.errors.InvalidDocument, OverflowError):
        raw = None
    if raw is None or len(raw) > MAX_DOCUMENT_BYTES:
        return None, f"not stored in MongoDB: {message}, and its id alone is too large to store"
    return RawBSONDocument(raw), f"stored as its error: {message}"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _for_in(values: Sequence, most: int) -> Iterator[list]:
    """`values` in lists for one `$in` query each: at most `most`, under `_QUERY_BYTES`."""
    chunk, size = [], 0
    for value in values:
        value_size = len(bson.encode({"v": value}))
        if chunk and (size + value_size > _QUERY_BYTES or len(chunk) == most):
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += value_size
    if chunk:
        yield chunk


class MongoStore(ResultSink):
    """Results, runs and model registry in one MongoDB database; a `ResultSink`.

    Create with `connect(uri)` (checks the server and credentials at once) or
    `from_database(db)` (an existing pymongo Database, as MLSM's RunModelsAll had).
    The driver's errors stop here: every method raises `StoreError` instead (one
    line, no credentials); transient ones are retried first, boundedly.

    `ids_per_query`: ids in one ``$in`` query when a batch reads the live documents of
    its ids and supersedes them (default `IDS_PER_QUERY`, the best measured on
    SecantusDB; raise it on MongoDB, see docs/operators.md).
    """

    name = "mongodb"

    def __init__(self, database, *, results_collection: str = "results", id_field: str = "id",
                 retries: int = 5, retry_wait: float = 0.5, ids_per_query: int = IDS_PER_QUERY):
        if isinstance(ids_per_query, bool) or not isinstance(ids_per_query, int) or ids_per_query < 1:
            raise ConfigError(f"MongoDB ids_per_query must be a whole number of at least 1, not {ids_per_query!r}")
        self.ids_per_query = ids_per_query
        self.db = database
        self.results = database[results_collection]
        self.runs = database["runs"]
        self.models = database["models"]
        # journaled: once a batch is recorded as stored, it and every write before it survive a crash
        self.batches = database.get_collection("stored_batches", write_concern=WriteConcern(w=1, j=True))
        self.id_field = id_field
        self.retries = retries
        self.retry_wait = retry_wait
        self._indexed = False
        self._started: dict[str, int] = {}
        self.registry = ModelRegistry(self)

    @classmethod
    def connect(cls, uri: str, database: str | None = None, *, timeout_ms: int = 5000, **options) -> MongoStore:
        """Connect and check the server answers and accepts the credentials; StoreError if not.

        The error message names the server but never holds the password, however
        it is written (escaped or not).
        """
        from pymongo import MongoClient
        from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure, PyMongoError

        safe = safe_uri(uri)
        try:
            client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                                 appname="mlsm-nb")
            name = database or (client.get_default_database(DEFAULT_DATABASE).name)
            client[name].list_collection_names()
        except (InvalidURI, ValueError) as exc:
            hint = " (write a password holding / @ : % or spaces percent-escaped)" if "@" in uri else ""
            raise StoreError(f"MongoDB URI {safe} is not valid: {driver_message(exc, uri)}{hint}") from None
        except OperationFailure as exc:
            raise StoreError(f"MongoDB at {safe} refused the request: {driver_message(exc, uri)}") from None
        except (ConfigurationError, PyMongoError) as exc:
            raise StoreError(f"MongoDB at {safe} is not reachable: {driver_message(exc, uri)}") from None
        return cls(client[name], **options)

    @classmethod
    def from_database(cls, database, **options) -> MongoStore:
        """A store over an existing pymongo Database."""
        return cls(database, **options)

    def close(self) -> None:
        self.db.client.close()

    def retry(self, what: str, operation: Callable[[], Any]) -> Any:
        """`operation()`, again after a transient error (a bounded number of times); any error of the
        driver or of BSON (a value it cannot encode) as StoreError."""
        from pymongo.errors import PyMongoError

        for attempt in range(1, self.retries + 1):
            try:
                return operation()
            except _transient() as exc:
                if attempt == self.retries:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise StoreError(f"MongoDB {what} failed{tries}: {driver_message(exc)}") from None
                log.warning("MongoDB %s failed (%s); retrying (%d/%d)", what, type(exc).__name__, attempt,
                            self.retries)
                time.sleep(self.retry_wait * attempt)
            except (PyMongoError, bson.errors.BSONError) as exc:
                raise StoreError(f"MongoDB {what} failed: {driver_message(exc)}") from None
        raise AssertionError("unreachable")

    def ensure_indexes(self) -> None:
        """Indexes the queries need: (_current, id) and run_id on results; (name, version) on
        models; (run_id, batch) on stored_batches."""
        if self._indexed:
            return
        self.retry("index creation", lambda: (
            # `_current` first: reading the live documents of some ids scans those, never their history
            self.results.create_index([("_current", 1), (self.id_field, 1)], name="current_id"),
            self.results.create_index("run_id", name="run_id"),
            self.batches.create_index([("run_id", 1), ("batch", 1)], name="run_batch", unique=True),
            self.models.create_index([("name", 1), ("version", 1)], name="name_version", unique=True)))
        self._indexed = True

    # -- ResultSink -------------------------------------------------------------

    def check_approvals(self, active: Sequence[Approvable]) -> None:
        """The registry's policy: see `ModelRegistry.check_approvals`."""
        self.registry.check_approvals(active)

    def open_run(self, manifest: Manifest | Mapping) -> None:
        """Create the indexes and record the run (its manifest, status as given)."""
        manifest = manifest_dict(manifest)
        self._started[manifest["run_id"]] = started_micros(manifest["started_at"])
        self.ensure_indexes()
        self._record_run(manifest)

    def write_batch(self, run_id: str, batch: int, documents: Sequence[Mapping]) -> list[str]:
        """Store one batch's result documents; idempotent per (run_id, batch). See the module
        docstring for the steps. Returns one line per record stored only as its `_error` (or,
        when even its id is too large for MongoDB, not stored)."""
        started = self._run_started(run_id)
        superseded = superseded_value(started)
        problems: list[str] = []
        documents = list(documents)

        newest: dict[tuple, int] = {}  # the last position of each id in the batch
        for n, document in enumerate(documents):
            newest[id_key(document[self.id_field])] = n
        live = self._live([documents[n][self.id_field] for n in newest.values()])

        losers: dict[float, list] = defaultdict(list)  # superseded value -> `_id`s of live documents it replaces
        incoming_live: set[int] = set()
        for key, n in newest.items():
            mine = document_id(started, run_id, batch, n)
            documents_live = live.get(key, [])
            winner = max([mine, *(d["_id"] for d in documents_live)], key=lambda i: _order(i) or ())
            if winner == mine:
                incoming_live.add(n)
            for d in documents_live:  # every other live document, this one too if stored before and beaten
                if d["_id"] != winner:
                    losers[_superseded_value_of(d)].append(d["_id"])

        raw = []
        for n, document in enumerate(documents):
            encoded, problem = encode({
                "_id": document_id(started, run_id, batch, n), **document, "run_id": run_id,
                "_timestamp": document.get("_timestamp", int(time.time())),
                "_current": 0 if n in incoming_live else superseded})
            if problem:
                problems.append(f"record {_describe(document[self.id_field])}: {problem}")
            if encoded is not None:
                raw.append(encoded)
        written = self._insert(raw, problems)
        updates = [UpdateMany({"_id": {"$in": chunk}}, {"$set": {"_current": value}})
                   for value, ids in losers.items() for chunk in _for_in(ids, self.ids_per_query)]
        if updates:
            self.retry("update of _current", lambda: self.results.bulk_write(updates, ordered=False))
        self.retry("record of the stored batch", lambda: self.batches.update_one(
            {"run_id": run_id, "batch": batch},
            {"$set": {"documents": written, "stored_at": dt.datetime.now(dt.UTC)}}, upsert=True))
        return problems

    def stored_batches(self, run_id: str) -> set[int]:
        """The batches of `run_id` stored completely: recorded as stored, and as many documents
        on the server as were written (a server that lost writes in a crash shows fewer)."""
        recorded = {m["batch"]: m["documents"] for m in self.retry(
            "read of stored batches", lambda: list(self.batches.find({"run_id": run_id})))}
        if not recorded:
            return set()
        counted: dict[int, int] = defaultdict(int)
        for document in self.retry("read of results", lambda: list(self.results.find({"run_id": run_id}, {"_id": 1}))):
            order = _order(document["_id"])
            if order and order[1] == run_id:
                counted[order[2]] += 1
        return {batch for batch, documents in recorded.items() if counted.get(batch, 0) == documents}

    def finish_run(self, manifest: Manifest | Mapping) -> None:
        """Record the run's final manifest and register its notebooks with the event "ran"."""
        typed = Manifest.of(manifest)
        self._record_run(manifest_dict(manifest))
        branch = {"branch": typed.setting("branch")} if typed.setting("branch") else {}
        self.register_models([{**entry.to_dict(), **branch} for entry in typed.notebooks], run_id=typed.run_id,
                             event="ran")

    # -- the steps ----------------------------------------------------------------

    def _run_started(self, run_id: str) -> int:
        if run_id not in self._started:
            run = self.retry("read of the run", lambda: self.runs.find_one({"_id": run_id}, {"started_at": 1}))
            if not run or "started_at" not in run:
                raise StoreError(f"MongoDB: run {run_id!r} was not opened (open_run before write_batch)")
            self._started[run_id] = started_micros(run["started_at"])
        return self._started[run_id]

    def _live(self, ids: Sequence) -> dict[tuple, list[dict]]:
        """The live documents (`_current: 0`) of `ids`, by `id_key` (more than one after a crash)."""
        found: dict[tuple, list[dict]] = defaultdict(list)
        storable = [i for i in ids if len(bson.encode({"v": i})) < MAX_DOCUMENT_BYTES]  # others cannot be stored
        for chunk in _for_in(storable, self.ids_per_query):
            cursor = self.retry("read of live results", lambda chunk=chunk: list(self.results.find(
                {self.id_field: {"$in": chunk}, "_current": 0}, {"_id": 1, self.id_field: 1, "_timestamp": 1})))
            for document in cursor:
                found[id_key(document[self.id_field])].append(document)
        return found

    def _insert(self, raw: list[RawBSONDocument], problems: list[str]) -> int:
        """Insert unordered; documents already there are fine; a document the server refuses is
        stored as its error (or reported). Returns how many documents the batch has on the server."""
        from pymongo.errors import BulkWriteError

        refused: list[tuple[RawBSONDocument, str]] = []

        def insert(documents):
            try:
                self.results.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    if error.get("code") != DUPLICATE_KEY:
                        refused.append((documents[error["index"]], error.get("errmsg", "refused")[:300]))

        if raw:
            self.retry("insert of results", lambda: insert(raw))
        retry = []
        for document, message in refused:
            as_error, problem = _as_error(document, f"MongoDB refused it: {message}")
            if as_error is not None:
                retry.append(as_error)
            problems.append(f"record {_describe(document[self.id_field])}: {problem}")
        refused_before, refused[:] = len(refused), []
        if retry:
            self.retry("insert of results", lambda: insert(retry))
        for document, message in refused:
            problems.append(f"record {_describe(document[self.id_field])}: not stored in MongoDB: {message}")
        return len(raw) - refused_before + len(retry) - len(refused)

    def _record_run(self, manifest: Mapping) -> None:
        document = {k: v for k, v in manifest.items() if k != "batch_stats"}
        self.retry("write of the run", lambda: self.runs.replace_one(
            {"_id": manifest["run_id"]}, {**document, "_id": manifest["run_id"]}, upsert=True))

    def register_models(self, entries: Iterable[Mapping], *, run_id: str | None = None, event: str) -> None:
        """Upsert registry documents per (name, version); `event` ("extracted", "validated", "ran") is timestamped.

        Where each sha256 was last registered from is kept whole under ``registrations.<sha256>`` (see
        `store.registry.registration`), so an approval can name, and find again, the version it covers."""
        from pymongo import UpdateOne

        from .registry import registration

        now = dt.datetime.now(dt.UTC)
        operations = []
        for entry in entries:
            fields = {k: entry[k] for k in ("status", "kind", "fields", "models", "sha256", "sha256_without_status",
                                            "git_commit", "source", "repository", "branch", "commit") if k in entry}
            update: dict = {"$set": {**fields, f"{event}_at": now}}
            if entry.get("sha256"):
                update["$set"][f"registrations.{entry['sha256']}"] = registration(entry, event, now, run_id)
            if run_id:
                update["$addToSet"] = {"runs": run_id}
            operations.append(UpdateOne({"name": entry["name"], "version": entry["version"]}, update, upsert=True))
        if operations:
            self.ensure_indexes()
            self.retry("write of the model registry", lambda: self.models.bulk_write(operations, ordered=False))

    # -- queries for consumers ----------------------------------------------------

    def current_results(self, ids: Iterable) -> dict:
        """The live result document of each id (``_current: 0``), by id (ids keep their type)."""
        ids = list(ids)
        found = self.retry("read of results", lambda: list(self.results.find({self.id_field: {"$in": ids},
                                                                               "_current": 0})))
        return {doc[self.id_field]: doc for doc in found}

    def count_run(self, run_id: str) -> int:
        """How many result documents a run has stored."""
        return self.retry("count of results", lambda: self.results.count_documents({"run_id": run_id}))

    def history(self, record_id) -> list[dict]:
        """Every stored result of one id, newest first (``_current`` ascending)."""
        found = self.retry("read of results", lambda: list(self.results.find({self.id_field: record_id})))
        return sorted(found, key=_newest_first)


def _newest_first(document: Mapping) -> tuple:
    """Sort key: `_current` ascending; within one run (an id repeated), the later position first."""
    order, current = _order(document["_id"]), document.get("_current", math.inf)
    return (current, -order[2], -order[3]) if order else (current, 0, 0)
