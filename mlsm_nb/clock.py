"""Timestamps as mlsm-nb records them: UTC, ISO 8601, to the second."""

import datetime as dt


def utc_now() -> str:
    """Now, e.g. "2026-11-22T22:16:35+00:00"."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
