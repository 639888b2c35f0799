"""Kept so that executed notebooks of earlier runs, whose runner cell imports
`mlsm_nb.runtime`, still run; new runs import `mlsm_nb.run.runtime`."""

from .run.runtime import BatchSummary, model_from_namespace, run_in_notebook, score_file_batch

__all__ = ["BatchSummary", "model_from_namespace", "run_in_notebook", "score_file_batch"]
