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

RUNNING = "running"
SUCCEEDED = "succeeded"
SUCCEEDED_WITH_ERRORS = "succeeded with errors"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (RUNNING, SUCCEEDED, SUCCEEDED_WITH_ERRORS, FAILED, INTERRUPTED)


def judge(manifest: Mapping, max_error_rate: float) -> tuple[str, dict]:
    """(status, verdict) of a run whose executions are all done; `manifest["models"]` holds the tallies."""
    models = manifest.get("models", {})
    over = sorted((k for k, m in models.items() if m["error_rate"] > max_error_rate),
                  key=lambda k: -models[k]["error_rate"])
    with_errors = sorted((k for k, m in models.items() if sum(m["errors"].values())),
                         key=lambda k: -models[k]["error_rate"])
    data = manifest["input"]
    lines = data["records"] + data["rejected"]
    rejected_rate = data["rejected"] / lines if lines else 0.0
    verdict = {"max_error_rate": max_error_rate, "models_over": over, "models_with_errors": with_errors,
               "rejected_rate": round(rejected_rate, 6), "rejected_over": rejected_rate > max_error_rate,
               "no_records": data["records"] == 0, "failed_executions": manifest.get("failed_executions", 0),
               "failed_merges": len(manifest.get("merge_errors", {})), "input_cut_short": data.get("cut_short")}
    failed = (over or verdict["rejected_over"] or verdict["no_records"] or verdict["failed_executions"]
              or verdict["failed_merges"] or verdict["input_cut_short"] or manifest.get("store_error"))
    if failed:
        return FAILED, verdict
    if with_errors or data["rejected"]:
        return SUCCEEDED_WITH_ERRORS, verdict
    return SUCCEEDED, verdict


def merge_errors(manifest: Mapping) -> list[str]:
    """Why batches could not be merged (the manifest's `merge_errors`), in batch order."""
    errors = manifest.get("merge_errors") or {}
    return [errors[batch] for batch in sorted(errors, key=int)]


def exit_code(status: str) -> int:
    """0 for a run that succeeded (with or without errors), 130 interrupted, 1 otherwise."""
    if status in (SUCCEEDED, SUCCEEDED_WITH_ERRORS):
        return 0
    return 130 if status == INTERRUPTED else 1
