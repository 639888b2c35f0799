"""Prometheus metrics of the scoring service (prometheus_client).

With several worker processes, prometheus_client's multiprocess mode adds up
every worker's counts: `serve` sets PROMETHEUS_MULTIPROC_DIR for the workers
and /metrics reads all of them. The live outcome figures (conversion and AUC
over the last labelled scores, `serve.outcomes`) are gauges computed when
/metrics is read, over every worker's window: a ratio cannot be added up.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..core.model import split_model_key

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# a stage of a one-record request takes tens of microseconds: finer buckets below a millisecond
STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class ServeMetrics:
    """Requests, latency and its stages, records scored and errors by model, version and kind, bundle swaps."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("mlsm_serve_requests", "HTTP requests answered", ["path", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("mlsm_serve_request_seconds", "Time to answer a request", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("mlsm_serve_stage_seconds", "Time a scoring request spent in each stage "
                                "(parse, check, score, serialise; see Server-Timing)", ["path", "stage"],
                                buckets=STAGE_BUCKETS, registry=self.registry)
        self._stage_children: dict[tuple[str, str], Histogram] = {}
        self.records = Counter("mlsm_serve_records", "Records scored, by model", ["model", "version"],
                               registry=self.registry)
        self.errors = Counter("mlsm_serve_record_errors", "Records a model failed on, by error kind",
                              ["model", "version", "kind"], registry=self.registry)
        self.rejected = Counter("mlsm_serve_rejected_records", "Records that could not be scored at all",
                                registry=self.registry)
        self.batch_requests = Histogram("mlsm_serve_batch_requests", "Requests scored together in one batch "
                                        "(adaptive batching)", buckets=BATCH_BUCKETS, registry=self.registry)
        self.bundle_events = Counter("mlsm_serve_bundle_loads", "Bundle loads by outcome (swapped, refused)",
                                     ["outcome"], registry=self.registry)
        self.outcomes = Counter("mlsm_serve_outcomes", "Outcomes posted, by result (accepted, refused, unscored: "
                                "accepted for an id this server did not score, busy: refused while too many "
                                "wait for MongoDB)", ["result"], registry=self.registry)
        self._figures: LiveFigures | None = None

    def show_figures(self, figures) -> None:
        """Expose `figures()` (`LiveOutcomes.figures`) as the live outcome gauges."""
        self._figures = LiveFigures(figures)
        self.registry.register(self._figures)

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(path, method, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_stages(self, path: str, stages: dict[str, float]) -> None:
        """One request's stage durations (seconds), labelled with its route's path template."""
        children = self._stage_children
        for stage, seconds in stages.items():
            child = children.get((path, stage))
            if child is None:  # labels() costs a lock and a lookup: once per (path, stage)
                child = children[path, stage] = self.stages.labels(path, stage)
            child.observe(seconds)

    def observe_scores(self, outcomes, rejected: int) -> None:
        """Count one request's scoring (BatchOutcome per model)."""
        for outcome in outcomes:
            self.records.labels(outcome.model, outcome.version).inc(len(outcome.entries))
            for kind, n in outcome.error_counts().items():
                self.errors.labels(outcome.model, outcome.version, kind).inc(n)
        if rejected:
            self.rejected.inc(rejected)

    def observe_batch(self, requests: int, records: int) -> None:
        """Count one batch released by adaptive batching."""
        self.batch_requests.observe(requests)

    def render(self) -> bytes:
        """The Prometheus text exposition of every worker's metrics."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            if self._figures is not None:
                registry.register(self._figures)
            return generate_latest(registry)
        return generate_latest(self.registry)


class LiveFigures:
    """A collector of the live outcome gauges, per model, version and label, over the rolling window."""

    GAUGES = (("records", "mlsm_serve_outcome_window_records", "Labelled scores in the rolling window"),
              ("conversion", "mlsm_serve_outcome_conversion", "Share of label 1 over the rolling window"),
              ("auc", "mlsm_serve_outcome_auc", "AUC over the rolling window (absent while one class only)"))

    def __init__(self, figures):
        self.figures = figures

    def collect(self):
        gauges = {field: GaugeMetricFamily(name, text, labels=["model", "version", "label"])
                  for field, name, text in self.GAUGES}
        for key, labels in self.figures().items():
            name, version = split_model_key(key)
            for label, figures in labels.items():
                for field, gauge in gauges.items():
                    if figures[field] is not None:
                        gauge.add_metric([name, version, label], figures[field])
        return list(gauges.values())
