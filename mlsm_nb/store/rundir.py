"""The run directory: the embedded default store, always written.

Layout of ``<out>/<run_id>/``::

    manifest.json            who, what, when; every execution's status (see runner)
    batches/batch-00000.jsonl      the input records of each batch, written once
    outputs/<name>@<version>/batch-00000.jsonl   one model's entries, batch order
    executed/<name>@<version>/batch-00000.ipynb  executed notebooks (papermill engine)
    notebooks/<name>@<version>.ipynb             the production notebook that ran (papermill engine)
    notebooks/<name>@<version>.authored.ipynb    the notebook as its author saved it, when the run started
    results/batch-00000.jsonl      merged result documents (DESIGN's shape)
    rejected.jsonl           input lines that could not be scored, with the reason
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..exceptions import ConfigError, MlsmError
from ..files import atomic_file, read_jsonl, write_lines
from ..processes import pid_alive
from .manifest import Manifest, load_manifest, save_manifest

MANIFEST = "manifest.json"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


_HELD_LOCKS: set[int] = set()  # file descriptors of the run locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a scoring worker): let go of the parent's run locks, so that they end with the
    parent (a flock is shared by every process holding the descriptor). The descriptor is pointed at
    /dev/null rather than closed, so that its file object closing later harms nothing."""
    if _HELD_LOCKS:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in _HELD_LOCKS:
            os.dup2(null, fd)
        os.close(null)
        _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


LEFTOVER_WAIT = 10.0  # seconds a lock left to a process of a run that ended may take to be let go


def _take_lock(f, root: Path) -> None:
    """flock `f` (the run's .lock, which holds the pid of the process that took it last).

    A lock is let go when every process holding its descriptor has ended. When the process that took it
    is killed (SIGKILL) as it starts a kernel, the child between fork and exec holds it on for a moment,
    so a lock whose taker has ended is waited for, a while, instead of refused at once.
    """
    deadline = None
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            f.seek(0)
            taker = f.read().strip()
        if not taker.isdigit() or pid_alive(int(taker)):  # no pid yet: its taker is writing it
            raise ConfigError(f"{root}: run {root.name} is being run by another mlsm-nb process "
                              f"(pid {taker or '?'}); wait for it, or stop it first")
        deadline = deadline or time.monotonic() + LEFTOVER_WAIT
        if time.monotonic() > deadline:
            raise ConfigError(f"{root}: run {root.name} is locked by a process left over from mlsm-nb process "
                              f"{taker}, which has ended; stop it first (`fuser -v {root / '.lock'}` names it)")
        time.sleep(0.05)


class RunDirectory:
    """Paths and manifest of one run (`root` is ``<out>/<run_id>``): the run's own state, not a `ResultSink`.

    It is the only owner of the run's paths: other parts ask it, never build them
    (a model's `name@version` key is `core.model.model_key`). Its results are written
    by the batch's merge (`write_batch_lines`), wherever that runs; the run hands them to its
    sinks afterwards (docs/design.md).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def batch_path(self, batch: int) -> Path:
        return self.root / "batches" / f"batch-{batch:05d}.jsonl"

    def output_path(self, key: str, batch: int) -> Path:
        return self.root / "outputs" / key / f"batch-{batch:05d}.jsonl"

    def executed_path(self, key: str, batch: int) -> Path:
        return self.root / "executed" / key / f"batch-{batch:05d}.ipynb"

    def kernel_log_path(self, key: str, batch: int) -> Path:
        """Where the kernel that execution (key, batch) starts writes its own output (kept if not empty)."""
        return self.root / "executed" / key / f"batch-{batch:05d}.kernel.log"

    def notebook_path(self, key: str) -> Path:
        return self.root / "notebooks" / f"{key}.ipynb"

    def authored_path(self, key: str) -> Path:
        """The copy of the notebook file as its author saved it (training cells and outputs included)."""
        return self.root / "notebooks" / f"{key}.authored.ipynb"

    def keep_authored(self, key: str, source: Path) -> None:
        """Copy the notebook file `source` to `authored_path(key)`, once: a resumed run keeps the first copy
        (its production cells are the same; the resume checks their sha256)."""
        target = self.authored_path(key)
        if not target.is_file():
            with atomic_file(target, "wb") as f:
                f.write(Path(source).read_bytes())

    def results_path(self, batch: int) -> Path:
        return self.root / "results" / f"batch-{batch:05d}.jsonl"

    @property
    def rejected_path(self) -> Path:
        return self.root / "rejected.jsonl"

    def create(self) -> None:
        """Make the directory of a new run; ConfigError if it exists (another run has this id)."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir()
        except FileExistsError:
            raise ConfigError(f"{self.root}: run directory exists; pass --resume to finish it, "
                              "or another --run-id") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock while it runs; ConfigError if another process holds it."""
        path = self.root / ".lock"
        with open(path, "a+") as f:
            _take_lock(f, self.root)
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            _HELD_LOCKS.add(f.fileno())
            try:
                yield
            finally:
                _HELD_LOCKS.discard(f.fileno())
                fcntl.flock(f, fcntl.LOCK_UN)

    def running_pid(self) -> int | None:
        """The pid of the live process on this host that took the run's lock last; None when it has ended."""
        try:
            taker = (self.root / ".lock").read_text().strip()
        except OSError:
            return None
        return int(taker) if taker.isdigit() and pid_alive(int(taker)) else None

    def prepare(self, keys) -> None:
        """Create the folders a run writes into."""
        for sub in ("batches", "results", "notebooks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for key in keys:
            (self.root / "outputs" / key).mkdir(parents=True, exist_ok=True)
            (self.root / "executed" / key).mkdir(parents=True, exist_ok=True)

    def read_manifest(self) -> Manifest:
        """The run's manifest, typed (`store.manifest`); MlsmError naming the file when unreadable."""
        return load_manifest(self.manifest_path)

    def write_manifest(self, manifest: Manifest | Mapping) -> None:
        """Write the manifest atomically (typed, or its JSON form as a mapping)."""
        save_manifest(self.manifest_path, manifest)

    def write_batch_lines(self, batch: int, lines: Iterable[bytes]) -> int:
        """Write the merged result documents of `batch`, already encoded (a JSON object each, see `run.merge`),
        to ``results/batch-N.jsonl`` atomically (written again, it replaces the old one); returns how many."""
        return write_lines(self.results_path(batch), lines)

    def results(self) -> Iterator[dict]:
        """The result documents of every finished batch, batch by batch."""
        for path in sorted((self.root / "results").glob("batch-*.jsonl")):
            yield from read_jsonl(path)


def read_results(run_dir: str | Path) -> Iterator[dict]:
    """Iterate the result documents of a run directory."""
    run = RunDirectory(run_dir)
    if not run.manifest_path.is_file():
        raise MlsmError(f"{run_dir}: not a run directory (no {MANIFEST})")
    return run.results()
