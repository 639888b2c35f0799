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
    from .templates import new_notebook

    path = new_notebook(kind, name, folder, models)
    click.echo(f"created {path}: open it in JupyterLab, then run `mlsm-nb lint {path}`")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@handle_errors
def lint(paths: tuple[str, ...]) -> None:
    """Check notebooks (files or folders) against the notebook contract.

    Prints every problem as `path:cell N [tag]: message`; exit 1 if any.
    """
    from .notebook import find_notebooks, inspect_notebook

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
@handle_errors
def extract(paths: tuple[str, ...], out_dir: str) -> None:
    """Extract notebooks into a bundle of Python modules with a manifest."""
    from .extract import extract_bundle

    manifest = extract_bundle(paths, out_dir)
    for entry in manifest["models"]:
        click.echo(f"{entry['kind']:8} {entry['name']} {entry['version']} ({entry['status']}) "
                   f"<- {entry['source']}")
    click.echo(f"bundle written to {out_dir}")


if __name__ == "__main__":  # pragma: no cover
    main()
