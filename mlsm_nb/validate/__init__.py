"""`mlsm-nb validate`: lint, nbval, robustness, examples and parity checks, JUnit XML."""

from .._lazy import lazy_exports

_WHERE = {
    "CheckResult": ".checks",
    "validate": ".pipeline",
    "notebook_samples": ".samples",
    "validate_notebook": ".pipeline",
    "write_junit": ".pipeline",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
