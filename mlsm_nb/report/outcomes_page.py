"""The report's "Outcomes and drift" page (`outcomes.html`), from the metrics `audit.metrics` computes.

Called by `report.site.write_report`; writes nothing when there is neither an
outcome nor a MongoDB to measure drift in.
"""

from __future__ import annotations

from pathlib import Path

from ..audit.database import AuditDatabase
from ..audit.metrics import champion_vs_challengers, drift, join_outcomes
from ..audit.outcomes import run_outcomes
from ..core.model import model_key
from ..core.stats import PSI_THRESHOLD
from ..store.rundir import RunDirectory

DRIFT_RUNS = 10
PAGE = "outcomes.html"


def _drift_chart(rows: list[dict], path: Path, threshold: float) -> None:
    from .charts import figure, to_png

    fig, ax = figure(8, 3.2)
    for row in rows:
        ax.plot([r["run_id"][-14:] for r in row["runs"]], [r["psi"] or 0 for r in row["runs"]], marker="o",
                label=row["model"])
    ax.axhline(threshold, color="#cf222e", linestyle="--", label=f"threshold {threshold}")
    ax.set_ylabel("PSI vs oldest run")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    path.write_bytes(to_png(fig))


def outcome_models(run_dir: str | Path, database: AuditDatabase | None = None) -> dict:
    """Model versions paired with outcomes: from MongoDB when given (every stored run, newest score
    per id), else from the run directory and its `outcomes.jsonl`."""
    run = RunDirectory(run_dir)
    manifest = run.read_manifest()
    kinds = {model_key(n.name, n.version): n.kind or "model" for n in manifest.notebooks}
    if database is None:
        outcomes = run_outcomes(run.root)
        return join_outcomes(run.results(), outcomes, manifest.id_field, kinds) if outcomes else {}
    outcomes = database.all_outcomes()
    documents = database.results_for([o[database.id_field] for o in outcomes]) if outcomes else []
    return join_outcomes(documents, outcomes, database.id_field, kinds)


def write_outcomes_page(report, out: Path, site, database: AuditDatabase | None = None,
                        drift_runs: int = DRIFT_RUNS, threshold: float = PSI_THRESHOLD) -> str | None:
    """Write `outcomes.html` with `site` (the report's page writer) into the report folder `out`; returns its
    name, or None when there is nothing to show."""
    models = outcome_models(report.run_dir, database)
    drift_rows, chart = [], None
    if database is not None:
        runs = database.recent_runs(drift_runs)
        drift_rows = drift(runs, database.scores_of_runs([r["_id"] for r in runs]), threshold)
        if drift_rows:
            _drift_chart(drift_rows, out / "img" / "drift.png", threshold)
            chart = "img/drift.png"
    if not models and not drift_rows:
        return None
    site.write(PAGE, PAGE, models={k: (m, m.metrics()) for k, m in models.items()},
        challengers=champion_vs_challengers(models), drift=drift_rows, chart=chart, threshold=threshold,
        drift_runs=drift_runs, source="MongoDB" if database is not None else "this run directory")
    return PAGE
