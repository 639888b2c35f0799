"""The per-record time limit (`--record-timeout`): a record whose score runs over it is stopped, becomes
that record's `timeout` entry, and its batch goes on.

A scoring loop (`core.batch.score_batch`) writes the record it is scoring on a `Board`: when it started,
its position, the limit it has. What stops a record that runs over depends on the thread it runs in:

- the main thread (a kernel's cells, an in-process worker, validate's check process): SIGALRM ticks
  (`setitimer`, a tenth of the limit apart) while a batch is scored, and the tick's handler raises
  `RecordTimeout` into the score when its record is over the limit. A signal also ends a `sleep` or a
  blocking read.
- any other thread (serve's scoring threads, a Dask worker's): no signal; a watchdog thread raises
  `RecordTimeout` in the scoring thread (CPython's `PyThreadState_SetAsyncExc`), which takes effect at
  the thread's next Python instruction: a thread in a `sleep` or in C code is not reached.

`RecordTimeout` is a BaseException, so a score's `except Exception` does not swallow it (a score that
swallows it anyway gets it again a limit later, and its record is a timeout whatever it returns late).
A record stuck where nothing reaches it (C code holding the interpreter, a sleep in a thread) is found
from outside: a board can live in memory another process or thread reads (`Board.shared`,
`Board.at`), and `Board.stuck` says when the record has been running for longer than its limit and a
grace; the runner then replaces the kernel, worker or thread and scores the batch again, that record
given its timeout without being scored (`score_batch(stuck=...)`).

Costs per record: a clock read and two stores into the board (about 0.1 µs); per batch: two `setitimer`
calls. `bench/record_timeout.py` measures it.
"""

from __future__ import annotations

import array
import ctypes
import math
import mmap
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

from .output import error_entry

# The board's cells (doubles): the record being scored's start (time.monotonic; 0: none), its position
# (FRAME: a whole frame), the model's slot (its place in the caller's list), the limit of what is being
# scored (seconds; a frame's is the records' limit times its rows), the scoring process's id, and the
# start of the record last interrupted and when (an interrupt is sent once a limit).
START, POSITION, SLOT, LIMIT, PID, RAISED, RAISED_AT = range(7)
CELLS = 8
FRAME = -1  # the position of a whole frame (`score_frame`)
TICKS = 10  # checks per limit: a record is stopped within 1.1 limits
MAX_STUCK = 5  # records of one (model, batch) found stuck from outside, each costing a process, before it fails


class RecordTimeout(BaseException):
    """Raised into a score whose record ran over its time limit (a BaseException: a score's `except
    Exception` does not turn it into `score_raised`)."""


class Stuck(NamedTuple):
    """A record found stuck from outside: the model's slot, the record's position (FRAME: a whole
    frame) and how long it had been running."""

    slot: int
    position: int
    seconds: float


def grace(limit: float) -> float:
    """How long past its limit a record may go on before it is taken as stuck where no interrupt reaches it
    (its process or thread is then given up): time for the interrupt to act on a loaded machine."""
    return max(2.0, limit / 4)


def tick(limit: float) -> float:
    """Seconds between two checks of a record's time."""
    return min(1.0, max(0.001, limit / TICKS))


def timeout_entry(limit: float | None, stuck: bool = False) -> dict:
    """The entry of a record whose score ran over the limit (None: a limit no longer known); `stuck`: one found
    stuck from outside, whose process or thread was replaced. How long it ran is in the outcome's `slowest`,
    not here: the entry of a record that timed out is the same in a replay."""
    of = f" of {limit:g} s" if limit is not None else ""
    how = ("; it was stuck where no interrupt reached it (C code?), so the process or thread scoring it was replaced"
           if stuck else "")
    return error_entry("timeout", f"score ran over the per-record time limit{of} (--record-timeout){how}")


class Board:
    """Where a scoring loop says what it is scoring (see the module docstring); `cells` is the raw
    memoryview of doubles the loop writes."""

    def __init__(self, memory: mmap.mmap | None = None):
        self._memory = memory
        self._bytes = memoryview(memory if memory is not None else array.array("d", bytes(8 * CELLS)))
        self.cells = self._bytes.cast("B").cast("d")

    @classmethod
    def shared(cls) -> Board:
        """A board in memory shared with the processes this one forks afterwards (a worker's)."""
        return cls(mmap.mmap(-1, 8 * CELLS))

    @classmethod
    def at(cls, path: str | Path) -> Board:
        """A board in the file `path` (made empty first by `create_file`): another process maps it too."""
        with open(path, "r+b") as f:
            return cls(mmap.mmap(f.fileno(), 8 * CELLS))

    @staticmethod
    def create_file(path: str | Path) -> None:
        Path(path).write_bytes(bytes(8 * CELLS))

    def clear(self) -> None:
        self.cells[START] = 0.0
        self.cells[RAISED] = 0.0

    def due(self, now: float) -> bool:
        """Whether the record on the board is over its limit and should be interrupted now (once a limit)."""
        cells = self.cells
        start = cells[START]
        if start <= 0 or now - start < cells[LIMIT]:
            return False
        if cells[RAISED] == start and now - cells[RAISED_AT] < cells[LIMIT]:
            return False
        cells[RAISED], cells[RAISED_AT] = start, now
        return True

    def stuck(self, now: float | None = None) -> Stuck | None:
        """The record on the board, when it has run for longer than its limit and the grace (read from
        outside the scoring thread or process)."""
        cells = self.cells
        start, limit = cells[START], cells[LIMIT]
        now = time.monotonic() if now is None else now
        if start <= 0 or not now - start > limit + grace(limit):
            return None
        return Stuck(int(cells[SLOT]), int(cells[POSITION]), now - start)

    def close(self) -> None:
        """Let go of the memory (a board of a file or shared memory: unmapped)."""
        self.cells.release()
        self._bytes.release()
        if self._memory is not None:
            self._memory.close()


