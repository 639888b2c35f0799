"""Where executions run: this process's threads, or a Dask cluster.

Both pools have the same small shape — `submit(fn, *args)`, `wait_any(futures)`,
`result(future)`, `capacity`, `close()` — so the runner's scheduling loop is
one piece of code. Dask is imported only when a scheduler is given.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable

from ..exceptions import ConfigError

DASK_RETRIES = 1  # a task whose worker died is tried once more elsewhere; then it is marked failed


class ThreadPool:
    """Executions in threads of this process (each papermill execution is its own kernel process)."""

    def __init__(self, workers: int):
        self.capacity = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsm-exec")

    def submit(self, fn: Callable, *args) -> Any:
        return self._pool.submit(fn, *args)

    def wait_any(self, futures) -> set:
        return wait(futures, return_when=FIRST_COMPLETED)[0]

    def result(self, future) -> Any:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


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
        self.capacity = 10**9  # Dask queues and places the tasks itself

    def submit(self, fn: Callable, *args) -> Any:
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
