"""Serve's scoring threads: every request's records are scored in one, off the event loop, each record
within `--record-timeout`, without signals.

A record over the limit is interrupted in its thread (`core.timelimit`: the watchdog thread raises in it at
its next Python instruction) and answered as a `timeout`; the rest of the request is scored. A record stuck
where that does not reach (a `sleep`, C code) costs its thread: once the record has run past its limit and
the grace, the request stops waiting for that thread, which is left to end on its own and never reused, and
the request is scored again in another thread, that record answered as a timeout without being scored. A
new thread takes the stuck one's place, so the service keeps its threads.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from ..core.timelimit import MAX_STUCK, Board

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between two looks at a request's board while it is scored


class TooManyStuck(Exception):
    """More than `MAX_STUCK` records of one request were stuck where no interrupt reached them."""


class _Job:
    def __init__(self, fn: Callable, stuck: Mapping):
        self.fn, self.stuck = fn, stuck
        self.board = Board()
        self.future: Future = Future()
        self.finished = False  # its thread is done with it
        self.given_up = False  # its request went on without it


class ScoringThreads:
    """`size` threads that score requests (`score`); a thread stuck in a record is replaced."""

    def __init__(self, size: int):
        self.size = size
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0  # threads started, up to `size`, as requests come (an app that never scores has none)
        self.replaced = 0  # threads given up, each for a stuck record

    def _start(self) -> None:
        threading.Thread(target=self._serve, name="mlsm-score", daemon=True).start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                result, failed = job.fn(job.board, job.stuck), False
            except BaseException as exc:  # noqa: BLE001 - the request answers it (an internal error)
                result, failed = exc, True
            with self._lock:
                if job.given_up:  # a new thread took this one's place
                    return
                job.finished = True
            job.future.set_exception(result) if failed else job.future.set_result(result)
            job = result = None  # waiting for the next job, a thread holds nothing of the last request

    def _give_up(self, job: _Job) -> bool:
        """Let the thread running `job` end on its own (after its stuck record) and start one in its place;
        False when it has just finished the job after all."""
        with self._lock:
            if job.finished:
                return False
            job.given_up = True
            self.replaced += 1
        self._start()
        return True

    async def score(self, fn: Callable[[Board, Mapping[int, Mapping[int, float]]], Any]) -> Any:
        """``fn(board, stuck)`` in a scoring thread: `board` is where it scores (its SLOT cell the model's
        place in the request's plan), `stuck` maps a model's place to the positions of its records found
        stuck in an earlier thread (with their seconds), which it answers as timeouts without scoring.
        Raises TooManyStuck past `MAX_STUCK` such records."""
        stuck: dict[int, dict[int, float]] = {}
        if self._started < self.size:
            self._started += 1
            self._start()
        while True:
            job = _Job(fn, {slot: dict(found) for slot, found in stuck.items()})
            self._jobs.put(job)
            waiting = asyncio.wrap_future(job.future)
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=POLL)
                if done:
                    return waiting.result()
                found = job.board.stuck()
                if found is not None and self._give_up(job):
                    break
            log.warning("a record stuck past --record-timeout where no interrupt reached it (position %d of the "
                        "request, model %d of its plan): its scoring thread was replaced", found.position, found.slot)
            records = stuck.setdefault(found.slot, {})
            if len(records) >= MAX_STUCK:
                raise TooManyStuck(f"more than {MAX_STUCK} records of the request were stuck past --record-timeout "
                                   "where no interrupt reached them (C code? a sleep?)")
            records[found.position] = round(found.seconds, 3)

    def close(self) -> None:
        """Let the threads end once the requests queued are scored."""
        for _ in range(self._started):
            self._jobs.put(None)
