"""Showing a run's progress where people look: a bar in a terminal, one line per execution in a log."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class ExecutionDone:
    """What `on_progress` gets after each finished execution."""

    key: str
    notebook: str
    batch: int
    status: str
    records: int
    errors: int
    seconds: float
    done: int
    total: int | None  # None while the records are read and their number is unknown (a compressed file)
    earlier: bool = False  # done before a resume: counted (records, errors), not run again

    @classmethod
    def of(cls, key: str, notebook: str, batch: int, entry: dict, done: int, total: int | None,
           earlier: bool = False) -> ExecutionDone:
        """The event of an execution's manifest entry."""
        return cls(key, notebook, batch, entry["status"], entry.get("records", 0), entry.get("errors", 0),
                   entry.get("seconds") or 0.0, done, total, earlier)


class ProgressBar:
    """A tqdm bar over executions, with the records scored (each once, however many notebooks score it) and
    the errors so far; drawn from the first finished execution on (an error before any execution prints
    alone), timed from the bar's creation."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream or sys.stderr
        self._bar = None
        self._started = time.time()
        self._batches: dict[int, int] = {}  # batch -> its records
        self._errors = 0

    def __call__(self, event: ExecutionDone) -> None:
        if self._bar is None:
            from tqdm import tqdm

            # A terminal that reports no size (0x0, e.g. under `script`) would hide tqdm's bar.
            size = shutil.get_terminal_size((100, 20))
            self._bar = tqdm(total=event.total, unit="exec", desc="executions", file=self._stream,
                             ncols=size.columns, nrows=size.lines)
            self._bar.start_t = self._started  # rates over the whole run, not from the first execution
        self._batches[event.batch] = max(self._batches.get(event.batch, 0), event.records)
        self._errors += event.errors
        self._bar.total = event.total
        if event.earlier:  # not this session's work: left out of the rate
            self._bar.initial += 1
        self._bar.n = event.done
        self._bar.set_postfix_str(f"{sum(self._batches.values()):,} records, {self._errors:,} errors",
                                  refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ProgressLines:
    """One line per finished execution (for logs, Jenkins): notebook, batch, records, errors, seconds."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream or sys.stderr

    def __call__(self, event: ExecutionDone) -> None:
        if event.earlier:
            return
        failed = "" if event.status == "ok" else " FAILED"
        print(f"[{event.done}/{event.total or '?'}] {event.key} batch {event.batch}{failed}: {event.records} records, "
              f"{event.errors} errors, {event.seconds:.1f} s ({event.notebook})", file=self._stream, flush=True)

    def close(self) -> None:
        pass


def progress_reporter(bar: bool) -> ProgressBar | ProgressLines:
    """A bar (`bar` true, e.g. stderr is a terminal) or a line per execution."""
    return ProgressBar() if bar else ProgressLines()
