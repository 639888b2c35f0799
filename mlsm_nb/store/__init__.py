"""Where a run's state and results go: the run directory and its manifest (always), the `ResultSink`
interface and MongoDB (when configured), the model registry."""

from .._lazy import lazy_exports

_WHERE = {
    "ResultSink": ".base",
    "StoreError": ".base",
    "check_approvals": ".base",
    "store_as_run": ".base",
    "Manifest": ".manifest",
    "RunStatus": ".manifest",
    "ExecutionStatus": ".manifest",
    "BatchState": ".manifest",
    "load_manifest": ".manifest",
    "save_manifest": ".manifest",
    "RunDirectory": ".rundir",
    "read_results": ".rundir",
    "MongoStore": ".mongo",
    "ModelRegistry": ".registry",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
