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


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # another thread of the parent may have held it as the process forked


os.register_at_fork(after_in_child=_after_fork_in_child)
