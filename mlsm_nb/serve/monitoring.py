"""What `mlsm-nb monitor` last found, as Prometheus gauges on /metrics, for alert rules.

The finding is read from a run directory's `monitor.json` (`serve --monitor
PATH`), else from MongoDB's `monitor` collection (with `--mongo-uri`), at most
once every `REFRESH_SECONDS`; a read that fails keeps the last finding (and is
logged). The gauges are built afresh from it on each scrape, in their own
registry: they are the same in every worker, so they are not added up across
workers as the counters are.

    mlsm_monitor_value{model, version, check}      the checked figure (none when not checked)
    mlsm_monitor_threshold{model, version, check}  the limit it is held to
    mlsm_monitor_breach{model, version, check}     1 when the threshold is passed, else 0
    mlsm_monitor_checked{model, version, check}    1 when checked, 0 when it lacked data
    mlsm_monitor_timestamp_seconds                 when monitor ran (alert when it is old)
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..audit.monitor import MONITOR_FILE, read_monitor

log = logging.getLogger(__name__)
REFRESH_SECONDS = 10.0
LABELS = ["model", "version", "check"]


def monitor_reader(path: str | None, mongo_uri: str | None, mongo_db: str | None) -> Callable[[], dict | None] | None:
    """How to read the latest finding: from `path` (a run directory or its monitor.json), else from MongoDB;
    None when there is neither."""
    if path:
        folder = Path(path).parent if Path(path).name == MONITOR_FILE else Path(path)
        return lambda: read_monitor(folder)
    if mongo_uri:
        database = []  # connected at the first read, in a worker thread, never at start-up

        def read() -> dict | None:
            if not database:
                from ..audit.database import AuditDatabase
                from ..store.mongo import MongoStore

                database.append(AuditDatabase(MongoStore.connect(mongo_uri, mongo_db, retries=1)))
            return read_monitor(database=database[0])

        return read
    return None


class MonitorGauges:
    """The latest monitor finding, refreshed when older than `every` seconds, rendered as gauges."""

    def __init__(self, read: Callable[[], dict | None], every: float = REFRESH_SECONDS):
        self.read, self.every = read, every
        self.found: dict | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the finding again when the last read is older than `every` (blocking: call it in a thread)."""
        with self._lock:
            if time.monotonic() - self._read_at < self.every:
                return
            self._read_at = time.monotonic()
            try:
                self.found = self.read() or self.found
            except Exception as exc:  # a file being replaced, MongoDB away: keep what was read last
                log.warning("monitor findings not read (keeping the last ones): %s", str(exc).splitlines()[0])

    def collect(self):
        found = self.found
        if not found:
            return
        families = {name: GaugeMetricFamily(f"mlsm_monitor_{name}", text, labels=LABELS) for name, text in (
            ("value", "The figure mlsm-nb monitor checked (error_rate, psi, auc, conversion)"),
            ("threshold", "The limit mlsm-nb monitor holds the figure to"),
            ("breach", "1 when the figure passed its threshold"),
            ("checked", "1 when the check was made, 0 when it lacked data"))}
        for model in found.get("models", []):
            for check in model["checks"]:
                labels = [model["model"], model["version"], check["check"]]
                for name in ("value", "threshold"):
                    if check.get(name) is not None:
                        families[name].add_metric(labels, check[name])
                families["breach"].add_metric(labels, float(check["status"] == "breach"))
                families["checked"].add_metric(labels, float(check["status"] != "not checked"))
        yield from families.values()
        moment = dt.datetime.fromisoformat(found["checked_at"])
        yield GaugeMetricFamily("mlsm_monitor_timestamp_seconds", "When mlsm-nb monitor last ran (Unix time)",
                                value=moment.timestamp())

    def render(self) -> bytes:
        registry = CollectorRegistry()
        registry.register(self)
        return generate_latest(registry)
