"""The `mlsm-nb` command: parses options, sets up logging, calls the library.

Errors print as one line each (no traceback unless --debug); the exit code is
0 only when everything asked for succeeded. A standard stream whose reader goes
away (`| head`, a closed terminal) goes quiet and the command goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading

import click

from ._version import __version__
from .exceptions import MlsmError, SettingsError


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    """An operating system's refusal (a read-only or vanished folder) in one line: the path and why."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or str(exc))


def handle_errors(command):
    """Map library errors to one line on stderr and exit 1, or 2 for settings that cannot work as for any
    usage error; so too a file the system refuses and a MongoDB driver error (traceback with --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return command(*args, **kwargs)
        except MlsmError as exc:
            if ctx.obj.get("debug"):
                raise
            _fail(str(exc), 2 if isinstance(exc, SettingsError) else 1)
        except OSError as exc:
            if ctx.obj.get("debug"):
                raise
            _fail(_os_error(exc))
        except Exception as exc:
            if ctx.obj.get("debug") or not type(exc).__module__.startswith("pymongo"):
                raise
            from .store.mongo import driver_message

            _fail(f"MongoDB: {driver_message(exc)}")

    return wrapper


class _Quiet:
    """A standard stream that goes quiet once its reader is gone (`| head`, a closed terminal): writes
    are dropped from then on, and its descriptor points at /dev/null (so the interpreter's last flush and
    processes started later write nowhere, without an error)."""

    def __init__(self, stream):
        self._stream = stream
        self.lost = False

    def write(self, text):
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass  # not a file (a test's capture): dropping the writes is enough

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _quiet_streams(ctx: click.Context) -> None:
    """Standard output and error that go quiet when closed; when output went, a warning says so at the end."""
    if isinstance(sys.stdout, _Quiet):
        return
    sys.stdout, sys.stderr = out, err = _Quiet(sys.stdout), _Quiet(sys.stderr)

    def said_what_was_lost() -> None:
        if out.lost and not err.lost:
            click.echo("warning: standard output was closed (e.g. by `| head`), so what came after was not "
                       "shown; the command went on to its end", err=True)

    ctx.call_on_close(said_what_was_lost)


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
    _quiet_streams(ctx)
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
    problems = [p for path in notebooks for p in inspect_notebook(path, check_git=True, check_names=True)[1]]
    for problem in problems:
        click.echo(str(problem))
    checked = sum(path.is_file() for path in notebooks)  # a path that is not there is a problem, not a notebook
    click.echo(f"{checked} notebook(s) checked, {len(problems)} problem(s)")
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
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a production cell may run while extracting.")
@handle_errors
def extract(paths, out_dir, branch, repo_url, commit, mongo_uri, mongo_db, timeout) -> None:
    """Extract notebooks into a bundle of Python modules with a manifest."""
    from .notebook.extract import extract_bundle
    from .notebook.gitflow import forced_status
    from .redact import redact_text

    status, reason = forced_status(branch)
    origin = {k: v for k, v in {"repository": redact_text(repo_url) if repo_url else None, "branch": branch,
                                "commit": commit}.items() if v}
    store = _connect_store(mongo_uri, mongo_db)
    manifest = extract_bundle(paths, out_dir, status_override=status, status_reason=reason, provenance=origin,
                              timeout=timeout)
    if store:
        store.register_models([{**entry, **origin} for entry in manifest["models"]], event="extracted")
        _refuse_unapproved_bundle(store, manifest, out_dir)
    for entry in manifest["models"]:
        forced = f"; notebook says {entry['notebook_status']}" if "notebook_status" in entry else ""
        click.echo(f"{entry['kind']:8} {entry['name']} {entry['version']} ({entry['status']}{forced}) "
                   f"<- {entry['source']}")
    if reason:
        click.echo(f"status forced to {status}: {reason}")
    click.echo(f"bundle written to {out_dir}")


def _refuse_unapproved_bundle(store, manifest: dict, out_dir: str) -> None:
    """Under the registry's policies (approvals, evidence), remove the bundle just written when an active model
    of it may not run; its models stay registered, so they can be approved."""
    import shutil

    from .exceptions import ConfigError
    from .store.base import RegisteredVersion, check_approvals

    try:
        check_approvals([store], RegisteredVersion.active_in(manifest["models"]))
    except ConfigError as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ConfigError(f"{exc} (the models are registered; no bundle was written to {out_dir})") from None


def _connect_store(uri: str | None, database: str | None, **options):
    if not uri:
        return None
    from .store.mongo import MongoStore

    return MongoStore.connect(uri, database, **options)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML (for Jenkins' junit step).")
@click.option("--lax", is_flag=True,
              help="nbval --nbval-lax: compare only outputs of cells marked # NBVAL_CHECK_OUTPUT.")
@click.option("--timeout", default=300.0, show_default=True, type=float,
              help="Seconds a cell may run (in nbval, and while extracting for the model checks).")
@click.option("--record-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds the model checks give score on each input, as `mlsm-nb run --record-timeout` gives "
                   "each record: an input over it fails the check; 0: no limit.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Notebooks at once (default: cores).")
@click.option("--sanitize", type=click.Path(exists=True, dir_okay=False),
              help="nbval sanitize file (default: mlsm-nb's, for timestamps, addresses, durations).")
@handle_errors
def validate(paths, junit, lax, timeout, record_timeout, workers, sanitize):
    """Validate notebooks: lint, nbval, robustness, examples, parity.

    Exit 0 only if every check passed.
    """
    from pathlib import Path

    from .notebook.contract import find_notebooks
    from .validate.pipeline import DEFAULT_SANITIZE, write_junit
    from .validate.pipeline import validate as run_validation

    if not find_notebooks(paths):
        _fail(f"no notebooks found in {', '.join(paths)}")

    def show(results):
        click.echo(results[0].notebook)
        for r in results:
            mark = {"passed": "ok  ", "warning": "warn", "failed": "FAIL", "skipped": "skip"}[r.status]
            click.echo(f"  {mark} {r.check:11} {r.seconds:6.1f}s  {r.message}")

    results = run_validation(paths, lax=lax, timeout=timeout, workers=workers, record_timeout=record_timeout or None,
                             sanitize=Path(sanitize) if sanitize else DEFAULT_SANITIZE, on_notebook=show)
    if junit:
        write_junit(results, junit)
    failed = [r for r in results if r.status == "failed"]
    notebooks = len({r.notebook for r in results})
    warned = sum(r.status == "warning" for r in results)
    click.echo(f"{notebooks} notebook(s), {len(results)} checks, {len(failed)} failed"
               + (f", {warned} warning(s)" if warned else "") + (f"; JUnit XML in {junit}" if junit else ""))
    for r in failed:
        click.echo(f"error: {r.notebook}: {r.check}: {r.message}", err=True)
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Site folder (default: RUN_DIR/report).")
@click.option("--compare", type=click.Path(exists=True, file_okay=False),
              help="Another run directory: set the same models side by side, with drift (PSI) per score.")
@click.option("--mongo-uri", envvar="MLSM_MONGO_URI", help="Outcomes from MongoDB, and drift over its last runs.")
@click.option("--mongo-db", help="Database (default: the URI's, else 'mlsm').")
@handle_errors
def report(run_dir, out, compare, mongo_uri, mongo_db):
    """Write a static HTML report of a run for reviewers."""
    from .report.site import write_report

    index = write_report(run_dir, out, compare, database=_audit_database(mongo_uri, mongo_db))
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


_MONGO_IDS_PER_QUERY = click.option(
    "--mongo-ids-per-query", type=click.IntRange(min=1), envvar="MLSM_MONGO_IDS_PER_QUERY",
    help="Ids per $in query when storing (default 20, measured best on SecantusDB; on MongoDB a larger value "
         "saves round trips; see docs/operators.md).")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--records", type=click.Path(), help="JSON Lines (.jsonl, .jsonl.gz), CSV or Parquet.")
@_setting("out", type=click.Path(file_okay=False))
@_setting("run_id")
@_setting("batch_size", type=click.IntRange(min=1))
@_setting("workers", type=click.IntRange(min=1))
@_setting("id_field")
@_setting("timeout", type=float)
@_setting("record_timeout", type=float)
@_setting("resume", is_flag=True)
@_setting("engine", type=click.Choice(_engine_names()))
@_setting("warm_kernels", is_flag=True)
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
@_MONGO_IDS_PER_QUERY
@click.option("--progress/--no-progress", default=None,
              help="A progress bar, or one line per finished execution (default: a bar when stderr is a terminal).")
@click.option("--list-params", is_flag=True,
              help="List the parameters the notebooks define, with defaults; run nothing.")
@handle_errors
def run(paths, records, params, mongo_uri, mongo_db, mongo_collection, mongo_ids_per_query, progress, list_params,
        **settings):
    """Run model notebooks, then summary notebooks, over record batches.

    Exit 0 when the run succeeded (possibly "with errors": every model's error
    rate within --max-error-rate), 1 when it failed, 2 for a usage error, 130
    when interrupted (Ctrl-C), 143 on SIGTERM.
    """
    from .run.orchestrate import run_notebooks
    from .run.parameters import list_parameters
    from .run.progress import progress_reporter
    from .run.records import InputChanged
    from .run.settings import RunSettings
    from .run.verdict import exit_code
    from .store.rundir import new_run_id

    if list_params:
        for notebook, name, default in list_parameters(paths):
            click.echo(f"{name} = {default}    ({notebook})")
        return
    if not records:
        raise click.UsageError("Missing option '--records'.")
    settings = RunSettings(parameters=dict(_parse_param(p) for p in params), **settings)
    settings.run_id = settings.run_id or new_run_id()  # known here, so that an interruption can name it
    tuning = {"ids_per_query": mongo_ids_per_query} if mongo_ids_per_query else {}
    store = _connect_store(mongo_uri, mongo_db, results_collection=mongo_collection, id_field=settings.id_field,
                           **tuning)
    reporter = progress_reporter(sys.stderr.isatty() if progress is None else progress)
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    stop_on_sigterm = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # e.g. a Jenkins abort
    try:
        manifest = run_notebooks(paths, records, settings, sinks=[store] if store else [], on_progress=reporter)
    except KeyboardInterrupt as exc:
        reporter.close()
        how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        _fail(f"{how}; finish with: {_resume_command(paths, records, settings)}", code)
    except InputChanged as exc:
        reporter.close()
        _fail(f"{exc}: put back the file the run started with, then finish with: "
              f"{_resume_command(paths, records, settings)}; or start a new run")
    except OSError as exc:  # before the run could start: its folder cannot be made
        if not _within(exc.filename, settings.out) or click.get_current_context().obj.get("debug"):
            raise
        _fail(f"{_os_error(exc)}: --out {settings.out} must be a folder this user can write; nothing was run")
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, stop_on_sigterm)
    reporter.close()
    _print_run_totals(manifest, settings.out, store)
    sys.exit(exit_code(manifest.status))


def _within(path, folder: str) -> bool:
    """Whether `path` is `folder`, in it, or one of the folders it is made in."""
    from pathlib import Path

    if path is None:
        return False
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path.is_relative_to(folder) or folder.is_relative_to(path)


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run: stopped as on Ctrl-C (kernels and workers stopped, the manifest says
    "interrupted"), so that a resume can finish the run."""


