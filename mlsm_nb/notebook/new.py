"""`mlsm-nb new`: start a model or summary notebook from the shipped templates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ..core.model import NAME_PATTERN
from ..exceptions import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
KINDS = ("model", "summary")


def _tagged(nb, tag: str):
    return next(c for c in nb.cells if tag in c.get("metadata", {}).get("tags", []))


def parse_model_ref(text: str) -> dict:
    """`name:version` -> {"name": ..., "version": ...}."""
    name, sep, version = text.partition(":")
    if not sep or not NAME_PATTERN.match(name) or not version:
        raise ConfigError(f"--models entry {text!r} must look like name:version (e.g. lead_rules:1.0.0)")
    return {"name": name, "version": version}


def new_notebook(kind: str, name: str, folder: str | Path = "notebooks",
                 models: Sequence[str] = ()) -> Path:
    """Write `<folder>/<name>.ipynb` from the template of `kind`; never overwrites.

    For a summary, `models` ("name:version" strings) replace the template's
    `models` list (and its examples, which were written for the template's).
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"name {name!r} must match [a-z][a-z0-9_]* (lower case, digits, underscores)")
    if models and kind != "summary":
        raise ConfigError("--models only applies to summary notebooks")
    target = Path(folder) / f"{name}.ipynb"
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another name or remove it first")
    nb = nbformat.read(TEMPLATE_DIR / f"{kind}.ipynb", as_version=4)
    version_cell = _tagged(nb, "version")
    version_cell.source = re.sub(r"^name = .*$", f"name = {json.dumps(name)}", version_cell.source, flags=re.M)
    nb.cells[0].source = re.sub(r"`my_\w+`", f"`{name}`", nb.cells[0].source, count=1)
    if models:
        refs = [parse_model_ref(m) for m in models]
        _tagged(nb, "models").source = "models = [\n" + "".join(f"    {json.dumps(r)},\n" for r in refs) + "]"
        _tagged(nb, "examples").source = "examples = []  # add model results in, summary out"
        _tagged(nb, "examples").outputs = []
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "x") as f:
        nbformat.write(nb, f)
    return target
