"""A finished run's verdict: `succeeded`, `succeeded with errors` or `failed`.

The run fails when an execution failed, a batch's results could not be
merged, a sink could not store them, the records file breaks off (a cut-short
compressed file: records were lost), or a model's share of records with
errors (or the share of input lines rejected) is over `max_error_rate`.
Errors within the threshold give "succeeded with errors", and the models
that had them are listed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..store.manifest import Manifest, RunStatus, Verdict

# The statuses by the names the run path imports them under (one enum: `store.manifest.RunStatus`).
RUNNING, FAILED, INTERRUPTED = RunStatus.RUNNING, RunStatus.FAILED, RunStatus.INTERRUPTED


def judge(manifest: Manifest | Mapping, max_error_rate: float) -> tuple[RunStatus, dict]:
    """(status, verdict) of a run whose executions are all done; `manifest.models` holds the tallies.
    The verdict comes as its JSON form (`Verdict.to_dict()`), as the manifest holds it."""
    manifest = Manifest.of(manifest)
    models = manifest.models
    over = sorted((k for k, m in models.items() if m["error_rate"] > max_error_rate),
                  key=lambda k: -models[k]["error_rate"])
    with_errors = sorted((k for k, m in models.items() if sum(m["errors"].values())),
                         key=lambda k: -models[k]["error_rate"])
    data = manifest.input
    lines = data.records + data.rejected
    rejected_rate = data.rejected / lines if lines else 0.0
    verdict = Verdict(max_error_rate, over, with_errors, round(rejected_rate, 6), rejected_rate > max_error_rate,
                      no_records=data.records == 0, failed_executions=manifest.failed_executions or 0,
                      failed_merges=len(manifest.merge_errors), input_cut_short=data.cut_short)
    failed = (over or verdict.rejected_over or verdict.no_records or verdict.failed_executions
              or verdict.failed_merges or verdict.input_cut_short or manifest.store_error)
    if failed:
        return RunStatus.FAILED, verdict.to_dict()
    if with_errors or data.rejected:
        return RunStatus.SUCCEEDED_WITH_ERRORS, verdict.to_dict()
    return RunStatus.SUCCEEDED, verdict.to_dict()


def exit_code(status: str) -> int:
    """0 for a run that succeeded (with or without errors), 130 interrupted, 1 otherwise."""
    status = RunStatus(status)
    if status.succeeded:
        return 0
    return 130 if status is RunStatus.INTERRUPTED else 1
