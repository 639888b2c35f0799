"""The `mlsm-nb` command: parses options, sets up logging, calls the library.

Errors print as one line each (no traceback unless --debug); the exit code is
0 only when everything asked for succeeded.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from ._version import __version__
from .exceptions import MlsmError


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(command):
    """Map library errors to one line on stderr and exit 1 (traceback with --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return command(*args, **kwargs)
        except MlsmError as exc:
            if ctx.obj.get("debug"):
                raise
            _fail(str(exc))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlsm-nb")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """mlsm-nb: scoring models as notebooks, from JupyterLab to production.

    Author a model from a template (new), check it (lint, validate), turn it
    into a Model (extract), score record batches (run) and review (report).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("kind", type=click.Choice(["model", "summary"]))
@click.argument("name")
@click.option("--dir", "folder", default="notebooks", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write the notebook into.")
@click.option("--models", "models", multiple=True, metavar="NAME:VERSION",
              help="For a summary: a model whose results it needs (repeatable).")
@handle_errors
def new(kind: str, name: str, folder: str, models: tuple[str, ...]) -> None:
    """Start a model or summary notebook NAME from the template."""
    from .notebook.new import new_notebook

    path = new_notebook(kind, name, folder, models)
    click.echo(f"created {path}: open it in JupyterLab, then run `mlsm-nb lint {path}`")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@handle_errors
def lint(paths: tuple[str, ...]) -> None:
    """Check notebooks (files or folders) against the notebook contract.

    Prints every problem as `path:cell N [tag]: message`; exit 1 if any.
    """
    from .notebook.contract import find_notebooks, inspect_notebook

    notebooks = find_notebooks(paths)
    if not notebooks:
        _fail(f"no notebooks found in {', '.join(paths)}")
    problems = [p for path in notebooks for p in inspect_notebook(path)[1]]
    for problem in problems:
        click.echo(str(problem))
    click.echo(f"{len(notebooks)} notebook(s) checked, {len(problems)} problem(s)", err=True)
    sys.exit(1 if problems else 0)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Bundle folder to create (must not exist or be empty).")
@click.option("--branch", help="Git branch the notebooks come from; git-flow rules may force status draft.")
@click.option("--repo-url", help="Models repository URL, recorded in the manifest (credentials redacted).")
@click.option("--commit", help="Commit SHA the notebooks were checked out at, recorded in the manifest.")
@click.option("--mongo-uri", envvar="MLSM_MONGO_URI", help="Also register the models in MongoDB.")
@click.option("--mongo-db", help="Database (default: the URI's, else 'mlsm').")
@handle_errors
def extract(paths, out_dir, branch, repo_url, commit, mongo_uri, mongo_db) -> None:
    """Extract notebooks into a bundle of Python modules with a manifest."""
    from .notebook.extract import extract_bundle
    from .notebook.gitflow import forced_status
    from .redact import redact_text

    status, reason = forced_status(branch)
    origin = {k: v for k, v in {"repository": redact_text(repo_url) if repo_url else None, "branch": branch,
                                "commit": commit}.items() if v}
    store = _connect_store(mongo_uri, mongo_db)
    manifest = extract_bundle(paths, out_dir, status_override=status, status_reason=reason, provenance=origin)
    if store:
        store.register_models([{**entry, **origin} for entry in manifest["models"]], event="extracted")
    for entry in manifest["models"]:
        forced = f"; notebook says {entry['notebook_status']}" if "notebook_status" in entry else ""
        click.echo(f"{entry['kind']:8} {entry['name']} {entry['version']} ({entry['status']}{forced}) "
                   f"<- {entry['source']}")
    if reason:
        click.echo(f"status forced to {status}: {reason}")
    click.echo(f"bundle written to {out_dir}")


def _connect_store(uri: str | None, database: str | None, **options):
    if not uri:
        return None
    from .store.mongo import MongoStore

    return MongoStore.connect(uri, database, **options)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML (for Jenkins' junit step).")
@click.option("--lax", is_flag=True, help="nbval --nbval-lax: compare only outputs of cells marked # NBVAL_CHECK_OUTPUT.")
@click.option("--timeout", default=300.0, show_default=True, type=float, help="Seconds a cell may run.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Notebooks at once (default: cores).")
@click.option("--sanitize", type=click.Path(exists=True, dir_okay=False),
              help="nbval sanitize file (default: mlsm-nb's, for timestamps, addresses, durations).")
@handle_errors
def validate(paths, junit, lax, timeout, workers, sanitize):
    """Validate notebooks: lint, nbval, robustness, examples, parity.

    Exit 0 only if every check passed.
    """
    from pathlib import Path

    from .notebook.contract import find_notebooks
    from .validate.pipeline import DEFAULT_SANITIZE, validate as run_validation, write_junit

    if not find_notebooks(paths):
        _fail(f"no notebooks found in {', '.join(paths)}")

    def show(results):
        click.echo(results[0].notebook)
        for r in results:
            mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[r.status]
            click.echo(f"  {mark} {r.check:11} {r.seconds:6.1f}s  {r.message}")

    results = run_validation(paths, lax=lax, timeout=timeout, workers=workers,
                             sanitize=Path(sanitize) if sanitize else DEFAULT_SANITIZE, on_notebook=show)
    if junit:
        write_junit(results, junit)
    failed = [r for r in results if r.status == "failed"]
    notebooks = len({r.notebook for r in results})
    click.echo(f"{notebooks} notebook(s), {len(results)} checks, {len(failed)} failed"
               + (f"; JUnit XML in {junit}" if junit else ""))
    for r in failed:
        click.echo(f"error: {r.notebook}: {r.check}: {r.message}", err=True)
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Site folder (default: RUN_DIR/report).")
@click.option("--compare", type=click.Path(exists=True, file_okay=False),
              help="Another run directory: set the same models side by side, with drift (PSI) per score.")
@handle_errors
def report(run_dir, out, compare):
    """Write a static HTML report of a run for reviewers."""
    from .report.site import write_report

    index = write_report(run_dir, out, compare)
    click.echo(f"report: {index}")


def _parse_param(text: str) -> tuple[str, object]:
    import json

    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise click.BadParameter(f"{text!r} must look like NAME=VALUE", param_hint="--param")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def _setting(name: str, *decls: str, **options):
    """A `run` option whose default and help come from RunSettings (one declaration for CLI and library)."""
    from .run.settings import RunSettings

    options.setdefault("default", RunSettings.default(name))
    options.setdefault("show_default", options["default"] is not None)
    return click.option(*(decls or [f"--{name.replace('_', '-')}"]), name, help=RunSettings.help(name), **options)


def _engine_names() -> list[str]:
    from .run.engines import engine_names

    return engine_names()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--records", type=click.Path(), help="JSON Lines (.jsonl, .jsonl.gz), CSV or Parquet.")
@_setting("out", type=click.Path(file_okay=False))
@_setting("run_id")
@_setting("batch_size", type=click.IntRange(min=1))
@_setting("workers", type=click.IntRange(min=1))
@_setting("id_field")
@_setting("timeout", type=float)
@_setting("resume", is_flag=True)
@_setting("engine", type=click.Choice(_engine_names()))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Set a notebook parameter (JSON value or string; repeatable); the name must be one a "
                   "notebook's `parameters` cell defines (see --list-params). Credentials go to each kernel's "
                   "environment, never into notebooks or the manifest.")
@_setting("branch")
@_setting("bundle", type=click.Path(file_okay=False, exists=True))
@_setting("scheduler")
@_setting("max_error_rate", type=click.FloatRange(0, 1))
@click.option("--mongo-uri", envvar="MLSM_MONGO_URI", help="Also store results, the run and the model "
              "registry in MongoDB (or set MLSM_MONGO_URI). The URI is never written anywhere.")
@click.option("--mongo-db", help="Database (default: the URI's, else 'mlsm').")
@click.option("--mongo-collection", default="results", show_default=True, help="Results collection.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar, or one line per finished execution (default: a bar when stderr is a terminal).")
@click.option("--list-params", is_flag=True, help="List the parameters the notebooks define, with defaults; run nothing.")
@handle_errors
def run(paths, records, params, mongo_uri, mongo_db, mongo_collection, progress, list_params, **settings):
    """Run model notebooks, then summary notebooks, over record batches.

    Exit 0 when the run succeeded (possibly "with errors": every model's error
    rate within --max-error-rate), 1 when it failed, 2 for a usage error, 130
    when interrupted.
    """
    from .run.orchestrate import run_notebooks
    from .run.parameters import list_parameters
    from .run.progress import progress_reporter
    from .run.settings import RunSettings
    from .run.verdict import exit_code

    if list_params:
        for notebook, name, default in list_parameters(paths):
            click.echo(f"{name} = {default}    ({notebook})")
        return
    if not records:
        raise click.UsageError("Missing option '--records'.")
    settings = RunSettings(parameters=dict(_parse_param(p) for p in params), **settings)
    store = _connect_store(mongo_uri, mongo_db, results_collection=mongo_collection, id_field=settings.id_field)
    reporter = progress_reporter(sys.stderr.isatty() if progress is None else progress)
    try:
        manifest = run_notebooks(paths, records, settings, sinks=[store] if store else [], on_progress=reporter)
    except KeyboardInterrupt:
        reporter.close()
        _fail(f"interrupted; finish with: mlsm-nb run ... --resume --run-id {settings.run_id or '<run id>'}", 130)
    reporter.close()
    _print_run_summary(manifest, settings.out, store)
    sys.exit(exit_code(manifest["status"]))


def _print_run_summary(manifest: dict, out: str, store=None) -> None:
    from pathlib import Path

    root = Path(out) / manifest["run_id"]
    data, verdict = manifest["input"], manifest["verdict"]
    click.echo(f"run {manifest['run_id']}: {manifest['status']} ({manifest['engine']} engine)")
    if manifest.get("status_override"):
        click.echo(f"  every model ran as {manifest['status_override']['status']}: "
                   f"{manifest['status_override']['reason']}")
    click.echo(f"  records: {data['records']} scored in {data['batches']} batch(es), {data['rejected']} rejected"
               + (f" (see {root / 'rejected.jsonl'})" if data["rejected"] else ""))
    for key, stats in manifest.get("models", {}).items():
        line = f"  {key:24} {stats['records']} records"
        if stats["scored"]:
            line += f", score mean {stats['score_mean']:.3f} (min {stats['score_min']:.3f}, max {stats['score_max']:.3f})"
        errors = ", ".join(f"{n} {kind}" for kind, n in sorted(stats["errors"].items()))
        click.echo(line + (f", errors: {errors} ({stats['error_rate']:.1%})" if errors else ""))
    for key, batches in sorted(manifest["executions"].items()):
        for batch, entry in sorted(batches.items(), key=lambda kv: int(kv[0])):
            if entry["status"] != "ok":
                click.echo(f"error: {entry['error']}", err=True)
    _print_verdict(manifest, root)
    click.echo(f"  results:  {root / 'results'}")
    if manifest["engine"] == "papermill":
        click.echo(f"  executed notebooks: {root / 'executed'}")
    click.echo(f"  manifest: {root / 'manifest.json'}")
    if store is not None:
        where = f"{store.db.name}.{store.results.name}"
        if manifest.get("store_error"):
            click.echo(f"error: results not all stored in MongoDB ({where}): {manifest['store_error']}; "
                       "run again with --resume to store them", err=True)
        else:
            click.echo(f"  MongoDB:  {where}")
        for problem in manifest.get("store_problems", [])[:5]:
            click.echo(f"warning: MongoDB: {problem}", err=True)


def _print_verdict(manifest: dict, root) -> None:
    """The models with errors, worst first, with a few record ids and error lines; why a run failed."""
    verdict, models = manifest["verdict"], manifest["models"]
    limit = verdict["max_error_rate"]
    for key in verdict["models_with_errors"][:5]:
        stats = models[key]
        over = key in verdict["models_over"]
        click.echo(f"{'error' if over else 'warning'}: {key}: {stats['error_rate']:.1%} of records have errors "
                   f"({'over' if over else 'within'} --max-error-rate {limit:g})", err=True)
        for example in stats.get("examples", []):
            click.echo(f"    id {example['id']!r}: {example['kind']}: {example['error']}", err=True)
    if verdict["no_records"]:
        click.echo("error: no record could be scored (every input line was rejected)", err=True)
    elif verdict["rejected_over"]:
        click.echo(f"error: {verdict['rejected_rate']:.1%} of input lines were rejected "
                   f"(over --max-error-rate {limit:g}); see {root / 'rejected.jsonl'}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
