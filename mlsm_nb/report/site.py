"""`mlsm-nb report`: a static, self-contained HTML site of a run for reviewers.

Pages are Jinja2 templates with autoescaping on (every value from records or
notebooks is HTML-escaped); plots are PNG files beside the pages; executed
notebooks are rendered with nbconvert without the scripts its template would
load from CDNs, so the site opens from `file://` with no network.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import jinja2
import nbformat

from .data import PSI_THRESHOLD, build_run_report, compare_runs

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def slug(key: str) -> str:
    """A file name for a model key such as `lead_rules@1.0.0`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.globals["slug"] = slug
    return env


def _histogram(scores: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(scores, bins=40, color="#3b6ea5")
    ax.set_title(title)
    ax.set_xlabel("score")
    ax.set_ylabel("records")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def _failure_banner(nb, error: str) -> str:
    """The failing cell and its traceback, for the top of a failed execution's page."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
                return ('<div style="border:2px solid #cf222e;background:#ffebe9;padding:10px 16px;margin:12px">'
                        f"<h2>This execution failed</h2><p>{html.escape(error)}</p>"
                        f"<p>Failing cell:</p><pre>{html.escape(cell.source)}</pre>"
                        f"<p>Traceback:</p><pre>{html.escape(trace)}</pre></div>")
    return ('<div style="border:2px solid #cf222e;background:#ffebe9;padding:10px 16px;margin:12px">'
            f"<h2>This execution failed</h2><p>{html.escape(error)}</p></div>")


def _render_notebook(source: Path, target: Path, error: str | None) -> None:
    from nbconvert import HTMLExporter

    nb = nbformat.read(source, as_version=4)
    exporter = HTMLExporter(template_name="lab", extra_template_paths=[str(TEMPLATES)],
                            template_file="offline_notebook.html.j2", embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    if error:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _failure_banner(nb, error), body, count=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")


def write_report(run_dir: str | Path, out: str | Path | None = None, compare: str | Path | None = None,
                 threshold: float = PSI_THRESHOLD, database=None) -> Path:
    """Write the report site of a run (default ``<run_dir>/report/``); returns its index.html.

    `database` (an `audit.AuditDatabase`) adds outcomes from MongoDB and drift across its last runs.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report"
    report = build_run_report(run_dir)
    env = _environment()
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(exist_ok=True)
    for execution in report.executions:
        if execution.get("executed") and (run_dir / execution["executed"]).is_file():
            relative = Path("executed") / slug(execution["model"]) / f"batch-{execution['batch']:05d}.html"
            _render_notebook(run_dir / execution["executed"], out / relative,
                             execution.get("error") if execution["status"] != "ok" else None)
            execution["html"] = relative.as_posix()
    for key, model in report.models.items():
        plot = None
        if model.scores:
            _histogram(model.scores, out / "img" / f"{slug(key)}.png", f"{model.name} {model.version}")
            plot = f"../img/{slug(key)}.png"
        production = run_dir / "notebooks" / f"{key}.ipynb"
        source_link = os.path.relpath(production, out / "models") if production.is_file() else None
        page = env.get_template("model.html").render(report=report, model=model, plot=plot, stats=model.stats(),
                                                     source_link=source_link, root="../")
        (out / "models" / f"{slug(key)}.html").write_text(page, encoding="utf-8")
    comparison, other_id = None, None
    if compare:
        other = build_run_report(compare)
        comparison, other_id = compare_runs(other, report, threshold), other.run_id
    from ..audit.pages import write_outcomes_page  # audit: metrics against outcomes, drift

    outcomes_page = write_outcomes_page(report, out, env, database, threshold=threshold)
    index = out / "index.html"
    index.write_text(env.get_template("run.html").render(
        report=report, root="", comparison=comparison, other_id=other_id, threshold=threshold,
        outcomes_page=outcomes_page,
        total_seconds=sum(e.get("seconds") or 0 for e in report.executions)), encoding="utf-8")
    return index

