"""`ResultSink`: the one interface of every place that keeps a run's results besides its run directory.

The contract is the class's docstring (as httpx's `BaseTransport` states its own).
`check_approvals` asks every sink of a run whether its models may run (the run
path calls it before anything is written); `store_as_run` drives a sink for a
caller that has documents but no run of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..clock import run_start, utc_now
from ..exceptions import MlsmError
from .manifest import Manifest, NotebookEntry, RunStatus


class StoreError(MlsmError):
    """A sink could not store or read what it was asked to (the message never holds credentials)."""


class Approvable(Protocol):
    """A notebook a run would run as `active` (a `notebook.NotebookSpec`)."""

    name: str
    version: str
    path: Path

    def sha256(self) -> str: ...

    def sha256_without_status(self) -> str: ...


@dataclass(frozen=True)
class RegisteredVersion:
    """An `Approvable` read from a bundle manifest's entry (what `extract` wrote, what serve loads)."""

    name: str
    version: str
    path: Path
    hashed: str
    hashed_without_status: str
    status: str = "active"

    @classmethod
    def active_in(cls, entries: Iterable[Mapping]) -> list[RegisteredVersion]:
        """The entries that run as `active`, as approvables."""
        return [cls(e["name"], e["version"], Path(e.get("source") or f"{e['name']}@{e['version']}"),
                    e.get("sha256") or "", e.get("sha256_without_status") or "")
                for e in entries if e.get("status") == "active"]

    def sha256(self) -> str:
        return self.hashed

    def sha256_without_status(self) -> str:
        return self.hashed_without_status


class ResultSink:
    """Where a run's merged result documents go, from memory, after its run directory has them.

    A run calls, in this order:

    - ``check_approvals(active)`` before the run starts (before its run directory
      exists): raise `ConfigError` naming the first notebook of `active` (each an
      `Approvable` the run would run as ``active``) that this sink's policy does not
      allow to run. The default allows every one: only a sink that keeps a model
      registry (MongoDB) has a policy.
    - ``open_run(manifest)`` once per start or resume, before any batch; the
      manifest's ``run_id`` and ``started_at`` (to the microsecond) identify the run
      and its place in run order (a run started later is newer).
    - ``stored_batches(run_id)``: the batches the sink really holds (not what it was
      told), so resume can store again what a crash lost.
    - ``write_batch(run_id, batch, documents)`` for each batch the sink lacks: store
      its result documents (DESIGN.md's shape; ids keep their JSON type: ``1`` and
      ``"1"`` are two records). Idempotent per ``(run_id, batch)``: writing a batch
      again never duplicates a document. Each document's ``_timestamp`` (when the
      record was scored) is kept as given. An id repeated within a batch is stored
      each time, the later one live. A record the sink cannot hold as scored (a result
      too large, an id too large) is stored as its ``_error`` or left out and reported
      in the returned list (one line each), never a failed batch.
    - ``finish_run(manifest)`` once the run ends (however it ended): record it and
      register its models (``manifest.notebooks``).

    ``{"_current": 0}`` selects exactly one live document per id, by run order
    (``started_at``, then run id; within a run, batch then position): storing (or
    resuming) an older run never makes its results live over a newer run's.

    Manifests come typed (`store.manifest.Manifest`) or as their JSON form (a mapping);
    `Manifest.of` reads either. Every failure raises `StoreError` (one line, no
    credentials), never a driver's own error: the run records it and a resume writes
    again.
    """

    name: str = "sink"

    def check_approvals(self, active: Sequence[Approvable]) -> None:
        """Refuse (ConfigError) a notebook of `active` this sink's policy does not let run; default: none."""

    def open_run(self, manifest: Manifest | Mapping) -> None:
        """Prepare for a run that starts or resumes."""
        raise NotImplementedError

    def write_batch(self, run_id: str, batch: int, documents: Sequence[Mapping]) -> list[str]:
        """Store one merged batch; idempotent per (run_id, batch). Returns one line per record
        stored only as its error or not stored (empty when all went in as given)."""
        raise NotImplementedError

    def stored_batches(self, run_id: str) -> set[int]:
        """The batches of `run_id` this sink holds."""
        raise NotImplementedError

    def finish_run(self, manifest: Manifest | Mapping) -> None:
        """Record the finished (or failed) run."""
        raise NotImplementedError


def check_approvals(sinks: Sequence[ResultSink], specs: Sequence, forced_status: str | None = None) -> None:
    """Ask every sink whether the notebooks of `specs` that would run as `active` may run (ConfigError
    if not). Nothing to ask when every model is forced to draft (git-flow development branches)."""
    if forced_status == "draft":
        return
    active = [spec for spec in specs if spec.status == "active"]
    if active:
        for sink in sinks:
            sink.check_approvals(active)


def store_as_run(sink: ResultSink, documents: Iterable[Mapping], *, models: Sequence[Mapping] = (),
                 source: str = "store_as_run", batch_size: int = 5000) -> tuple[Manifest, list[str]]:
    """Store result documents as a run of their own: open it, write them in batches, finish it.

    For callers without a run (MLSM's ``RunModelsAll(db=...)``, the HTTP server).
    `models` are registry entries (``name``, ``version``, ``status``, ...), the run's
    notebooks. The run starts now, so it is newer than every run before it; an id
    repeated in `documents` is stored each time, the later one live. Returns the
    run's manifest and the per-record problems `write_batch` reported.
    """
    from .rundir import new_run_id

    manifest = Manifest(new_run_id(), started_at=run_start(), settings={"source": source},
                        notebooks=[NotebookEntry.from_dict(m) for m in models])
    sink.open_run(manifest)
    problems: list[str] = []
    batch: list[Mapping] = []
    number = 0
    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            problems += sink.write_batch(manifest.run_id, number, batch)
            batch, number = [], number + 1
    if batch:
        problems += sink.write_batch(manifest.run_id, number, batch)
    manifest.status, manifest.ended_at = RunStatus.SUCCEEDED, utc_now()
    sink.finish_run(manifest)
    return manifest, problems
