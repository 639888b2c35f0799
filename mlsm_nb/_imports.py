"""A third-party import deferred, because loading it costs every process over a second.

jsonschema (which nbformat imports, so every command that reads a notebook, the
nbval subprocesses of `validate` and Dask workers) imports `rfc3987_syntax` when
it is installed, as JupyterLab's `jupyter_events` makes it. That module compiles
some 35 Earley parsers as it loads: 1.2 to 1.8 s of CPU per process, before any work
(python-jsonschema/jsonschema#1428). jsonschema calls it only to check the
`iri` and `iri-reference` formats, which no notebook schema uses.

`defer_rfc3987_syntax` puts a stand-in module in its place. The stand-in loads
the real module the first time it is used, and from then on it answers like
the real module. It does nothing if the module is not installed or is already
loaded.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types

SLOW = "rfc3987_syntax"
_LOCK = threading.Lock()


def defer_rfc3987_syntax() -> None:
    """Put a stand-in for `rfc3987_syntax` in `sys.modules` that imports the real module on first use."""
    if SLOW in sys.modules or importlib.util.find_spec(SLOW) is None:
        return
    stand_in = types.ModuleType(SLOW, "Stands in for rfc3987_syntax until first use (see mlsm_nb._imports).")

    def real() -> types.ModuleType:
        with _LOCK:
            if sys.modules.get(SLOW) is stand_in:
                del sys.modules[SLOW]
            return importlib.import_module(SLOW)

    def is_valid_syntax(*args, **kwargs):  # the one name jsonschema imports from it
        return real().is_valid_syntax(*args, **kwargs)

    def other_name(name: str):
        if name.startswith("__"):  # e.g. `from ... import` asks for __path__: the stand-in is no package
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.is_valid_syntax = is_valid_syntax
    stand_in.__getattr__ = other_name
    sys.modules[SLOW] = stand_in