def _terminate(signum, frame) -> None:
    raise Terminated("SIGTERM")


def _resume_command(paths, records: str, settings) -> str:
    """The command that finishes this run (see `run.settings.resume_command`)."""
    import dataclasses

    from .run.settings import resume_command

    return resume_command(paths, records, settings.out, settings.run_id, dataclasses.asdict(settings))


def _print_run_totals(manifest, out: str, store=None) -> None:
    from pathlib import Path

    from .core.model import model_key

    root = Path(out) / manifest.run_id
    data, override = manifest.input, manifest.setting("status_override")
    click.echo(f"run {manifest.run_id}: {manifest.status} ({manifest.setting('engine')} engine)")
    if override:
        click.echo(f"  every model ran as {override['status']}: {override['reason']}")
    click.echo(f"  records: {data.records} scored in {data.batches} batch(es), {data.rejected} rejected"
               + (f" (see {root / 'rejected.jsonl'})" if data.rejected else ""))
    # A model that is not active is marked, unless every model ran under one forced status (said above).
    statuses = {} if override else {model_key(n.name, n.version): n.status for n in manifest.notebooks}
    for key, stats in manifest.models.items():
        status = statuses.get(key, "active")
        label = key if status == "active" else f"{key} ({status})"
        line = f"  {label:24} {stats['records']} records"
        if stats["scored"]:
            line += (f", score mean {stats['score_mean']:.3f} "
                     f"(min {stats['score_min']:.3f}, max {stats['score_max']:.3f})")
            unscored = stats["records"] - stats["scored"] - sum(stats["errors"].values())
            if unscored:  # e.g. a text score: the figures above leave those records out, so say so
                line += f" of {stats['scored']} numeric scores; {unscored} records have none"
        errors = ", ".join(f"{n} {kind}" for kind, n in sorted(stats["errors"].items()))
        click.echo(line + (f", errors: {errors} ({stats['error_rate']:.1%})" if errors else ""))
    _print_slowest(manifest)
    for _key, batches in sorted(manifest.executions.items()):
        for _batch, entry in sorted(batches.items()):
            if entry.status != "ok":
                click.echo(f"error: {entry.error}", err=True)
    for error in manifest.merge_error_lines():
        click.echo(f"error: {error}; finish with --resume once the cause is fixed", err=True)
    _print_verdict(manifest, root)
    click.echo(f"  results:  {root / 'results'}")
    if manifest.setting("engine") == "papermill":
        click.echo(f"  executed notebooks: {root / 'executed'}")
    click.echo(f"  manifest: {root / 'manifest.json'}")
    if store is not None:
        where = f"{store.db.name}.{store.results.name}"
        if manifest.store_error:
            click.echo(f"error: results not all stored in MongoDB ({where}): {manifest.store_error}; "
                       "run again with --resume to store them", err=True)
        else:
            click.echo(f"  MongoDB:  {where}")
        for problem in manifest.store_problems[:5]:
            click.echo(f"warning: MongoDB: {problem}", err=True)


