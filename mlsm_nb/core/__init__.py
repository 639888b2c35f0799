"""The scoring core: field specs, Model and SummaryModel, scoring many records, scoring a batch.

No files, notebooks, kernels or stores here: everything else builds on this.
"""

from .._lazy import lazy_exports

_WHERE = {
    "FieldSpec": ".fields",
    "parse_fields": ".fields",
    "generate_inputs": ".fields",
    "Model": ".model",
    "SummaryModel": ".model",
    "error_entry": ".output",
    "build_model": ".model",
    "run_models_all": ".scoring",
    "iter_models_all": ".scoring",
    "plan_run": ".scoring",
    "score_batch": ".batch",
    "BatchOutcome": ".batch",
    "record_problem": ".records",
    "output_problem": ".output",
    "sample_inputs": ".samples",
    "sample_records": ".samples",
    "stored_entry": ".output",
    "reasons_problem": ".output",
    "top_reasons": ".output",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
