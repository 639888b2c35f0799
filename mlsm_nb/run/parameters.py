"""The parameters notebooks define (their `parameters` cell, read with `ast`, never run)."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

from ..exceptions import ConfigError, SettingsError, format_location
from ..notebook.contract import NotebookSpec


def notebook_parameters(spec: NotebookSpec) -> dict[str, str]:
    """Name -> default (as written in the source) of each name the `parameters` cell assigns."""
    cell = spec.cell("parameters")
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise ConfigError(f"{format_location(spec.path, cell.index, cell.tag)}: line {exc.lineno}: {exc.msg}") from None
    found: dict[str, str] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        value = getattr(node, "value", None)
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = ast.get_source_segment(cell.source, value) if value is not None else ""
    return found


def check_parameters(specs: Sequence[NotebookSpec], parameters: Mapping) -> None:
    """SettingsError naming the known parameters if a name in `parameters` is defined by no notebook."""
    known = sorted({name for spec in specs for name in notebook_parameters(spec)})
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise SettingsError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: no notebook's "
                          f"`parameters` cell defines {'them' if len(unknown) > 1 else 'it'}; known parameters: "
                          + (", ".join(known) if known else "none"))


def list_parameters(paths: Sequence) -> list[tuple[str, str, str]]:
    """(notebook path, name, default as written) of every parameter the notebooks in `paths` define."""
    from ..notebook.contract import find_notebooks, lint_notebook

    notebooks = find_notebooks(paths)
    if not notebooks:
        raise ConfigError(f"no notebooks found in {', '.join(map(str, paths))}")
    return [(str(path), name, default) for path in notebooks
            for name, default in notebook_parameters(lint_notebook(path)).items()]
