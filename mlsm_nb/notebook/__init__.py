"""Notebooks as models: the tagged-cell contract and lint, extraction to Model objects and bundles, `new`."""

from .._lazy import lazy_exports

_WHERE = {
    "NotebookSpec": ".contract",
    "find_notebooks": ".contract",
    "inspect_notebook": ".contract",
    "lint_notebook": ".contract",
    "read_notebook": ".contract",
    "load_notebook": ".extract",
    "load_bundle": ".extract",
    "extract_bundle": ".extract",
    "new_notebook": ".new",
    "forced_status": ".gitflow",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
