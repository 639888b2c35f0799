"""`mlsm-nb report`: a run's report data and its static HTML site, with the audit's outcomes page."""

from .._lazy import lazy_exports

_WHERE = {
    "build_run_report": ".data",
    "compare_runs": ".data",
    "write_report": ".site",
    "write_outcomes_page": ".outcomes_page",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
