"""Store served results through a `ResultSink` (MongoDB) without ever making a response wait for it.

Responses only put their documents in a buffer; a writer thread stores them in
bulk. The buffer is cut into small runs (``serve-<session>-<n>``, one
`open_run` / `write_batch` / `finish_run` each, run order = time order), and a
run never holds one id twice, so a lead scored again later supersedes its
earlier score (`_current`) exactly as a later batch run would. A batch that
cannot be stored (database down at start or mid-traffic) stays in the buffer
and is retried until it is stored: nothing the server acknowledged is dropped
while it runs. `close()` stores what it can in a bounded time and says how
many documents it could not.
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

log = logging.getLogger(__name__)


def _precise_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class _Run:
    def __init__(self, run_id: str, id_field: str):
        self.run_id = run_id
        self.started_at = _precise_now()
        self.opened = time.monotonic()
        self.documents: list[dict] = []
        self.ids: set = set()
        self.id_field = id_field

    def manifest(self, status: str = "running") -> dict:
        return {"run_id": self.run_id, "started_at": self.started_at, "engine": "serve", "status": status,
                "mlsm_nb_version": __version__, "host": socket.gethostname(),
                "input": {"records": len(self.documents), "batches": 1, "rejected": 0}}


class ResultBuffer:
    """Buffered, bulk, non-blocking storing of result documents into a ResultSink.

    `open_sink` makes the sink (e.g. ``lambda: MongoStore.connect(uri)``); it
    is called by the writer thread, again after a failure, so a database that
    is down when the server starts is simply stored to later.
    """

    def __init__(self, open_sink: Callable, *, id_field: str = "id", flush_seconds: float = 1.0,
                 batch_size: int = 5000, retry_seconds: float = 1.0):
        self.open_sink = open_sink
        self.id_field = id_field
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self.session = f"serve-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
        self._sink = None
        self._seq = 0
        self._open: _Run | None = None
        self._ready: deque[_Run] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self.stored = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._thread = threading.Thread(target=self._write_loop, name="mlsm-serve-store", daemon=True)
        self._thread.start()

    def add(self, documents: Sequence[dict]) -> None:
        """Give each document its run id and queue it; returns at once."""
        with self._lock:
            for document in documents:
                run = self._open
                key = document[self.id_field]
                if run is None or key in run.ids or len(run.documents) >= self.batch_size:
                    run = self._cut()
                document["run_id"] = run.run_id
                run.documents.append(document)
                run.ids.add(key)
            self._lock.notify()

    def _cut(self) -> _Run:
        """Close the open run (caller holds the lock) and open the next."""
        if self._open is not None and self._open.documents:
            self._ready.append(self._open)
        self._seq += 1
        self._open = _Run(f"{self.session}-{self._seq:06d}", self.id_field)
        return self._open

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(r.documents) for r in self._ready) + (len(self._open.documents) if self._open else 0)

    def status(self) -> dict:
        """For /health: documents waiting, stored so far, the last error (None once storing works again)."""
        return {"pending": self.pending, "stored": self.stored, "error": self.last_error,
                "error_at": self.last_error_at}

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                if not self._ready:
                    self._lock.wait(self.flush_seconds)
                if self._open is not None and self._open.documents and (
                        self._stopping or time.monotonic() - self._open.opened >= self.flush_seconds):
                    self._cut()
                if not self._ready:
                    if self._stopping:
                        return
                    continue
                run = self._ready[0]
            if self._store(run):
                with self._lock:
                    self._ready.popleft()
            elif self._stopping:
                return
            else:
                time.sleep(self.retry_seconds)

    def _store(self, run: _Run) -> bool:
        try:
            if self._sink is None:
                self._sink = self.open_sink()
            self._sink.open_run(run.manifest())
            self._sink.write_batch(run.run_id, 0, run.documents)
            self._sink.finish_run(run.manifest("succeeded"))
        except Exception as exc:  # noqa: BLE001 - keep the batch, try again; never lose it
            message = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if message != self.last_error:
                log.error("storing served results failed (%d waiting, kept for retry): %s", self.pending, message)
            self.last_error, self.last_error_at = message, _precise_now()
            return False
        self.stored += len(run.documents)
        if self.last_error:
            log.warning("storing served results works again")
        self.last_error = None
        return True

    def close(self, timeout: float = 10.0) -> int:
        """Store what is buffered, waiting at most `timeout` seconds; returns documents left unstored."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout)
        left = self.pending
        if left:
            log.error("%d served result document(s) were not stored in time: %s", left, self.last_error)
        return left
