"""Where results go: the `ResultSink` interface, the run directory (always) and MongoDB (when configured)."""

from .._lazy import lazy_exports

_WHERE = {
    "ResultSink": ".base",
    "StoreError": ".base",
    "store_as_run": ".base",
    "RunDirectory": ".rundir",
    "read_results": ".rundir",
    "MongoStore": ".mongo",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
