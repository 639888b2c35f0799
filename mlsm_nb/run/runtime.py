"""What the runner's cells call inside an executed notebook: score the batch, show a summary.

Kept in the library (not pasted into cells) so the executed notebook stays
short to read and the papermill engine runs the very code the in-process
engine runs.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping

from .._gc import full_collections_deferred
from ..core.batch import BatchOutcome, score_batch
from ..files import read_jsonl, write_jsonl
from ..core.model import Model, build_model
from ..store.rundir import split_model_key

SAMPLE_SIZE = 5


def model_from_namespace(namespace: Mapping, status: str | None = None, declared: Mapping | None = None) -> Model:
    """The Model or SummaryModel that a notebook's executed production cells define.

    `declared` (name, version, status, kind, fields, models: the literals lint read, as the in-process
    engine uses them) wins over the namespace, where a later cell may have rebound those names;
    without it (authoring, runs of earlier versions) the namespace's values are used.
    """
    if declared is None:
        summary = isinstance(namespace.get("models"), list)
        declared = {"name": namespace["name"], "version": namespace["version"], "status": namespace["status"],
                    "kind": "summary" if summary else "model", "fields": namespace.get("fields"),
                    "models": namespace.get("models")}
    return build_model({**declared, "status": status or declared["status"]}, namespace, {})


def load_dependencies(paths: Mapping[str, str]) -> dict[tuple[str, str], list[dict]]:
    """Entries of the models a summary needs, from their output files ("name@version" -> path)."""
    loaded = {}
    for key, path in paths.items():
        loaded[split_model_key(key)] = list(read_jsonl(Path(path)))
    return loaded


@full_collections_deferred()  # see mlsm_nb._gc
def score_file_batch(model: Model, batch_path: str, output_path: str,
                     dependencies: Mapping[str, str] | None = None) -> BatchOutcome:
    """Read a batch file, score it, write the entries (one JSON line per record, batch order)."""
    records = list(read_jsonl(Path(batch_path)))
    outcome = score_batch(model, records, load_dependencies(dependencies or {}))
    write_jsonl(Path(output_path), outcome.entries)
    return outcome


def run_in_notebook(namespace: Mapping, batch_path: str, output_path: str,
                    dependencies: Mapping[str, str] | None = None, status: str | None = None,
                    declared: Mapping | None = None) -> "BatchSummary":
    """The runner cell: score this notebook's model over the batch and keep a summary."""
    model = model_from_namespace(namespace, status, declared)
    return BatchSummary(score_file_batch(model, batch_path, output_path, dependencies))


class BatchSummary:
    """A reader's view of one scored batch: counts, errors by kind, score distribution, sample."""

    def __init__(self, outcome: BatchOutcome):
        self.outcome = outcome

    def scores(self) -> list[float]:
        return [e["score"] for e in self.outcome.entries
                if isinstance(e.get("score"), (int, float)) and not isinstance(e.get("score"), bool)]

    def show(self) -> None:
        """Display the summary (tables and a histogram) in the notebook."""
        import pandas as pd
        from IPython.display import Markdown, display

        outcome = self.outcome
        errors = outcome.error_counts()
        display(Markdown(
            f"### {outcome.model} {outcome.version}: {len(outcome.entries)} records, "
            f"{sum(errors.values())} errors (scored with `{outcome.method}`)"
            + "".join(f"\n\n> {note}" for note in outcome.notes)))
        if errors:
            display(pd.DataFrame(sorted(errors.items()), columns=["error kind", "records"]))
        scores = self.scores()
        if scores:
            display(pd.Series(scores, name="score").describe().to_frame().T.round(4))
            self._histogram(scores)
        sample = [e for e in outcome.entries[:SAMPLE_SIZE]]
        display(pd.DataFrame(sample))

    @staticmethod
    def _histogram(scores: list[float]) -> None:
        import base64

        from IPython.display import display

        from ..report.charts import score_histogram

        encoded = base64.b64encode(score_histogram(scores)).decode()
        # PNG for notebook viewers, and HTML with alt text for readers and nbconvert.
        display({"image/png": encoded,
                 "text/html": f'<img alt="histogram of the batch\'s scores" src="data:image/png;base64,{encoded}">'},
                raw=True)
