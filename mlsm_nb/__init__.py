"""mlsm-nb: scoring models as notebooks, run side by side over many records.

The public API is exactly ``__all__``; see docs/ for guides. Names are imported
on first use, so that the code running inside every executed notebook (the
runner's cells) does not pay for what it does not use.
"""

from importlib import import_module

from ._version import __version__

_WHERE = {
    "Model": ".model",
    "SummaryModel": ".model",
    "run_models_all": ".engine",
    "iter_models_all": ".engine",
    "RunModelsAll": ".engine",
    "MlsmError": ".exceptions",
    "load_notebook": ".extract",
    "load_bundle": ".extract",
    "read_results": ".store.rundir",
    "tryout": ".widgets",
    "check": ".widgets",
}

__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlsm_nb' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
