"""Kernels whose record is stuck where no interrupt reaches it (see `core.timelimit`): found and stopped.

A kernel's scoring loop writes the record it scores on a board in a file this process maps too
(`KernelBoard`); one thread of the runner looks at every board in use a few times a second and kills
the kernel (its process group) whose record has run past its limit and the grace. Its execution then
raises (the kernel died), and the papermill engine runs it again in a new kernel, that record given its
timeout without being scored (`engines.PapermillEngine`). A board's file is named after its runner's
process id, so that a run removes those a killed run left (`remove_stale_boards`).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path

from ..core.timelimit import PID, Board, Stuck
from ..processes import remove_files_of_gone

POLL = 0.25  # seconds between two looks at the boards


PREFIX = "mlsm-board-"


def _board_folder() -> str:
    """/dev/shm where it can be written (memory, never written back to a disk), else the temporary folder."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def remove_stale_boards() -> int:
    """Remove the board files of runners that are gone (killed while a kernel scored); returns how many."""
    return remove_files_of_gone(_board_folder(), PREFIX)


class KernelBoard:
    """A board in a file for one execution's kernel (`path` goes to the runner cell); while it is open,
    the watchdog stops the kernel if a record is stuck, and `stuck` then says which."""

    def __init__(self):
        handle, self.path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", dir=_board_folder())
        os.close(handle)
        Board.create_file(self.path)
        self.board = Board.at(self.path)
        self.stuck: Stuck | None = None

    def __enter__(self) -> KernelBoard:
        _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _WATCHDOG.remove(self)
        self.board.close()
        Path(self.path).unlink(missing_ok=True)

    def check(self) -> None:
        """Stop the kernel when its record is stuck (in the watchdog's thread)."""
        found = self.board.stuck()
        pid = int(self.board.cells[PID])
        if found is None or pid <= 0 or self.stuck is not None:
            return
        self.stuck = found
        try:
            if os.getpgid(pid) == pid:  # a kernel leads its own session (launched or forked): its children too
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Watchdog:
    def __init__(self):
        self.lock = threading.Condition()
        self.boards: list[KernelBoard] = []
        self.thread: threading.Thread | None = None

    def add(self, board: KernelBoard) -> None:
        with self.lock:
            self.boards.append(board)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="mlsm-stuck-kernels", daemon=True)
                self.thread.start()

    def remove(self, board: KernelBoard) -> None:
        with self.lock:
            self.boards.remove(board)

    def _watch(self) -> None:
        with self.lock:
            while self.boards:
                self.lock.wait(POLL)
                for board in self.boards:
                    board.check()
            self.thread = None


_WATCHDOG = _Watchdog()
