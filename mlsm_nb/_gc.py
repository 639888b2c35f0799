"""Python's full garbage collections, deferred while bulk work makes many objects that stay alive.

Reading, receiving or scoring a batch makes hundreds of thousands of objects
(records, entries, result documents) that outlive the work. Each full
collection goes over every object alive, and Python starts one whenever the
objects that survived young collections grow by a quarter: while a batch is
built, several times over. Measured on 50,000 leads, that was about 40 % of
the CPU that scoring the example models takes. `full_collections_deferred`
keeps them for the end of the block (or for every 7 million or so new objects,
in a block that long). Young collections still run, so reference cycles made
and dropped within a few thousand allocations (the usual garbage of a record's
scoring) are freed as before; only longer-lived cycles wait for the full
collection. A process that goes from one block straight into the next (a
worker between tasks) calls `collect_deferred` between them.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import ContextDecorator

SERVING_YOUNG = 10_000  # new objects between young collections in a serve worker (Python's default: 700)
DEFERRED = 1000  # young collections before a full one, instead of Python's 10 (about 7 million new objects)

_LOCK = threading.Lock()
_depth = 0
_restore: tuple[int, ...] = ()


class full_collections_deferred(ContextDecorator):
    """Defer full garbage collections to the end of the block (also a decorator).

    Blocks may nest and run in several threads: the thresholds are set by the
    first to start and restored when the last one ends. A class rather than a
    generator: a block costs about 1 µs instead of 2, and serving a one-record
    request goes through one per model.
    """

    def __enter__(self) -> None:
        global _depth, _restore
        with _LOCK:
            if _depth == 0:
                _restore = gc.get_threshold()
                young, middle, full = _restore
                gc.set_threshold(young, middle, max(full, DEFERRED))
            _depth += 1

    def __exit__(self, *exc_info) -> None:
        global _depth
        with _LOCK:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_restore)


def collect_deferred() -> None:
    """Run the full collection that blocks deferred, if one is due and no block is running."""
    if _depth == 0 and gc.get_count()[2] > gc.get_threshold()[2]:
        gc.collect()


def freeze_survivors() -> None:
    """Collect what is garbage now, then keep every object still alive out of later collections (`gc.freeze`).

    For a long-lived process once its code and data are loaded (a serve worker, the kernel template): a full
    collection then goes over only what was made since, instead of every module, bundle and import too (in
    serve, the collections a busy worker ran made its slowest responses several times its typical one).
    Called again after a change (a bundle swapped), it lets what was frozen before be collected first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def tune_for_serving() -> None:
    """A serve worker's collections, set once it has loaded: young ones every `SERVING_YOUNG` new objects (with
    dozens of requests in flight, Python's 700 moved their objects into the older generations, whose
    collections then ran often), and what was loaded frozen (`freeze_survivors`). Measured with 32 connections
    sending one-record requests: p99 latency 63-150 ms before, about 20 ms after."""
    gc.set_threshold(SERVING_YOUNG, *gc.get_threshold()[1:])
    freeze_survivors()


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # another thread of the parent may have held it as the process forked


os.register_at_fork(after_in_child=_after_fork_in_child)