SLOWEST_SHOWN = 5  # the run's slowest records the summary names, and up to 10 when more were over the limit


def _print_slowest(manifest) -> None:
    """The run's slowest records, slowest first: id, seconds, model; those over --record-timeout marked."""
    limit = manifest.setting("record_timeout") or None
    timed = sorted(((pair[1], pair[0], key) for key, pairs in manifest.slowest.items() for pair in pairs),
                   key=lambda found: -found[0])
    shown = [t for i, t in enumerate(timed) if i < SLOWEST_SHOWN or (limit and t[0] > limit)][:2 * SLOWEST_SHOWN]
    if not shown:
        return
    click.echo(f"  slowest records ({f'--record-timeout {limit:g} s' if limit else 'no --record-timeout'}):")
    width = max(len(repr(record_id)) for _, record_id, _ in shown)
    for seconds, record_id, key in shown:
        over = "  timeout" if limit and seconds > limit else ""
        click.echo(f"    id {record_id!r:{width}} {_duration(seconds):>8}  {key}{over}")


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3g} ms" if seconds >= 0.001 else f"{seconds * 1e6:.3g} µs"


def _print_verdict(manifest, root) -> None:
    """The models with errors, worst first, with a few record ids and error lines; why a run failed."""
    verdict, models = manifest.verdict, manifest.models
    limit = verdict.max_error_rate
    for key in verdict.models_with_errors[:5]:
        stats = models[key]
        over = key in verdict.models_over
        click.echo(f"{'error' if over else 'warning'}: {key}: {stats['error_rate']:.1%} of records have errors "
                   f"({'over' if over else 'within'} --max-error-rate {limit:g})", err=True)
        for example in stats.get("examples", []):
            click.echo(f"    id {example['id']!r}: {example['kind']}: {example['error']}", err=True)
    if verdict.input_cut_short:
        click.echo(f"error: {manifest.input.path}: {verdict.input_cut_short}: replace the file and run "
                   "again", err=True)
    if verdict.no_records:
        click.echo("error: no record could be scored (every input line was rejected)", err=True)
    elif verdict.rejected_over:
        click.echo(f"error: {verdict.rejected_rate:.1%} of input lines were rejected "
                   f"(over --max-error-rate {limit:g}); see {root / 'rejected.jsonl'}", err=True)


