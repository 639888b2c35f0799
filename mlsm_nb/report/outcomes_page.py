"""The report's "Outcomes and drift" page (`outcomes.html`), from the metrics `audit.metrics` computes.

Called by `report.site.write_report`; writes nothing when there is neither an
outcome nor a MongoDB to measure drift in.
"""

from __future__ import annotations

from pathlib import Path

from ..audit.database import AuditDatabase
from ..audit.metrics import champion_vs_challengers, drift
from ..audit.outcomes import outcome_models
from ..core.stats import PSI_THRESHOLD

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
