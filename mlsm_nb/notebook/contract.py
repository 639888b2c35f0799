"""The notebook contract: find the tagged cells, read their literals, lint.

Nothing here executes a notebook's code: `version`, `fields`, `models` and
`examples` are read as literals with `ast`, and signatures are checked on the
syntax tree. See docs/data-scientists.md for the contract in prose.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..exceptions import FieldSpecError, NotebookError
from ..core.fields import PARSE_LOCK, parse_fields
from ..core.model import NAME_PATTERN, STATUSES

CONTRACT_TAGS = ("version", "fields", "parameters", "setup", "score", "examples", "models")
# Tags that may appear at most once, and those a model or summary must have.
_SINGLE_TAGS = ("version", "fields", "parameters", "score", "examples", "models")
_VERSION_KEYS = {"name", "version", "status", "artifacts"}
_TYPE_NAMES = {"int", "float", "str", "bool"}


@dataclass
class Cell:
    """A production cell: its index in the notebook, its contract tag, its source."""

    index: int
    tag: str
    source: str


@dataclass
class NotebookSpec:
    """What a notebook declares, read without running it."""

    path: Path
    cells: list[Cell]
    name: str = ""
    version: str = ""
    status: str = "draft"
    artifacts: list[str] = field(default_factory=list)
    fields: dict | None = None
    models: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    has_score_frame: bool = False

    @property
    def kind(self) -> str:
        """"summary" when the notebook has a `models` cell, else "model"."""
        return "summary" if any(c.tag == "models" for c in self.cells) else "model"

    def cell(self, tag: str) -> Cell | None:
        """The (first) production cell with this tag."""
        return next((c for c in self.cells if c.tag == tag), None)

    def production_source(self) -> str:
        """The production cells' sources in authored order, each under a marker line."""
        return "".join(f"# --- cell {c.index} [{c.tag}] ---\n{c.source}\n\n" for c in self.cells)

    def sha256(self) -> str:
        """Hash of the production cells' sources and of the declared artifacts."""
        digest = hashlib.sha256(self.production_source().encode())
        for name in sorted(self.artifacts):
            artifact = self.path.parent / name
            digest.update(f"\0artifact {name}\0".encode())
            digest.update(artifact.read_bytes() if artifact.is_file() else b"<missing>")
        return digest.hexdigest()


class _NotLiteral(ValueError):
    pass


def _literal(node: ast.AST) -> Any:
    """A literal value; the names int/float/str/bool stand for their type names."""
    if isinstance(node, ast.Name) and node.id in _TYPE_NAMES:
        return node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral(node)
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    raise _NotLiteral(node)


def _assignments(tree: ast.Module) -> dict[str, tuple[ast.AST, int]]:
    """Simple `name = value` statements of a cell: name -> (value node, line)."""
    found = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            found[stmt.targets[0].id] = (stmt.value, stmt.lineno)
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef)}


def _positional(func: ast.FunctionDef) -> list[str]:
    return [a.arg for a in func.args.posonlyargs + func.args.args]


def _magic_line(source: str) -> int | None:
    for number, line in enumerate(source.splitlines(), 1):
        if line.lstrip().startswith(("%", "!")):
            return number
    return None


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read an .ipynb file with nbformat; NotebookError when it is not a valid notebook."""
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookError(path, "no such file") from None
    except Exception as exc:  # nbformat raises JSON, validation and reader errors
        raise NotebookError(path, f"not a readable notebook: {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(nb, dict) or "cells" not in nb:
        raise NotebookError(path, "not a notebook (no cells)")
    return nb


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


class _Linter:
    """Collects every contract problem of one notebook."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[NotebookError] = []

    def add(self, message: str, cell: Cell | None = None) -> None:
        self.problems.append(NotebookError(self.path, message,
                                           cell.index if cell else None, cell.tag if cell else None))

    def parse(self, cell: Cell) -> ast.Module | None:
        line = _magic_line(cell.source)
        if line is not None:
            self.add(f"line {line}: IPython magics and shell escapes are not allowed in production cells", cell)
            return None
        try:
            with PARSE_LOCK:
                return ast.parse(cell.source, filename=f"{self.path}:cell {cell.index}")
        except SyntaxError as exc:
            self.add(f"syntax error at line {exc.lineno}: {exc.msg}", cell)
            return None

    def literal(self, cell: Cell, tree: ast.Module, name: str, required: bool = True) -> Any:
        found = _assignments(tree).get(name)
        if found is None:
            if required:
                self.add(f"`{name} = ...` is missing", cell)
            return None
        node, line = found
        try:
            return _literal(node)
        except _NotLiteral:
            self.add(f"line {line}: `{name}` must be a literal (no calls, names or expressions)", cell)
            return None


def _collect_cells(nb: dict, lint: _Linter) -> list[Cell]:
    cells = []
    for index, raw in enumerate(nb["cells"]):
        tags = [t for t in raw.get("metadata", {}).get("tags", []) if t in CONTRACT_TAGS]
        if not tags:
            continue
        if len(tags) > 1:
            lint.add(f"cell carries several contract tags {tags}; give each its own cell",
                     Cell(index, tags[0], ""))
        if raw.get("cell_type") != "code":
            lint.add(f"a {raw.get('cell_type')} cell cannot carry the contract tag", Cell(index, tags[0], ""))
            continue
        source = raw.get("source", "")
        cells.append(Cell(index, tags[0], "".join(source) if isinstance(source, list) else source))
    return cells