# -- audit: trace, replay, outcomes, monitor, approve ----------------------------------------------

def _audit_database(uri: str | None, database: str | None, collection: str = "results", id_field: str = "id"):
    if not uri:
        return None
    from .audit.database import open_database

    return open_database(uri, database, results_collection=collection, id_field=id_field)


def _mongo_options(command):
    """--mongo-uri, --mongo-db, --mongo-collection, --id-field: where the audit commands read MongoDB."""
    for option in reversed([
        click.option("--mongo-uri", envvar="MLSM_MONGO_URI", help="Read MongoDB (or set MLSM_MONGO_URI)."),
        click.option("--mongo-db", help="Database (default: the URI's, else 'mlsm')."),
        click.option("--mongo-collection", default="results", show_default=True, help="Results collection."),
        click.option("--id-field", default="id", show_default=True, help="The records' identifier field."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("record_id", metavar="ID")
@click.option("--run", "run_dir", type=click.Path(exists=True),
              help="A run directory, or a folder of them (the run started last is live).")
@click.option("--run-id", help="The result of this run instead of the live one.")
@click.option("--model", metavar="NAME[@VERSION]", help="Only this model (or version).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@_mongo_options
@handle_errors
def trace(record_id, run_dir, run_id, model, as_json, mongo_uri, mongo_db, mongo_collection, id_field):
    """Show where the live score of record ID came from: run, notebook, commit, input, batch, versions.

    With --mongo-uri MongoDB says which result is live; add --run DIR to also find
    its batch and executed notebook in the run directories.
    """
    import json

    from .audit.trace import format_trace, trace_record

    if not run_dir and not mongo_uri:
        _fail("say where the results are: --run RUN_DIR or --mongo-uri URI", 2)
    database = _audit_database(mongo_uri, mongo_db, mongo_collection, id_field)
    found = trace_record(record_id, run=run_dir, database=database, run_id=run_id, model=model)
    click.echo(json.dumps(found, indent=2, default=str) if as_json else format_trace(found))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the replay's run directory "
              "(default: RUN_DIR/replays).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A credential parameter the run could not record (repeatable).")
@handle_errors
def replay(run_dir, out, params):
    """Re-run a kept run from its own batches and compare every result with the original.

    Exit 0 when identical (run_id, _timestamp and _current aside), 1 otherwise.
    """
    from .audit.replay import format_replay, replay_run

    found = replay_run(run_dir, out, dict(_parse_param(p) for p in params))
    click.echo(format_replay(found))
    sys.exit(0 if found.identical else 1)


@main.command()
@click.argument("file", type=click.Path())
@click.option("--label", required=True, help="The column holding the outcome (0/1 or true/false).")
@click.option("--observed-at", "observed_column", default="observed_at", show_default=True,
              help="Column with when each outcome was observed (default: now).")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="Attach to the ids scored in this run directory.")
@_mongo_options
@handle_errors
def outcomes(file, label, observed_column, run_dir, mongo_uri, mongo_db, mongo_collection, id_field):
    """Attach observed outcomes in FILE (JSON Lines, CSV, Parquet) to scored ids; scores are not touched.

    All or nothing: an unknown id, a duplicate or a label that is not 0/1 or true/false stores nothing.
    `mlsm-nb report` then measures the models against them.
    """
    from .audit.outcomes import attach_outcomes

    if run_dir and click.get_current_context().get_parameter_source("mongo_uri").name == "ENVIRONMENT":
        mongo_uri = None  # --run says where; MLSM_MONGO_URI is only the default
    if bool(run_dir) == bool(mongo_uri):
        _fail("say where the scores are: --run RUN_DIR or --mongo-uri URI (one of them)", 2)
    database = _audit_database(mongo_uri, mongo_db, mongo_collection, id_field)
    found = attach_outcomes(file, label, run=run_dir, database=database, observed_column=observed_column)
    click.echo(f"attached {found['attached']} {label} outcome(s) ({found['positives']} positive) to {found['where']}")


@main.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--reference", metavar="RUN_ID", help="The run to compare with (default: the run started last "
              "before the one monitored).")
@click.option("--window", default=1000, show_default=True, type=click.IntRange(min=1),
              help="AUC and conversion over this many of the run's latest labelled scores.")
@click.option("--thresholds", type=click.Path(dir_okay=False),
              help='TOML file: a [defaults] table and ["name@version"] tables overriding the default thresholds.')
@click.option("--label", help="The outcome label to measure against (needed when outcomes have several).")
@_mongo_options
@handle_errors
def monitor(run_dir, reference, window, thresholds, label, mongo_uri, mongo_db, mongo_collection, id_field):
    """Check each active model version of a run (RUN_DIR, or MongoDB's last run) against thresholds:
    error rate, PSI against the reference run, AUC and top-decile conversion against the reference's.

    Prints one line per breach; writes RUN_DIR/monitor.json and, with --mongo-uri, a document in the
    `monitor` collection. Exit 1 when a threshold is passed; 0 otherwise, also when a check lacked data
    (said on stderr); 2 for a usage error (a bad thresholds file).
    """
    from .audit.monitor import breach_lines, monitor_run, not_checked_lines, summary_line

    if run_dir and click.get_current_context().get_parameter_source("mongo_uri").name == "ENVIRONMENT":
        mongo_uri = None  # RUN_DIR says where; MLSM_MONGO_URI is only the default
    if not run_dir and not mongo_uri:
        _fail("say what to monitor: RUN_DIR or --mongo-uri URI", 2)
    database = _audit_database(mongo_uri, mongo_db, mongo_collection, id_field)
    found = monitor_run(run=run_dir, database=database, reference=reference, window=window,
                        thresholds=thresholds, label=label)
    for line in not_checked_lines(found):
        click.echo(f"warning: {line}", err=True)
    for key in found["unmatched_thresholds"]:
        click.echo(f"warning: {thresholds}: [{key}] names no active model version of run {found['run_id']}",
                   err=True)
    for line in breach_lines(found):
        click.echo(line)
    click.echo(summary_line(found))
    sys.exit(1 if found["breaches"] else 0)


@main.command()
@click.argument("champion", metavar="CHAMPION")
@click.argument("challenger", metavar="CHALLENGER")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="Compare the scores and outcomes of this run directory; the evidence goes to its evidence.jsonl.")
@click.option("--label", help="The outcome label to compare on (default: every outcome; name one when there are "
              "several).")
@click.option("--min-improvement", "min_absolute", default=0.0, show_default=True, type=float,
              help="The challenger's AUC must exceed the champion's by at least this much (absolute).")
@click.option("--min-relative-improvement", "min_relative", default=0.0, show_default=True, type=float,
              help="... and by at least this fraction of the champion's AUC (0.02: 2 %).")
@click.option("--confidence", default=0.95, show_default=True, type=float,
              help="Confidence of every interval; the AUC difference's must lie above 0.")
@click.option("--min-records", default=200, show_default=True, type=int,
              help="Shared labelled records needed (200 at least).")
@click.option("--resamples", default=1000, show_default=True, type=int, help="Paired bootstrap resamples.")
@click.option("--by", help="Who compares (default: user@host).")
@click.option("--json", "as_json", is_flag=True, help="Print the evidence as JSON.")
@_mongo_options
@handle_errors
def compare(champion, challenger, run_dir, label, min_absolute, min_relative, confidence, min_records, resamples, by,
            as_json, mongo_uri, mongo_db, mongo_collection, id_field):
    """Compare CHALLENGER with CHAMPION (each NAME@VERSION) on the records both scored that have an outcome.

    AUC, lift by decile and calibration error of each, and their differences, with paired-bootstrap
    intervals. It passes when there are enough shared labelled records and the challenger's AUC improves
    on the champion's by the thresholds, beyond chance. The evidence is written either way: to the model
    registry with --mongo-uri (what `approve` cites), else to RUN_DIR/evidence.jsonl. Exit 0 when it passed,
    1 when it did not.
    """
    import json

    from .audit.evidence import Thresholds, compare_models, format_evidence

    if run_dir and click.get_current_context().get_parameter_source("mongo_uri").name == "ENVIRONMENT":
        mongo_uri = None  # --run says where; MLSM_MONGO_URI is only the default
    if bool(run_dir) == bool(mongo_uri):
        _fail("say where the scores are: --run RUN_DIR or --mongo-uri URI (one of them)", 2)
    thresholds = Thresholds(min_absolute, min_relative, confidence, min_records, resamples)
    thresholds.check()  # before connecting: a usage error needs no database
    database = _audit_database(mongo_uri, mongo_db, mongo_collection, id_field)
    found = compare_models(champion, challenger, run=run_dir, database=database, thresholds=thresholds, label=label,
                           by=by)
    click.echo(json.dumps(found, indent=2, default=str) if as_json else format_evidence(found))
    sys.exit(0 if found["passed"] else 1)


@main.command()
@click.argument("name", required=False)
@click.argument("version", required=False)
@click.option("--notebook", type=click.Path(exists=True, dir_okay=False),
              help="Approve this notebook: it must be the registered one for NAME VERSION.")
@click.option("--sha256", help="Approve this sha256 (at least its first 12 characters): it must be the registered "
              "one. Needed, or --notebook, when it differs from the last approval.")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="A run directory, or a folder of them, where earlier versions' cells may be kept.")
