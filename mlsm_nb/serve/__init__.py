"""The scoring service: extracted models over HTTP, hot-swapped bundles, metrics, a live page."""

from .._lazy import lazy_exports

_WHERE = {
    "ServeSettings": ".app",
    "create_app": ".app",
    "serve": ".server",
    "ServedBundle": ".bundle",
    "load_served_bundle": ".bundle",
    "BundleSwitch": ".swap",
    "ResultBuffer": ".storage",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
