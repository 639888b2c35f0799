"""Where work runs: this process's threads, worker processes, or a Dask cluster.

The pools have the same small shape — `submit(fn, *args, timeout=None)`,
`wait_any(futures)`, `result(future)`, `capacity` (work to keep in flight),
`close()` — so the run's one scheduling loop (`run.schedule`) drives any of
them. Dask is imported only when a scheduler is given.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from multiprocessing import connection
from typing import Any

from .._gc import collect_deferred, full_collections_deferred
from ..core.timelimit import Board, Stuck
from ..exceptions import ConfigError

DASK_RETRIES = 1  # a task whose worker died is tried once more elsewhere; then it is marked failed
STUCK_POLL = 0.25  # seconds between two looks at busy workers' boards (a record stuck where no interrupt reaches)
WORKER_BOARD: Board | None = None  # in a worker process: the board its runner reads (see `worker_board`)


class ThreadPool:
    """Work in threads of this process (each papermill execution talks to its own kernel process).

    `teardown`, when given, runs in each of the pool's threads as it stops (after `close`, once its
    current task is done, even when cancelled): what a thread kept, e.g. its warm kernels, is
    released by the thread that used it.
    """

    _names = itertools.count()

    def __init__(self, workers: int, teardown: Callable[[], None] | None = None):
        self.capacity = workers
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._teardown = teardown
        # Unique names: jupyter_core keys the event loop it runs kernels on by thread name.
        self._threads = [threading.Thread(target=self._serve, name=f"mlsm-exec-{next(self._names)}")
                         for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        try:
            while (task := self._tasks.get()) is not None:
                future, fn, args = task
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - the runner decides what a failure means
                        future.set_exception(exc)
        finally:
            if self._teardown:
                self._teardown()

    def submit(self, fn: Callable, *args, timeout: float | None = None) -> Future:
        future: Future = Future()  # the kernel enforces papermill's timeout
        self._tasks.put((future, fn, args))
        return future

    def wait_any(self, futures) -> set:
        return wait(futures, return_when=FIRST_COMPLETED)[0]

    def result(self, future) -> Any:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        """Stop the threads when their queued tasks are done; when `cancel`, drop the queued tasks and
        return at once (running tasks finish in their threads)."""
        if cancel:
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        if not cancel:
            for thread in self._threads:
                thread.join()


class TaskLost(Exception):
    """A task's worker process exited (with any code), crashed, overran the task's timeout, or was stopped
    because a record it scored was stuck where no interrupt reached it (`stuck`, see `core.timelimit`)."""

    def __init__(self, exitcode: int | None = None, timeout: float | None = None, stuck: Stuck | None = None):
        self.exitcode, self.timeout, self.stuck = exitcode, timeout, stuck
        super().__init__(f"timed out after {timeout:g} s" if timeout is not None else
                         f"a record stuck for {stuck.seconds:.3g} s" if stuck is not None else f"exit code {exitcode}")


def worker_board() -> Board:
    """The board a scoring loop in this process writes on: in a worker process of a `ProcessPool`, the one
    its runner reads (so that a record stuck where no interrupt reaches it costs the worker, found from
    outside); elsewhere a board of its own."""
    return WORKER_BOARD if WORKER_BOARD is not None else Board()


def _die_with_the_runner(runner: int) -> None:
    """A worker is killed when the runner dies (Linux), so a model's loop cannot outlive a killed run."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != runner:  # the runner died before the line above
        os._exit(1)


def _serve(conn, runner: int, board: Board) -> None:
    """A worker process: run the tasks it is sent, one at a time, until the runner closes the pipe."""
    global WORKER_BOARD
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle: it stops the workers
    _die_with_the_runner(runner)
    WORKER_BOARD = board
    while _serve_one(conn):
        collect_deferred()  # the task's objects are gone: the full collection it deferred is cheap now


@full_collections_deferred()  # see mlsm_nb._gc: a batch's records arrive, are scored and are let go together
def _serve_one(conn) -> bool:
    """Receive a task, run it and send its reply back; False when the runner is done with this worker."""
    try:
        task = conn.recv()
    except (EOFError, OSError):
        return False
    if task is None:  # the runner is done with this worker
        return False
    fn, args = task
    try:
        reply = (True, fn(*args))
    except BaseException as exc:  # noqa: BLE001 - the runner decides what a failure means
        reply = (False, exc)
    try:
        conn.send(reply)
    except Exception as exc:  # noqa: BLE001 - e.g. an exception that does not pickle
        conn.send((False, RuntimeError(f"the task's {'result' if reply[0] else 'error'} could not be sent "
                                       f"back: {type(exc).__name__}: {exc}")))
    return True


