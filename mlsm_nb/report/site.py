"""`mlsm-nb report`: a static, self-contained HTML site of a run for reviewers.

Pages are Jinja2 templates with autoescaping on (every value from records or
notebooks is HTML-escaped). The site works where Jenkins publishes it, under
Jenkins' default Content-Security-Policy: one linked stylesheet, plots as PNG
files beside the pages, no script, no inline style, no `data:` URI. Executed
and production notebooks, and the training cells of the notebook the author
saved, are rendered into the site (see `notebook_html`), so
nothing links outside the report folder, and no page shows this machine's
absolute paths (see `paths`).
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import nbformat

from ..core.stats import PSI_THRESHOLD
from ..exceptions import cell_ref
from ..histogram import score_histogram
from ..store.rundir import RunDirectory
from .data import RunReport, batch_sample, build_run_report, compare_runs
from .notebook_html import ANSI, render_notebook, training_notebook
from .paths import PathScrubber

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STYLESHEET = HERE / "static" / "report.css"


def slug(key: str) -> str:
    """A file name for a model key such as `lead_rules@1.0.0`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.globals["slug"] = slug
    return env


def _write_stylesheet(out: Path) -> None:
    from pygments.formatters import HtmlFormatter

    highlight = HtmlFormatter(style="default").get_style_defs(".highlight")
    (out / "report.css").write_text(STYLESHEET.read_text() + highlight + "\n", encoding="utf-8")


