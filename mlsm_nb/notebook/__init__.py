"""Notebooks as models: the tagged-cell contract and lint, running production cells in this process,
provenance, dependencies between notebooks, writing and reading bundles, scoring in a kernel (parity), `new`."""

from .._lazy import lazy_exports

_WHERE = {
    "NotebookSpec": ".contract",
    "declarations": ".contract",
    "find_notebooks": ".contract",
    "inspect_notebook": ".contract",
    "lint_notebook": ".contract",
    "read_notebook": ".contract",
    "execute_production_cells": ".execute",
    "load_notebook": ".execute",
    "time_limit": ".execute",
    "working_directory": ".execute",
    "git_info": ".provenance",
    "check_dependencies": ".dependencies",
    "missing_models": ".dependencies",
    "extract_bundle": ".extract",
    "MANIFEST": ".bundle",
    "bundle_entries": ".bundle",
    "load_bundle": ".bundle",
    "score_in_kernel": ".parity",
    "new_notebook": ".new",
    "forced_status": ".gitflow",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
