"""Timestamps as mlsm-nb records them: UTC, ISO 8601; to the second, and a run's start to the microsecond."""

import datetime as dt
import threading

_last_start = dt.datetime.min.replace(tzinfo=dt.UTC)
_start_lock = threading.Lock()


def utc_now() -> str:
    """Now, e.g. "2026-11-22T22:16:35+00:00"."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_start() -> str:
    """Now to the microsecond (e.g. "2026-11-22T22:16:35.081514+00:00"), later than any start this process
    handed out before: a run's place in run order, so of two runs started in one second the later is newer."""
    global _last_start
    with _start_lock:
        _last_start = max(dt.datetime.now(dt.UTC), _last_start + dt.timedelta(microseconds=1))
        return _last_start.isoformat(timespec="microseconds")
