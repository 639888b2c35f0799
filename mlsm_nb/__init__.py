"""mlsm-nb: scoring models as notebooks, run side by side over many records.

The public API is exactly ``__all__``; see docs/ for guides.
"""

from ._version import __version__
from .engine import RunModelsAll, iter_models_all, run_models_all
from .exceptions import MlsmError
from .extract import load_bundle, load_notebook
from .model import Model, SummaryModel
from .store.rundir import read_results
from .widgets import check, tryout

__all__ = [
    "Model",
    "SummaryModel",
    "run_models_all",
    "iter_models_all",
    "RunModelsAll",
    "load_notebook",
    "load_bundle",
    "read_results",
    "tryout",
    "check",
    "MlsmError",
    "__version__",
]