@click.option("--by", help="Who approves (default: user@host).")
@click.option("--require/--no-require", "require", default=None,
              help="From now on, runs refuse active versions without an approval (or stop requiring it).")
@click.option("--require-evidence/--no-require-evidence", "require_evidence", default=None,
              help="From now on, approvals must cite a passing comparison (mlsm-nb compare), and runs, extract and "
                   "serve's bundle swaps refuse an active version whose approval cites none (or stop requiring it).")
@click.option("--waive-evidence", metavar="REASON",
              help="Approve without a comparison, recording why (e.g. the first version of a model).")
@_mongo_options
@handle_errors
def approve(name, version, notebook, sha256, run_dir, by, require, require_evidence, waive_evidence, mongo_uri,
            mongo_db, mongo_collection, id_field):
    """Record in the model registry that model NAME VERSION may run as active (who, when, notebook sha256).

    Shows first what it approves: the sha256, the notebook, branch and commit it was registered from, and
    what changed in the production cells since the last approved version. A sha256 that differs from the
    last approval is approved only with --sha256 or --notebook. The approval cites the latest passing
    comparison of the approved code (mlsm-nb compare), if there is one.
    """
    from .audit.approvals import ChangedSinceApproval, format_review, set_approvals_required, set_evidence_required
    from .audit.approvals import approve as record_approval

    if not mongo_uri:
        _fail("approvals live in the MongoDB model registry: pass --mongo-uri (or set MLSM_MONGO_URI)", 2)
    if (name is None) != (version is None) or (name is None and require is None and require_evidence is None):
        _fail("usage: mlsm-nb approve NAME VERSION [--notebook PATH | --sha256 SHA256], "
              "or mlsm-nb approve --require/--no-require, --require-evidence/--no-require-evidence", 2)
    database = _audit_database(mongo_uri, mongo_db, mongo_collection, id_field)
    if name:
        try:
            review = record_approval(database, name, version, by=by, notebook=notebook, sha256=sha256, run=run_dir,
                                     waive_evidence=waive_evidence)
        except ChangedSinceApproval as exc:
            click.echo(format_review(exc.review))
            raise
        found = review.approval
        click.echo(format_review(review))
        click.echo(_cited(found.get("evidence")))
        click.echo(f"approved {name} {version} for sha256 {found['sha256']} by {found['by']} at {found['at']}")
    if require is not None:
        set_approvals_required(database, require, by=by)
        click.echo("approvals are now " + ("required: runs refuse unapproved active versions" if require
                                           else "optional"))
    if require_evidence is not None:
        set_evidence_required(database, require_evidence, by=by)
        click.echo("evidence is now " + ("required: approvals must cite a passing comparison, and runs, extract and "
                                         "serve refuse active versions whose approval cites none" if require_evidence
                                         else "optional"))


