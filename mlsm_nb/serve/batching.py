"""Adaptive batching: concurrent scoring requests scored together, each answered with its own records.

Every request's records are checked on their own first (its ids, its `rejected` list, its positions), so
a batch only ever holds records that score. A batch is released to the scoring core (`score_batch` per
model over the records of all its requests, so a model's `score_frame` gets them in one frame):

- as soon as it holds `max_size` records;
- when the scorer is free and the event loop has gone round `QUIET_ROUNDS` times without a request
  joining: the requests that had already arrived are in, and a lone request waits only those rounds;
- at the latest `max_latency` seconds after its first request joined, even while another batch is being
  scored.

A request that has `max_size` records or more is a batch by itself. Each request gets its slice of every
model's entries: what scoring it alone gives, since `score` scores record by record and `score_frame` row
by row (the same values as `score`, by the notebook contract). Batches are kept apart by bundle and plan:
a request scores with the bundle it read when it arrived, so a swap starts new batches and no batch
mixes two bundles. Should scoring a batch raise (scoring a record never does), each of its requests is
scored again alone, so only a request that raises on its own fails. A request whose handler was
cancelled before its batch was released is left out of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..core.batch import BatchOutcome
from .bundle import Scored
from .timing import Timings

QUIET_ROUNDS = 1  # event loop rounds without a new request before a batch is released

ScoreFn = Callable[[Any, Sequence, list[Mapping]], Awaitable[list[BatchOutcome]]]


@dataclasses.dataclass
class _Waiter:
    records: list[Mapping]
    future: asyncio.Future
    joined: float
    released: float = 0.0


@dataclasses.dataclass
class _Batch:
    bundle: Any
    plan: Sequence
    waiters: list[_Waiter] = dataclasses.field(default_factory=list)
    size: int = 0
    deadline: asyncio.TimerHandle | None = None
    parked: bool = False  # ready, waiting for the scorer to be free


class Batcher:
    """Queues requests' checked records and scores them in batches with `score(bundle, plan, records)`.

    `max_size` is in records (1 or less: no batching); `max_latency` in seconds.
    """

    def __init__(self, score: ScoreFn, max_size: int, max_latency: float, on_batch=None):
        self._score = score
        self.max_size = max_size
        self.max_latency = max_latency
        self.on_batch = on_batch or (lambda requests, records: None)
        self._open: dict[tuple, _Batch] = {}
        self._scoring = 0  # batches being scored now
        self._tasks: set[asyncio.Task] = set()

    def takes(self, records: int) -> bool:
        """Whether a request of `records` records joins batches (batching on, and fewer than `max_size`)."""
        return records < self.max_size

    async def score_request(self, bundle, records: Sequence[Any], *, plan: Sequence | None = None,
                            id_field: str = "id", run_id: str = "serve", timings: Timings | None = None) -> Scored:
        """A request's `records` checked on their own, scored in a batch, made into its result documents
        (`ServedBundle.score`'s answer, with `waited`); `timings` gets the `check`, `queue` (the wait for
        the batch to be released) and `score` stages (the batch's scoring, which its requests share)."""
        timings = timings or Timings()
        good, rejected = bundle.check(records, id_field)
        timings.lap("check")
        outcomes, waited = await self.score(bundle, plan or bundle.plan, good) if good else ([], 0.0)
        timings.lap_first("queue", waited)
        scored = bundle.documents(good, rejected, outcomes, id_field=id_field, run_id=run_id)
        timings.lap("score")
        scored.waited = waited
        return scored

    async def score(self, bundle, plan: Sequence, records: list[Mapping]) -> tuple[list[BatchOutcome], float]:
        """Score `records` (checked) with `plan` of `bundle` in a batch with other requests'; returns the
        outcomes of these records alone and the seconds they waited for their batch to be released."""
        if not self.takes(len(records)):
            return await self._score(bundle, plan, records), 0.0
        loop = asyncio.get_running_loop()
        key = (id(bundle), tuple(model.key for model in plan))
        batch = self._open.get(key)
        if batch is not None and batch.size + len(records) > self.max_size:
            self._release(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(bundle, plan)
            batch.deadline = loop.call_later(self.max_latency, self._release, key, batch)
            loop.call_soon(self._look, key, batch, 1, 0)
        waiter = _Waiter(records, loop.create_future(), loop.time())
        batch.waiters.append(waiter)
        batch.size += len(records)
        if batch.size >= self.max_size:
            self._release(key)
        outcomes = await waiter.future
        return outcomes, waiter.released - waiter.joined

    def _look(self, key: tuple, batch: _Batch, seen: int, quiet: int) -> None:
        """Release `batch` once no request joined it for QUIET_ROUNDS loop rounds and the scorer is free
        (when it is busy, the batch scored now releases the open ones as it ends)."""
        if self._open.get(key) is not batch:
            return
        quiet = quiet + 1 if len(batch.waiters) == seen else 0
        if quiet < QUIET_ROUNDS:
            asyncio.get_running_loop().call_soon(self._look, key, batch, len(batch.waiters), quiet)
        elif self._scoring:
            batch.parked = True
        else:
            self._release(key, batch)

    def _release(self, key: tuple, batch: _Batch | None = None) -> None:
        """Send the open batch under `key` (only if it is still `batch`, when given) to be scored."""
        if batch is not None and self._open.get(key) is not batch:
            return
        batch = self._open.pop(key)
        batch.deadline.cancel()
        now = asyncio.get_running_loop().time()
        for waiter in batch.waiters:
            waiter.released = now
        self._scoring += 1
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            live = [waiter for waiter in batch.waiters if not waiter.future.done()]  # done: cancelled
            if live:
                await self._answer(batch, live)
        finally:
            self._scoring -= 1
            if not self._scoring:
                for key in [key for key, batch in self._open.items() if batch.parked]:
                    self._release(key)

    async def _answer(self, batch: _Batch, live: list[_Waiter]) -> None:
        self.on_batch(len(live), sum(len(waiter.records) for waiter in live))
        try:
            outcomes = await self._score(batch.bundle, batch.plan, [r for waiter in live for r in waiter.records])
        except asyncio.CancelledError:
            for waiter in live:
                waiter.future.cancel()
            raise
        except Exception:  # noqa: BLE001 - each request alone, so that only the one that raises fails
            await self._each_alone(batch, live)
            return
        if len(live) == 1:
            live[0].future.done() or live[0].future.set_result(outcomes)
            return
        start = 0
        for waiter in live:
            end = start + len(waiter.records)
            if not waiter.future.done():
                waiter.future.set_result([dataclasses.replace(outcome, entries=outcome.entries[start:end])
                                          for outcome in outcomes])
            start = end

    async def _each_alone(self, batch: _Batch, live: list[_Waiter]) -> None:
        for waiter in live:
            try:
                outcomes = await self._score(batch.bundle, batch.plan, waiter.records)
            except Exception as exc:  # noqa: BLE001 - answered by that request's handler
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
                continue
            if not waiter.future.done():
                waiter.future.set_result(outcomes)
