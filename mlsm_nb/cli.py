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


if __name__ == "__main__":  # pragma: no cover
    main()