# --- how a record is interrupted ------------------------------------------------------------------------

class Watch:
    """The interrupts of one scoring loop on `board` (see `watching`). `leave()` is the loop's last step,
    inside the `try` that catches `RecordTimeout`: after it, none is raised in this thread."""

    def __init__(self, board: Board):
        self.board = board

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def leave(self) -> None:
        self.board.cells[START] = 0.0


class _Signalled(Watch):
    """The main thread's: SIGALRM ticks (see the module docstring). An alarm set before (a kernel user's
    `signal.alarm`, pytest-timeout's) is kept: its handler is called when its time comes while the ticks
    run, and its timer is set again, with the time it has left, when they stop."""

    def __enter__(self) -> _Signalled:
        self.outermost = not _MAIN
        if self.outermost:
            remaining, interval = signal.getitimer(signal.ITIMER_REAL)
            self.previous = signal.signal(signal.SIGALRM, _on_tick)
            _OTHER[:] = [self.previous, time.monotonic() + remaining if remaining else None, interval]
        _MAIN.append(self.board)
        every = tick(self.board.cells[LIMIT])
        if not self.outermost:
            every = min(every, signal.getitimer(signal.ITIMER_REAL)[1])
        signal.setitimer(signal.ITIMER_REAL, every, every)
        return self

    def __exit__(self, *exc_info) -> None:
        _MAIN.remove(self.board)
        if self.outermost:
            signal.setitimer(signal.ITIMER_REAL, 0)  # first: an alarm after the handler's restore would end us
            signal.signal(signal.SIGALRM, self.previous)
            handler, due, interval = _OTHER
            if due is not None:
                signal.setitimer(signal.ITIMER_REAL, max(due - time.monotonic(), 1e-6), interval)
            _OTHER[:] = [None, None, 0.0]


_MAIN: list[Board] = []  # the main thread's boards being watched, innermost last
_OTHER: list = [None, None, 0.0]  # the alarm set before the ticks: its handler, when it is due, its interval


def _on_tick(signum, frame) -> None:
    handler, due, interval = _OTHER
    now = time.monotonic()
    if due is not None and now >= due:
        _OTHER[1] = due + interval if interval else None
        if callable(handler):
            handler(signum, frame)
    if _MAIN and _MAIN[-1].due(now):
        raise RecordTimeout


def _can_signal() -> bool:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return False
    handler = signal.getsignal(signal.SIGALRM)
    return handler is not None and (handler in (signal.SIG_DFL, signal.SIG_IGN) or callable(handler))


class _Watched(Watch):
    """Another thread's: the watchdog thread raises in it (see the module docstring). The watchdog decides
    and raises holding its lock, and `leave` takes the lock and drops an interrupt sent but not yet
    raised, so none lands after the loop."""

    def __enter__(self) -> _Watched:
        self.ident = threading.get_ident()
        _WATCHDOG.add(self.ident, self.board)
        return self

    def leave(self) -> None:
        self.board.cells[START] = 0.0
        _WATCHDOG.remove(self.ident, self.board)

    def __exit__(self, *exc_info) -> None:
        try:
            self.leave()
        except RecordTimeout:  # a loop that ended by an exception did not leave; sent before it did
            self.leave()


class _Watchdog:
    """One thread that interrupts other threads' records over their limit."""

    def __init__(self):
        self.lock = threading.Condition()
        self.boards: dict[int, list[Board]] = {}  # thread id -> its boards being watched, innermost last
        self.thread: threading.Thread | None = None

    def add(self, ident: int, board: Board) -> None:
        with self.lock:
            self.boards.setdefault(ident, []).append(board)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="mlsm-record-timeout", daemon=True)
                self.thread.start()
            self.lock.notify()

    def remove(self, ident: int, board: Board) -> None:
        """Stop watching `board` and drop an interrupt sent to the thread but not yet raised."""
        with self.lock:
            boards = self.boards.get(ident, [])
            if board in boards:
                boards.remove(board)
            if not boards:
                self.boards.pop(ident, None)
            _raise_in(ident, None)

    def _watch(self) -> None:
        with self.lock:
            while True:
                every = min((tick(b[-1].cells[LIMIT]) for b in self.boards.values() if b), default=None)
                self.lock.wait(every)
                now = time.monotonic()
                for ident, boards in self.boards.items():
                    if boards and boards[-1].due(now):
                        _raise_in(ident, RecordTimeout)


def _raise_in(ident: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in thread `ident` at its next instruction; None drops one sent but not yet raised."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))


_WATCHDOG = _Watchdog()


def watching(board: Board, limit: float | None) -> Watch:
    """A context manager that interrupts the records this thread scores on `board` when they run over
    `limit` (the board's LIMIT cell, which a loop may change per unit: a frame's is larger).

    Interrupts come as `RecordTimeout`, raised where the score is. In a thread other than the main one, an
    interrupt meant for a record that ended just before may land in the next one: the loop checks the
    record's time when it catches one (see `core.batch`), and calls `leave()` last in its `try`. With
    `limit` None nothing is interrupted."""
    if limit is None:
        board.cells[LIMIT] = math.inf
        return Watch(board)
    board.cells[LIMIT] = limit
    board.cells[RAISED] = 0.0
    return _Signalled(board) if _can_signal() else _Watched(board)
