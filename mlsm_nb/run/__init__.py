"""`mlsm-nb run`: read records into batches, execute the notebooks (papermill or in-process), merge, store."""

from .._lazy import lazy_exports

_WHERE = {
    "run_notebooks": ".orchestrate",
    "RunSettings": ".settings",
    "ExecutionDone": ".progress",
    "register": ".engines",
    "unregister": ".engines",
    "get_engine": ".engines",
    "Engine": ".engines",
    "FileEngine": ".engines",
    "InMemoryEngine": ".engines",
    "RunContext": ".context",
    "list_parameters": ".parameters",
    "read_records": ".records",
    "Rejected": "..core.records",
    "declared_types": ".records",
    "InputFileError": ".records",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