class _Worker:
    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.board = Board.shared()  # made before the fork: the worker writes it, the pool reads it
        self.process = context.Process(target=_serve, args=(child, os.getpid(), self.board), daemon=True,
                                       name="mlsm-worker")
        self.process.start()
        child.close()
        self.future: Future | None = None
        self.deadline: float | None = None
        self.timeout: float | None = None

    def stop(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.join()
        self.board.close()


class ProcessPool:
    """Work in worker processes of this machine, one task each at a time.

    A task whose worker exits (with any code, even 0: `os._exit`), crashes, overruns its `timeout` or
    has a record stuck where no interrupt reaches it (its board says so: `core.timelimit`) is lost: its
    future raises `TaskLost`, the worker is killed and replaced, and the other tasks go on. (pebble's
    pool, tried first, never completes a task whose worker exits with code 0, and concurrent.futures'
    breaks the whole pool on any worker's death.) The pool is driven from one thread: `wait_any` hands
    queued tasks to idle workers and collects replies.
    """

    def __init__(self, workers: int):
        self.capacity = workers + 1  # one task queued while the workers are busy: they never wait for the reader
        self._context = multiprocessing.get_context()
        self._size = workers
        self._workers: list[_Worker] = []
        self._queue: deque = deque()

    def submit(self, fn: Callable, *args, timeout: float | None = None) -> Future:
        future: Future = Future()
        self._queue.append((future, fn, args, timeout))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._queue:
            idle = next((w for w in self._workers if w.future is None), None)
            if idle is None:
                if len(self._workers) == self._size:
                    return
                idle = _Worker(self._context)
                self._workers.append(idle)
            future, fn, args, timeout = self._queue.popleft()
            try:
                idle.conn.send((fn, args))
            except (OSError, ValueError):  # the worker died while idle: replace it, try again
                self._replace(idle)
                self._queue.appendleft((future, fn, args, timeout))
                continue
            idle.future, idle.timeout = future, timeout
            idle.deadline = time.monotonic() + timeout if timeout else None

    def _replace(self, worker: _Worker) -> None:
        worker.stop()
        self._workers.remove(worker)

    def _lose(self, worker: _Worker, error: TaskLost) -> None:
        future = worker.future
        self._replace(worker)
        future.set_exception(error)

    def wait_any(self, futures) -> set:
        while True:
            self._dispatch()
            done = {f for f in futures if f.done()}
            if done:
                return done
            busy = [w for w in self._workers if w.future is not None]
            deadlines = [w.deadline for w in busy if w.deadline is not None]
            wait_for = min(STUCK_POLL, max(0.0, min(deadlines) - time.monotonic())) if deadlines else STUCK_POLL
            ready = set(connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_for))
            for worker in busy:
                if worker.conn in ready:
                    try:
                        with full_collections_deferred():  # a batch's result documents, for other sinks
                            ok, value = worker.conn.recv()
                    except (EOFError, OSError):  # died mid-reply
                        worker.process.join()
                        self._lose(worker, TaskLost(exitcode=worker.process.exitcode))
                        continue
                    future, worker.future = worker.future, None
                    future.set_result(value) if ok else future.set_exception(value)
                elif worker.process.sentinel in ready:
                    worker.process.join()
                    self._lose(worker, TaskLost(exitcode=worker.process.exitcode))
                elif worker.deadline is not None and time.monotonic() >= worker.deadline:
                    self._lose(worker, TaskLost(timeout=worker.timeout))
                elif (stuck := worker.board.stuck()) is not None:
                    self._lose(worker, TaskLost(stuck=stuck))

    def result(self, future) -> Any:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        """Stop the workers: at once when `cancel` (a hung model does not outlive the run), else when idle."""
        for future, *_ in self._queue:
            future.cancel()
        self._queue.clear()
        for worker in self._workers:
            if cancel:
                worker.stop()
            else:
                # A message, not the pipe's end: workers forked later hold copies of this end of the pipe.
                worker.conn.send(None)
                worker.process.join()
                worker.conn.close()
        self._workers.clear()


class DaskPool:
    """Executions as Dask tasks: `local:N` starts a LocalCluster of N worker processes,
    anything else is a scheduler address (e.g. tcp://scheduler:8786)."""

    def __init__(self, scheduler: str):
        # Dask logs every worker start and stop at INFO on stderr; keep warnings and errors only.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--scheduler needs Dask distributed: pip install 'mlsm-nb[dask]'") from None
        self._cluster = None
        if scheduler.startswith("local:"):
            import dask

            # One task per worker thread at a time: a task that kills its worker then takes no
            # innocent task queued on that worker down with it (those would count the death too).
            dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
            try:
                workers = int(scheduler.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--scheduler {scheduler!r}: use local:N with N worker processes") from None
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(scheduler, timeout=30)
            except OSError as exc:
                raise ConfigError(f"Dask scheduler {scheduler} is not reachable: {exc}") from None
        # Enough tasks to keep every worker thread busy, and no more: each may hold a batch of records.
        self.capacity = max(2, 2 * sum(self.client.nthreads().values()))

    def submit(self, fn: Callable, *args, timeout: float | None = None) -> Any:  # Dask has no task timeout
        return self.client.submit(fn, *args, pure=False, retries=DASK_RETRIES)

    def wait_any(self, futures) -> set:
        from distributed import wait as dask_wait

        return set(dask_wait(list(futures), return_when="FIRST_COMPLETED").done)

    def result(self, future) -> Any:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
