"""mlsm-nb: scoring models as notebooks, run side by side over many records.

The public API is exactly ``__all__``; see docs/ for guides. Names are imported
on first use, so that the code running inside every executed notebook (the
runner's cells) does not pay for what it does not use.
"""

from ._imports import defer_rfc3987_syntax
from ._lazy import lazy_exports
from ._version import __version__

defer_rfc3987_syntax()  # before anything imports jsonschema: see mlsm_nb._imports

_WHERE = {
    "Model": ".core.model",
    "SummaryModel": ".core.model",
    "run_models_all": ".core.scoring",
    "top_reasons": ".core.output",
    "iter_models_all": ".core.scoring",
    "RunModelsAll": ".compat",
    "RunModels": ".compat",
    "SummaryModelListException": ".exceptions",
    "MlsmError": ".exceptions",
    "load_notebook": ".notebook.execute",
    "load_bundle": ".notebook.bundle",
    "read_results": ".store.rundir",
    "tryout": ".widgets",
    "check": ".widgets",
}

__all__ = [*_WHERE, "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