def _cited(evidence) -> str:
    """The line saying what an approval cites."""
    if not evidence:
        return "  evidence   none cited (no passing comparison of this code)"
    if evidence.get("waived"):
        return f"  evidence   waived: {evidence['waived']}"
    return (f"  evidence   {evidence['id']} (against {evidence['champion']}, AUC {evidence['auc_difference']:+.4f} on "
            f"{evidence['records']} records, passed)")


@main.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@click.option("--mongo-uri", envvar="MLSM_MONGO_URI", help="Also store served results in MongoDB (buffered; "
              "a database outage never blocks a response). The URI is never written anywhere.")
@click.option("--mongo-db", help="Database (default: the URI's, else 'mlsm').")
@_MONGO_IDS_PER_QUERY
@click.option("--id-field", default="id", show_default=True, help="The records' identifier field.")
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(min=1),
              help="Largest request body in bytes (larger: 413).")
@click.option("--max-records", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Most records in one request (more: 413).")
@click.option("--body-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a client may take to send a request body (slower: 408).")
@click.option("--poll", "poll_seconds", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between looks at BUNDLE_DIR for a new bundle.")
@click.option("--batch-max-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Records scored together at most when concurrent requests are batched (1: no batching; "
                   "a request with this many records or more is scored alone).")
@click.option("--batch-max-latency-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Longest a request waits in the queue for others to join its batch, in milliseconds.")
@click.option("--record-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds one record may take to score, per model: a record over it is answered with a "
                   "`timeout` error entry, the rest of the request is scored; 0: no limit.")
@click.option("--monitor", "monitor_path", type=click.Path(exists=True),
              help="A run directory (or its monitor.json): /metrics shows what `mlsm-nb monitor` last found there "
                   "as gauges (default with --mongo-uri: MongoDB's monitor collection).")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
@handle_errors
def serve(bundle_dir, host, port, workers, mongo_uri, mongo_db, mongo_ids_per_query, id_field, max_body, max_records,
          body_timeout, poll_seconds, batch_max_size, batch_max_latency_ms, record_timeout, monitor_path, access_log):
    """Serve the models of an extracted bundle over HTTP, swapping in new bundles.

    Set MLSM_SERVE_TOKEN to require `Authorization: Bearer <token>` on everything but /health.
    """
    import os

    from .serve.app import ServeSettings

    if not click.get_current_context().obj.get("debug"):
        logging.getLogger("mlsm_nb.serve").setLevel(logging.INFO)  # swaps and refusals belong in the log
    from .core.model import model_key
    from .serve.server import serve as run_server

    settings = ServeSettings(bundle_dir, token=os.environ.get("MLSM_SERVE_TOKEN") or None, max_body_bytes=max_body,
                             max_records=max_records, body_timeout=body_timeout, poll_seconds=poll_seconds,
                             id_field=id_field, mongo_uri=mongo_uri, mongo_db=mongo_db,
                             mongo_ids_per_query=mongo_ids_per_query, batch_max_size=batch_max_size,
                             batch_max_latency_ms=batch_max_latency_ms, record_timeout=record_timeout,
                             monitor=monitor_path)

    def ready(bundle):
        models = ", ".join(model_key(*m.key) + (" (draft)" if m.status == "draft" else "") for m in bundle.plan)
        click.echo(f"serving bundle {bundle.sha256[:12]} ({models}) on http://{host}:{port} "
                   f"with {workers} worker(s); watching {bundle_dir}", err=True)

    run_server(settings, host=host, port=port, workers=workers, access_log=access_log, on_ready=ready)


if __name__ == "__main__":  # pragma: no cover
    main()