def _failure(source: Path, error: str) -> dict:
    """The failing cell (named as in the author's notebook, or the runner's) and its traceback, for the top of
    a failed execution's page."""
    for cell in nbformat.read(source, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
                origin = cell.metadata.get("mlsm", {})
                where = (cell_ref(origin["source_cell"], origin.get("tag")) + " of the notebook"
                         if "source_cell" in origin else "a cell the runner added")
                return {"error": error, "cell": cell.source, "where": where, "traceback": trace}
    return {"error": error}


def _kernel_log(run_dir: Path, execution: dict, lines: int = 200) -> dict | None:
    """The last lines of what the execution's kernel printed itself, if it printed anything."""
    path = run_dir / execution["kernel_log"] if execution.get("kernel_log") else None
    if path is None or not path.is_file():
        return None
    text = path.read_text(errors="replace").splitlines()
    return {"path": execution["kernel_log"], "text": "\n".join(text[-lines:]), "cut": max(0, len(text) - lines)}


class _Site:
    """Writes the pages of one report; every page goes through `write` (scrubbed of machine paths)."""

    def __init__(self, report: RunReport, out: Path, approvals: dict | None = None):
        self.report, self.out = report, out
        self.approvals = approvals or {}
        self.env = _environment()
        self.scrub = PathScrubber(report.run_dir).scrub

    def write(self, relative: str, template: str, **context) -> None:
        page = self.out / relative
        page.parent.mkdir(parents=True, exist_ok=True)
        root = "../" * relative.count("/")
        html = self.env.get_template(template).render(report=self.report, root=root, **context)
        page.write_text(self.scrub(html), encoding="utf-8")

    def executed(self, execution: dict) -> None:
        report, run_dir = self.report, self.report.run_dir
        model = report.models[execution["model"]]
        relative = f"executed/{slug(model.key)}/batch-{execution['batch']:05d}.html"
        source = run_dir / execution["executed"]
        failed = execution["status"] != "ok"
        sample = batch_sample(run_dir, model.name, model.version, execution["batch"])
        columns = list(dict.fromkeys(column for row in sample for column in row))
        self.write(relative, "notebook.html", model=model,
                   heading=f"{model.name} {model.version} · batch {execution['batch']}",
                   description=f"The notebook as papermill executed it on batch {execution['batch']} "
                               f"({execution['status']}, {execution.get('seconds') or 0:.2f} s).",
                   failure=_failure(source, execution.get("error") or "") if failed else None,
                   kernel_log=_kernel_log(run_dir, execution), sample=sample, sample_columns=columns,
                   section="Executed notebook", body=render_notebook(source, self.out / relative, self.scrub))
        execution["html"] = relative

    def production(self, key: str) -> str | None:
        """The production notebook that ran (production cells and runner cells), rendered into the site."""
        model = self.report.models[key]
        source = self.report.run_dir / "notebooks" / f"{key}.ipynb"
        if not source.is_file():
            return None
        relative = f"notebooks/{slug(key)}.html"
        self.write(relative, "notebook.html", model=model, heading=f"{model.name} {model.version} · production cells",
                   description="The notebook each batch ran: the model's tagged cells in authored order, then "
                               "the runner's cells.", failure=None, sample=None, sample_columns=[],
                   section="Production cells", body=render_notebook(source, self.out / relative, self.scrub))
        return f"../{relative}"

    def training(self, key: str) -> tuple[str | None, int]:
        """The notebook's training cells as its author saved them when the run started, rendered into the
        site (production cells named in their places); with how many there are. (None, 0) when the run
        kept no copy of the notebook (runs of mlsm-nb before it kept them)."""
        model = self.report.models[key]
        source = RunDirectory(self.report.run_dir).authored_path(key)
        if not source.is_file():
            return None, 0
        notebook, count = training_notebook(source)
        relative = f"notebooks/{slug(key)}.training.html"
        self.write(relative, "notebook.html", model=model, heading=f"{model.name} {model.version} · training cells",
                   description="How the model was fitted: the notebook's cells that production never runs (its "
                               "untagged cells, with the outputs they had), as the author saved the notebook when "
                               "this run started. Production cells are named in their places.",
                   failure=None, sample=None, sample_columns=[], section="Training cells",
                   body=render_notebook(notebook, self.out / relative, self.scrub))
        return f"../{relative}", count

    def model(self, key: str) -> None:
        model = self.report.models[key]
        plot = None
        if model.scores:
            (self.out / "img" / f"{slug(key)}.svg").write_text(
                score_histogram(model.scores, bins=40, size=(560, 240), title=f"{model.name} {model.version}"),
                encoding="utf-8")
            plot = f"../img/{slug(key)}.svg"
        training_link, training_cells = self.training(key)
        self.write(f"models/{slug(key)}.html", "model.html", model=model, plot=plot, stats=model.stats(),
                   source_link=self.production(key), training_link=training_link, training_cells=training_cells,
                   approved=self.approvals.get(key), policy=self.approvals.get("_policy"))


def write_report(run_dir: str | Path, out: str | Path | None = None, compare: str | Path | None = None,
                 threshold: float = PSI_THRESHOLD, database=None) -> Path:
    """Write the report site of a run (default ``<run_dir>/report/``); returns its index.html.

    `database` (an `audit.AuditDatabase`) adds outcomes from MongoDB and drift across its last runs. What
    `mlsm-nb monitor` last found for the run (`monitor.json`, else MongoDB's) shows on the run page, and each
    model page shows the registry's approval beside the evidence (`report.approvals`).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report"
    report = build_run_report(run_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    _write_stylesheet(out)
    from .approvals import approvals_and_evidence  # the registry's approvals, and comparisons kept

    site = _Site(report, out, approvals_and_evidence(run_dir, report.models, database))
    for execution in report.executions:
        if execution.get("executed") and (run_dir / execution["executed"]).is_file() \
                and execution["model"] in report.models:
            site.executed(execution)
    for key in report.models:
        site.model(key)
    comparison, other_id = None, None
    if compare:
        other = build_run_report(compare)
        comparison, other_id = compare_runs(other, report, threshold), other.run_id
    from .outcomes_page import write_outcomes_page  # audit's metrics: against outcomes, drift

    outcomes_page = write_outcomes_page(report, out, site, database, threshold=threshold)
    from ..audit.monitor import read_monitor

    site.write("index.html", "run.html", comparison=comparison, other_id=other_id, threshold=threshold,
               outcomes_page=outcomes_page, monitor=read_monitor(run_dir, database, report.run_id),
               total_seconds=sum(e.get("seconds") or 0 for e in report.executions))
    return out / "index.html"