def _check_counts(spec: NotebookSpec, lint: _Linter) -> None:
    counts = {tag: [c for c in spec.cells if c.tag == tag] for tag in CONTRACT_TAGS}
    for tag in _SINGLE_TAGS:
        for extra in counts[tag][1:]:
            lint.add(f"a second `{tag}` cell (the first is cell {counts[tag][0].index}); keep exactly one", extra)
    required = ["version", "score"] + (["models"] if spec.kind == "summary" else ["fields"])
    for tag in required:
        if not counts[tag]:
            lint.add(f"no cell tagged `{tag}`; a {spec.kind} notebook needs exactly one")


def _check_version(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not (names and set(names) <= _VERSION_KEYS) and not isinstance(stmt, ast.Expr):
            lint.add(f"line {stmt.lineno}: only `name`, `version`, `status` and `artifacts` "
                     "assignments belong in the version cell", cell)
    name = lint.literal(cell, tree, "name")
    if name is not None:
        if isinstance(name, str) and NAME_PATTERN.match(name):
            spec.name = name
        else:
            lint.add(f"name {name!r} must match [a-z][a-z0-9_]* (lower case, digits, underscores)", cell)
    version = lint.literal(cell, tree, "version")
    if version is not None:
        if isinstance(version, str) and version.strip():
            spec.version = version
        else:
            lint.add(f"version must be a non-empty string such as \"1.0.0\", got {version!r}", cell)
    status = lint.literal(cell, tree, "status")
    if status is not None:
        if status in STATUSES:
            spec.status = status
        else:
            lint.add(f"status {status!r} must be one of {', '.join(STATUSES)}", cell)
    artifacts = lint.literal(cell, tree, "artifacts", required=False)
    if artifacts is not None:
        if isinstance(artifacts, list) and all(isinstance(a, str) and a and not Path(a).is_absolute()
                                               and ".." not in Path(a).parts for a in artifacts):
            spec.artifacts = artifacts
        else:
            lint.add("artifacts must be a list of relative file names beside the notebook", cell)


def _check_fields(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    fields = lint.literal(cell, tree, "fields")
    if fields is None:
        return
    try:
        parse_fields(fields)
    except FieldSpecError as exc:
        lint.add(str(exc), cell)
        return
    spec.fields = fields


def _check_score(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    functions = _functions(tree)
    score = functions.get("score")
    if score is None:
        lint.add("must define `def score(data, results):`", cell)
    elif _positional(score) != ["data", "results"] or score.args.vararg or score.args.kwonlyargs:
        lint.add(f"line {score.lineno}: score must take exactly (data, results), "
                 f"not ({', '.join(_positional(score))})", cell)
    frame = functions.get("score_frame")
    if frame is not None:
        if len(_positional(frame)) != 1:
            lint.add(f"line {frame.lineno}: score_frame must take exactly one argument (frame)", cell)
        else:
            spec.has_score_frame = True


def _check_models(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    models = lint.literal(cell, tree, "models")
    if models is None:
        return
    good = isinstance(models, list) and models and all(
        isinstance(m, dict) and set(m) == {"name", "version"}
        and all(isinstance(v, str) and v for v in m.values()) for m in models)
    if not good:
        lint.add('models must be a non-empty list like [{"name": "lead_rules", "version": "1.0.0"}]', cell)
        return
    spec.models = models


def _check_examples(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    examples = lint.literal(cell, tree, "examples")
    if examples is None:
        return
    good = isinstance(examples, list) and all(
        isinstance(e, dict) and isinstance(e.get("data"), dict) and isinstance(e.get("expected"), dict)
        and set(e) <= {"data", "expected", "results"} for e in examples)
    if not good:
        lint.add('examples must be a list like [{"data": {...}, "expected": {...}}] '
                 '(optionally "results" for a summary)', cell)
        return
    spec.examples = examples


_CHECKS = {"version": _check_version, "fields": _check_fields, "score": _check_score,
           "models": _check_models, "examples": _check_examples}


def inspect_notebook(path: str | Path) -> tuple[NotebookSpec | None, list[NotebookError]]:
    """Read a notebook's declarations and every contract problem, without running it."""
    path = Path(path)
    lint = _Linter(path)
    try:
        nb = read_notebook(path)
    except NotebookError as exc:
        return None, [exc]
    if not nb["cells"]:
        return None, [NotebookError(path, "the notebook is empty (no cells)")]
    language = (nb.get("metadata", {}).get("kernelspec", {}).get("language")
                or nb.get("metadata", {}).get("language_info", {}).get("name") or "python")
    if language.lower() != "python":
        return None, [NotebookError(path, f"kernel language is {language!r}; mlsm-nb runs Python notebooks")]
    spec = NotebookSpec(path=path, cells=_collect_cells(nb, lint))
    _check_counts(spec, lint)
    for cell in spec.cells:
        tree = lint.parse(cell)
        check = _CHECKS.get(cell.tag)
        if tree is not None and check is not None and cell is spec.cell(cell.tag):
            check(spec, cell, tree, lint)
    return spec, lint.problems


def lint_notebook(path: str | Path) -> NotebookSpec:
    """The notebook's declarations; raises the first NotebookError when the contract is broken."""
    spec, problems = inspect_notebook(path)
    if problems:
        raise problems[0]
    return spec


def find_notebooks(paths) -> list[Path]:
    """The .ipynb files named, and those inside named folders (sorted, no checkpoints)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found

