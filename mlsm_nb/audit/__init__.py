"""Audit: trace a score to what made it, replay a run, outcomes and model metrics, monitoring, comparisons,
approvals."""

from .._lazy import lazy_exports

_WHERE = {
    "trace_record": ".trace",
    "format_trace": ".trace",
    "TraceError": ".trace",
    "replay_run": ".replay",
    "format_replay": ".replay",
    "ReplayRefused": ".replay",
    "attach_outcomes": ".outcomes",
    "read_outcomes": ".outcomes",
    "OutcomeError": ".outcomes",
    "approve": ".approvals",
    "set_approvals_required": ".approvals",
    "ApprovalError": ".approvals",
    "monitor_run": ".monitor",
    "read_monitor": ".monitor",
    "load_thresholds": ".monitor",
    "MonitorError": ".monitor",
    "ThresholdsError": ".monitor",
    "set_evidence_required": ".approvals",
    "compare_models": ".evidence",
    "format_evidence": ".evidence",
    "Thresholds": ".evidence",
    "CompareError": ".evidence",
    "AuditDatabase": ".database",
    "open_database": ".database",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
