"""Store served results through a `ResultSink` (MongoDB) without ever making a response wait for it.

A server process is one run (``serve-<start>-<pid>``): responses only put their
documents in a buffer, and a writer thread stores them in bulk, one
`write_batch` per flush (batches numbered in order, so a lead scored again
later is the newer result, `_current` as in batch runs). A batch that cannot be
stored (database down at start or mid-traffic) stays in the buffer and is
retried until it is stored: nothing the server acknowledged is dropped while it
runs. `close()` stores what it can in a bounded time (8 s, so that a server
stops within 10 s of SIGTERM even during an outage), records the finished run
and says how many documents it could not store. The sink should make one
attempt per call (MongoStore with `retries=1`): this loop is the retry, and a
failed attempt shows in `status()` at once.

Outcomes posted to POST /outcomes go the same way through an `OutcomeBuffer`
(the `outcomes` collection, beside the results, as `mlsm-nb outcomes` stores
them), which holds at most `limit` waiting documents: past it, `add` refuses
(the request is answered 503, nothing acknowledged), so a flood during an
outage cannot fill the memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from .._version import __version__
from ..redact import redact_text
from ..store.manifest import RunStatus

log = logging.getLogger(__name__)

OUTCOMES_WAITING = 200_000  # posted outcomes that may wait for MongoDB; past it POST /outcomes answers 503


class WriteBehind:
    """Buffered, bulk, non-blocking storing of documents, retried until stored (see the module docstring).

    `open_sink` makes the sink (e.g. ``lambda: MongoStore.connect(uri)``); the
    writer thread calls it at once, so that /health tells of a database it cannot
    reach before the first document, and again (every `retry_seconds`) after a failure,
    so a database that is down when the server starts is simply stored to later.
    A subclass says how one batch is written (`_write`) and what a clean close records (`_finish`).
    """

    what = "documents"  # in log lines: "storing {what} failed"
    document = "document"  # "{n} {document} document(s) were not stored before shutdown"

    def __init__(self, open_sink: Callable, *, flush_seconds: float = 1.0, batch_size: int = 5000,
                 retry_seconds: float = 1.0, limit: int | None = None):
        self.open_sink = open_sink
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self.limit = limit
        self._sink = None
        self._batch = 0
        self._open: list[dict] = []
        self._open_since = time.monotonic()
        self._ready: deque[tuple[int, list[dict]]] = deque()
        self._waiting = 0
        self._lock = threading.Condition()
        self._stopping = False
        self.stored = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._thread = threading.Thread(target=self._write_loop, name=f"mlsm-serve-store-{self.what}", daemon=True)
        self._thread.start()

    def add(self, documents: Sequence[dict]) -> bool:
        """Queue documents for storing; returns at once. False (nothing queued) when they would take the
        documents waiting past `limit`."""
        if not documents:
            return True
        with self._lock:
            if self.limit is not None and self._waiting + len(documents) > self.limit:
                return False
            if not self._open:
                self._open_since = time.monotonic()
            self._open.extend(documents)
            self._waiting += len(documents)
            if len(self._open) >= self.batch_size:
                self._cut()
                self._lock.notify()
        return True

    def _cut(self) -> None:
        """Make the open documents the next numbered batch (caller holds the lock)."""
        if self._open:
            self._ready.append((self._batch, self._open))
            self._batch += 1
            self._open = []

    @property
    def pending(self) -> int:
        with self._lock:
            return self._waiting

    def status(self) -> dict:
        """For /health: documents waiting, stored so far, the last error (None once storing works)."""
        return {"pending": self.pending, "stored": self.stored, "error": self.last_error,
                "error_at": self.last_error_at}

    def _write_loop(self) -> None:
        while True:
            if self._sink is None and not self._ready and not self._stopping and not self._connect():
                time.sleep(self.retry_seconds)
                continue
            with self._lock:
                if not self._ready:
                    self._lock.wait(self.flush_seconds)
                if self._open and (self._stopping or time.monotonic() - self._open_since >= self.flush_seconds):
                    self._cut()
                if not self._ready:
                    if self._stopping:
                        return
                    continue
                batch, documents = self._ready[0]
            if self._store(batch, documents):
                with self._lock:
                    self._ready.popleft()
                    self._waiting -= len(documents)
            elif self._stopping:
                return
            else:
                time.sleep(self.retry_seconds)

    def _connect(self) -> bool:
        """Open the sink, before there is anything to store; False (the error kept for /health) if it fails."""
        try:
            self._sink = self.open_sink()
        except Exception as exc:  # noqa: BLE001 - try again later
            self._failed(exc, f"connecting to store {self.what} failed (retrying every {self.retry_seconds:g} s)")
            return False
        self._works_again()
        return True

    def _store(self, batch: int, documents: list[dict]) -> bool:
        try:
            if self._sink is None:
                self._sink = self.open_sink()
            stored = self._write(batch, documents)
        except Exception as exc:  # noqa: BLE001 - keep the batch, try again; never lose it
            self._failed(exc, f"storing {self.what} failed ({self.pending} waiting, kept for retry)")
            return False
        self.stored += stored
        self._works_again()
        return True

    def _failed(self, exc: Exception, what: str) -> None:
        """Keep why for /health; log it when it is news."""
        message = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if message != self.last_error:
            log.error("%s: %s", what, message)
        self.last_error, self.last_error_at = message, dt.datetime.now(dt.UTC).isoformat()

    def _works_again(self) -> None:
        if self.last_error:
            log.warning("storing %s works again (%d stored)", self.what, self.stored)
        self.last_error = None

    def close(self, timeout: float = 8.0) -> int:
        """Store what is buffered, waiting at most `timeout` seconds, and record what `_finish` records.

        Returns the number of documents left unstored (logged as an error).
        """
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout)
        left = self.pending
        if left:
            log.error("%d %s document(s) were not stored before shutdown: %s", left, self.document, self.last_error)
        else:
            self._finish()
        return left

    def _write(self, batch: int, documents: list[dict]) -> int:
        """Store `documents` (batch `batch`); returns how many were stored, raises to keep them for a retry."""
        raise NotImplementedError

    def _finish(self) -> None:
        """What a close that stored everything records (nothing here)."""


class ResultBuffer(WriteBehind):
    """Served result documents, one run (``serve-<start>-<pid>``) of numbered batches in a ResultSink."""

    what = "served results"
    document = "served result"

    def __init__(self, open_sink: Callable, *, bundle: str | None = None, **options):
        started = dt.datetime.now(dt.UTC)
        self.run_id = f"serve-{started:%Y%m%dT%H%M%S}-{os.getpid()}"
        self.manifest = {"run_id": self.run_id, "started_at": started.isoformat(timespec="microseconds"),
                         "engine": "serve", "status": RunStatus.RUNNING, "bundle": bundle, "host": socket.gethostname(),
                         "mlsm_nb_version": __version__}
        self._opened = False
        super().__init__(open_sink, **options)

    def status(self) -> dict:
        """For /health: the run, documents waiting, stored so far, the last error (None once storing works)."""
        return {"run_id": self.run_id, **super().status()}

    def _write(self, batch: int, documents: list[dict]) -> int:
        if not self._opened:
            self._sink.open_run(self.manifest)
            self._opened = True
        self._sink.write_batch(self.run_id, batch, documents)
        return len(documents)

    def _finish(self) -> None:
        if not self._opened:
            return
        try:
            self._sink.finish_run({**self.manifest, "status": RunStatus.SUCCEEDED, "ended_at":
                                   dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                   "input": {"records": self.stored, "batches": self._batch, "rejected": 0}})
        except Exception as exc:  # noqa: BLE001 - the results are stored; only the run record is missing
            log.error("recording the finished serve run failed: %s", redact_text(str(exc)))


class OutcomeBuffer(WriteBehind):
    """Posted outcome documents into an `AuditDatabase`'s `outcomes` collection (`add_outcomes`: an (id,
    label) already stored there is left out, the first kept; counted as `already_stored`)."""

    what = "posted outcomes"
    document = "outcome"

    def __init__(self, open_sink: Callable, **options):
        self.already_stored = 0
        super().__init__(open_sink, **options)

    def status(self) -> dict:
        return {**super().status(), "already_stored": self.already_stored}

    def _write(self, batch: int, documents: list[dict]) -> int:
        left_out = self._sink.add_outcomes(documents)  # stored already (their id and label are)
        self.already_stored += left_out
        return len(documents) - left_out
