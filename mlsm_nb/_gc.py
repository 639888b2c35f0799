"""Python's full garbage collections, deferred while bulk work makes many objects that stay alive.

Reading, receiving or scoring a batch makes hundreds of thousands of objects
(records, entries, result documents) that outlive the work. The cyclic garbage
collector's full collections go over every object alive, and the more objects
survive, the more often they run: measured on 50,000 leads, about 40 % of the
CPU that scoring the example models takes. `full_collections_deferred` keeps
them for the end of the block (or for every 7 million or so new objects, in a
block that long). Young collections still run, so reference cycles a model
drops (which pausing the collector would keep until the block ends) are freed
as they would be: deferring costs no memory.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

DEFERRED = 1000  # young collections before a full one, instead of Python's 10 (about 7 million new objects)

_LOCK = threading.Lock()
_depth = 0
_restore: tuple[int, ...] = ()


@contextmanager
def full_collections_deferred():
    """Defer full garbage collections to the end of the block (also a decorator).

    Blocks may nest and run in several threads: the thresholds are set by the
    first to start and restored when the last one ends.
    """
    global _depth, _restore
    with _LOCK:
        if _depth == 0:
            _restore = gc.get_threshold()
            young, middle, full = _restore
            gc.set_threshold(young, middle, max(full, DEFERRED))
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_restore)
