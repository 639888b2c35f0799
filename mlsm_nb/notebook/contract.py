"""The notebook contract: find the tagged cells, read their literals, lint.

Nothing here executes a notebook's code: `version`, `fields`, `models` and
`examples` are read as literals with `ast`, and signatures are checked on the
syntax tree. See docs/data-scientists.md for the contract in prose.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import nbformat.reader

from ..core.cells import cell_marker
from ..core.fields import PARSE_LOCK, parse_field
from ..core.model import NAME_PATTERN, STATUSES
from ..core.output import REASONS_KEY, reasons_problem
from ..exceptions import FieldSpecError, NotebookError, cell_ref, format_location

CONTRACT_TAGS = ("version", "fields", "parameters", "setup", "score", "examples", "models")
RUNNER_TAG = "mlsm-runner"  # the tag of the cells the runner adds to a production notebook (never an author's)
# Tags other tools give cells (nbval, papermill, Jupyter Book / nbconvert); lint lets them be.
TOOL_TAGS = ("nbval-ignore-output", "nbval-check-output", "nbval-skip", "nbval-raises-exception",
             "raises-exception", "skip-execution", "injected-parameters", "hide-input", "hide-output",
             "hide-cell", "remove-cell", "remove-input", "remove-output")
# A version goes into file and folder names: no separators, no NUL, no leading dot.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]*\Z")
# Tags that may appear at most once, and those a model or summary must have.
_SINGLE_TAGS = ("version", "fields", "parameters", "score", "examples", "models")
_VERSION_KEYS = {"name", "version", "status", "artifacts"}
_TYPE_NAMES = {"int", "float", "str", "bool"}
# Names an IPython kernel defines for every cell (production cells run in one); pyflakes knows Python's own.
IPYTHON_BUILTINS = ("display", "get_ipython", "In", "Out", "exit", "quit", "_", "__", "___",
                    "_i", "_ii", "_iii", "_ih", "_oh", "_dh")
_PRODUCTION_ONLY = ("production runs only the tagged cells: define it in a tagged cell, or save it beside the "
                    "notebook and load it in `setup`")


@dataclass
class Cell:
    """A production cell: its index in the notebook (from 0; people read `cell_ref`), its contract tag, its source."""

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
    missing_artifacts: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """"summary" when the notebook has a `models` cell, else "model"."""
        return "summary" if any(c.tag == "models" for c in self.cells) else "model"

    def cell(self, tag: str) -> Cell | None:
        """The (first) production cell with this tag."""
        return next((c for c in self.cells if c.tag == tag), None)

    def where(self, tag: str) -> tuple[int | None, str]:
        """(cell index or None, tag): where an error about the `tag` cell points."""
        cell = self.cell(tag)
        return (cell.index if cell else None), tag

    def production_source(self) -> str:
        """The production cells' sources in authored order, each under a marker line (`lay_out`)."""
        return lay_out((c.index, c.tag, c.source) for c in self.cells)

    def sha256(self, production_source: str | None = None, artifacts: Mapping[str, bytes] | None = None) -> str:
        """Hash of the production cells' sources and of the declared artifacts (with `production_source`: of
        those cells, as `production_source()` lays them out, and this notebook's artifacts; with `artifacts`:
        their bytes as `artifact_bytes` read them, not read again)."""
        source = self.production_source() if production_source is None else production_source
        digest = hashlib.sha256(source.encode())
        for name in sorted(self.artifacts):  # read one at a time: an artifact may be a large model file
            digest.update(f"\0artifact {name}\0".encode())
            digest.update(artifacts[name] if artifacts is not None else self._artifact(name))
        return digest.hexdigest()

    def artifact_bytes(self) -> dict[str, bytes]:
        """Each declared artifact's bytes as `sha256` hashes them, to hash them more than once as they were."""
        return {name: self._artifact(name) for name in self.artifacts}

    def _artifact(self, name: str) -> bytes:
        path = self.path.parent / name
        return path.read_bytes() if path.is_file() else b"<missing>"  # a missing one hashes as such

    def sha256_without_status(self, artifacts: Mapping[str, bytes] | None = None) -> str:
        """`sha256` with the version cell's `status` assignment left out: what a comparison (`mlsm-nb compare`)
        keys its evidence by, so that the draft compared and the same notebook made `active` hash alike."""
        return self.sha256(lay_out((c.index, c.tag, without_status(c.source) if c.tag == "version" else c.source)
                                   for c in self.cells), artifacts)


def without_status(source: str) -> str:
    """A version cell's source without its top-level `status = ...` assignment (every line of it); the source
    unchanged when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    for stmt in reversed(tree.body):
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "status" for t in stmt.targets):
            del lines[stmt.lineno - 1:stmt.end_lineno]
    return "".join(lines)


def lay_out(cells: Iterable[tuple[int, str, str]]) -> str:
    """Production cells given as (index, tag, source), each under its marker line: what `sha256` hashes."""
    return "".join(f"{cell_marker(index, tag)}\n{source}\n\n" for index, tag, source in cells)


def declarations(spec: NotebookSpec) -> dict:
    """What a notebook declares, as a JSON-ready dict (a bundle manifest's entry, the runner cell's literal)."""
    return {
        "name": spec.name, "version": spec.version, "status": spec.status, "kind": spec.kind,
        "fields": spec.fields, "models": spec.models, "artifacts": spec.artifacts,
        "has_score_frame": spec.has_score_frame,
    }


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
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
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


def _ipython_line(tree: ast.Module) -> int | None:
    """The first line that reaches IPython (`get_ipython().system(...)` is a shell escape too).

    `from IPython.display import ...` is allowed: showing outputs in the executed notebook is harmless.
    """
    for node in ast.walk(tree):
        name = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                else None)
        if name == "get_ipython":
            return node.lineno
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(m.split(".")[0] == "IPython" and m != "IPython.display" for m in modules):
                return node.lineno
    return None


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read an .ipynb file with nbformat; NotebookError when it is not a valid notebook."""
    path = Path(path)
    try:
        # Read and upgrade without nbformat's schema validation, which logs to stderr: lint
        # reports what the contract needs (tags, kernelspec, sources) itself, one line each.
        nb = nbformat.convert(nbformat.reader.reads(path.read_text(encoding="utf-8")), 4)
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

    def __init__(self, path: Path, check_git: bool = False):
        self.path = path
        self.check_git = check_git
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
                tree = ast.parse(cell.source, filename=format_location(self.path, cell.index, cell.tag))
        except SyntaxError as exc:
            self.add(f"syntax error at line {exc.lineno}: {exc.msg}", cell)
            return None
        line = _ipython_line(tree)
        if line is not None:
            self.add(f"line {line}: IPython (get_ipython(), magics, shell escapes) is not allowed in "
                     "production cells; use plain Python (subprocess, pathlib) in a setup cell", cell)
            return None
        return tree

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


def _cell_tags(index: int, raw, lint: _Linter) -> list[str]:
    """The cell's contract tags; unknown, misspelt and malformed tags are problems."""
    metadata = raw.get("metadata") if isinstance(raw, dict) else None
    tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
    if tags is None or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        lint.add(f"metadata.tags must be a list of strings, got {_short(tags)}; "
                 "set the tags again in the property inspector", Cell(index, "", ""))
        return []
    for tag in tags:
        if tag in CONTRACT_TAGS or tag in TOOL_TAGS:
            continue
        near = difflib.get_close_matches(tag.lower(), CONTRACT_TAGS, n=1, cutoff=0.6)
        advice = (f"did you mean `{near[0]}`?" if near else
                  f"the contract's tags are {', '.join(CONTRACT_TAGS)}; rename or remove it")
        lint.add(f"tag `{tag}` is not a contract tag; {advice}", Cell(index, tag, ""))
    return [t for t in tags if t in CONTRACT_TAGS]


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _source(raw) -> str | None:
    source = raw.get("source", "")
    source = "".join(map(str, source)) if isinstance(source, list) else source
    return source if isinstance(source, str) else None


def _collect_cells(nb: dict, lint: _Linter) -> tuple[list[Cell], list[Cell]]:
    """(production cells, untagged code cells), each in authored order."""
    cells, untagged = [], []
    for index, raw in enumerate(nb["cells"]):
        tags = _cell_tags(index, raw, lint)
        if not tags:
            source = _source(raw) if isinstance(raw, dict) and raw.get("cell_type") == "code" else None
            if source is not None:
                untagged.append(Cell(index, "", source))
            continue
        if len(tags) > 1:
            lint.add(f"cell carries several contract tags {tags}; give each its own cell",
                     Cell(index, tags[0], ""))
        if raw.get("cell_type") != "code":
            lint.add(f"a {raw.get('cell_type')} cell cannot carry the contract tag", Cell(index, tags[0], ""))
            continue
        source = _source(raw)
        if source is None:
            lint.add(f"the cell's source is {type(raw.get('source')).__name__}, not text", Cell(index, tags[0], ""))
            continue
        cells.append(Cell(index, tags[0], source))
    return cells, untagged


def _bound_names(source: str) -> set[str]:
    """The names a (workspace) cell binds at module level; IPython's magics and shell escapes are turned into
    plain calls first (IPython's own transformer: nothing runs)."""
    from IPython.core.inputtransformer2 import TransformerManager
    from pyflakes.checker import Builtin, Checker, ModuleScope

    try:
        with PARSE_LOCK:
            tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return set()
    checker = Checker(tree, builtins=IPYTHON_BUILTINS)
    module = next(scope for scope in checker.deadScopes if isinstance(scope, ModuleScope))
    return {name for name, binding in module.items() if not isinstance(binding, Builtin)}


def _check_names(spec: NotebookSpec, untagged: list[Cell], lint: _Linter) -> None:
    """Names the production cells use that no production cell defines before (pyflakes over the production
    cells in run order; a function's body may use what a later cell defines): production runs only those
    cells, so such a name fails there even when Run All works."""
    from pyflakes.checker import Builtin, Checker, ModuleScope
    from pyflakes.messages import UndefinedName

    parts = [c.source if c.source.endswith("\n") else c.source + "\n" for c in spec.cells]
    offsets = [sum(part.count("\n") for part in parts[:i]) for i in range(len(parts))]
    with PARSE_LOCK:
        tree = ast.parse("".join(parts))
    checker = Checker(tree, builtins=IPYTHON_BUILTINS)
    undefined = sorted((m for m in checker.messages if isinstance(m, UndefinedName)), key=lambda m: m.lineno)
    if not undefined:
        return
    module = next(scope for scope in checker.deadScopes if isinstance(scope, ModuleScope))
    known = {name: binding for name, binding in module.items() if not isinstance(binding, Builtin)}
    defined_by: dict[str, Cell] = {}
    for other in untagged:
        for name in _bound_names(other.source):
            defined_by.setdefault(name, other)

    def cell_at(line: int) -> int:
        return max(i for i, start in enumerate(offsets) if start < line)

    for message in undefined:
        position = cell_at(message.lineno)
        cell, name = spec.cells[position], message.message_args[0]
        where = f"line {message.lineno - offsets[position]}: `{name}`"
        if name in known and getattr(known[name].source, "lineno", None):
            later = spec.cells[cell_at(known[name].source.lineno)]
            lint.add(f"{where} is used before {cell_ref(later.index, later.tag)} defines it; production runs the "
                     "tagged cells in order: move the definition up", cell)
        elif name in defined_by:
            other = defined_by[name]
            lint.add(f"{where} is defined only in {cell_ref(other.index, '', other.source)}; {_PRODUCTION_ONLY}",
                     cell)
        else:
            near = difflib.get_close_matches(name, known, n=1)
            guess = f" (did you mean `{near[0]}`?)" if near else ""
            lint.add(f"{where} is not defined in any cell{guess}; {_PRODUCTION_ONLY}", cell)


def _check_counts(spec: NotebookSpec, lint: _Linter) -> None:
    counts = {tag: [c for c in spec.cells if c.tag == tag] for tag in CONTRACT_TAGS}
    for tag in _SINGLE_TAGS:
        for extra in counts[tag][1:]:
            lint.add(f"a second `{tag}` cell (the first is {cell_ref(counts[tag][0].index)}); keep exactly one",
                     extra)
    required = ["version", "score"] + (["models"] if spec.kind == "summary" else ["fields"])
    for tag in required:
        if not counts[tag]:
            lint.add(f"no cell tagged `{tag}`; a {spec.kind} notebook needs exactly one")


def _only_literal_assignments(cell: Cell, tree: ast.Module, names: set[str], what: str, lint: _Linter) -> bool:
    """Every statement is `name = <literal>` for one of `names`, each assigned once; else problems."""
    first: dict[str, int] = {}
    reported: set[int] = set()
    good = True
    for stmt in tree.body:
        target = (stmt.targets[0].id if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                  and isinstance(stmt.targets[0], ast.Name) else None)
        if target not in names:
            line = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            if line not in reported:
                reported.add(line)
                shown = cell.source.splitlines()[line - 1].strip()[:60]
                lint.add(f"line {line}: only {what} belong in the {cell.tag} cell (`{shown}`); "
                         "move other code to a `setup` cell", cell)
            good = False
        elif target in first:
            lint.add(f"line {stmt.lineno}: `{target}` is assigned again (first at line {first[target]}); "
                     "assign it once", cell)
            good = False
        else:
            first[target] = stmt.lineno
            try:
                _literal(stmt.value)
            except _NotLiteral:
                lint.add(f"line {stmt.lineno}: `{target}` must be a literal (no calls, names or expressions)", cell)
                good = False
    return good


def _check_version(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    if not _only_literal_assignments(cell, tree, _VERSION_KEYS,
                                     "literal `name`, `version`, `status` and `artifacts` assignments", lint):
        return
    name = lint.literal(cell, tree, "name")
    if name is not None:
        if isinstance(name, str) and NAME_PATTERN.match(name):
            spec.name = name
        else:
            lint.add(f"name {name!r} must match [a-z][a-z0-9_]* (lower case, digits, underscores)", cell)
    version = lint.literal(cell, tree, "version")
    if version is not None:
        if isinstance(version, str) and VERSION_PATTERN.match(version):
            spec.version = version
        else:
            lint.add(f"version {_short(version)} must be a string such as \"1.0.0\" "
                     "(letters, digits, and . _ + - after the first character)", cell)
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
            _check_artifacts(spec, cell, lint)
        else:
            lint.add("artifacts must be a list of relative file names beside the notebook", cell)


def _check_artifacts(spec: NotebookSpec, cell: Cell, lint: _Linter) -> None:
    folder = spec.path.parent
    for name in spec.artifacts:
        if not (folder / name).is_file():
            spec.missing_artifacts.append(name)
            lint.add(f"artifact `{name}` is listed in `artifacts` but {folder / name} does not exist; "
                     "run the cell that saves it, then commit the file beside the notebook", cell)
    if lint.check_git:
        for name in _untracked(folder, [a for a in spec.artifacts if a not in spec.missing_artifacts]):
            lint.add(f"artifact `{name}` is not tracked by git, so Jenkins and everyone else lack it; "
                     f"`git add {folder / name}` and commit", cell)


def _untracked(folder: Path, names: list[str]) -> list[str]:
    """The files among `names` that git does not track (none when `folder` is not in a repository)."""
    if not names:
        return []
    try:
        done = subprocess.run(["git", "ls-files", "-z", "--", *names], cwd=folder, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:  # not a repository
        return []
    tracked = set(done.stdout.decode(errors="replace").split("\0"))
    return [n for n in names if Path(n).as_posix() not in tracked]


def _check_fields(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    if not _only_literal_assignments(cell, tree, {"fields"}, "`fields = {...}` (a literal dict)", lint):
        return
    fields = lint.literal(cell, tree, "fields")
    if fields is None:
        return
    if not isinstance(fields, dict):
        lint.add(f"fields must be a dict of field name -> type or spec, got {type(fields).__name__}", cell)
        return
    good = True
    for name, entry in fields.items():  # every field's problem at once, not only the first
        try:
            parse_field(name, entry)
        except FieldSpecError as exc:
            lint.add(str(exc), cell)
            good = False
    if good:
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
    if score is not None:
        _check_returned_reasons(score, cell, lint)


def _check_returned_reasons(score: ast.FunctionDef, cell: Cell, lint: _Linter) -> None:
    """A `_reasons` that `score` returns as a literal (`return {..., "_reasons": [...]}`) must be a valid one
    (`core.output.reasons_problem`); one computed at run time is checked where it is scored."""
    for node in ast.walk(score):
        if not (isinstance(node, ast.Return) and isinstance(node.value, ast.Dict)):
            continue
        for key, value in zip(node.value.keys, node.value.values, strict=True):
            if not (isinstance(key, ast.Constant) and key.value == REASONS_KEY):
                continue
            try:
                reasons = ast.literal_eval(value)
            except ValueError:
                continue
            problem = reasons_problem(reasons)
            if problem:
                lint.add(f"line {value.lineno}: score returns a bad {REASONS_KEY}: {problem}", cell)


def _check_models(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    if not _only_literal_assignments(cell, tree, {"models"}, "`models = [...]` (a literal list)", lint):
        return
    models = lint.literal(cell, tree, "models")
    if models is None:
        return
    good = isinstance(models, list) and models and all(
        isinstance(m, dict) and set(m) == {"name", "version"}
        and NAME_PATTERN.match(str(m["name"])) and isinstance(m["version"], str)
        and VERSION_PATTERN.match(m["version"]) for m in models)
    if not good:
        lint.add('models must be a non-empty list like [{"name": "lead_rules", "version": "1.0.0"}]', cell)
        return
    spec.models = models


def _check_examples(spec: NotebookSpec, cell: Cell, tree: ast.Module, lint: _Linter) -> None:
    if not _only_literal_assignments(cell, tree, {"examples"}, "`examples = [...]` (a literal list)", lint):
        return
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
    for number, example in enumerate(examples):
        problem = REASONS_KEY in example["expected"] and reasons_problem(example["expected"][REASONS_KEY])
        if problem:
            lint.add(f"example {number}: in `expected`, {problem} (see `{REASONS_KEY}` in docs/data-scientists.md)",
                     cell)
            return
    spec.examples = examples


_CHECKS = {"version": _check_version, "fields": _check_fields, "score": _check_score,
           "models": _check_models, "examples": _check_examples}


def _kernel_problem(path: Path, nb: dict) -> NotebookError | None:
    """Papermill starts the notebook's own kernel: it must name one, for Python."""
    metadata = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    kernelspec = metadata.get("kernelspec")
    if not isinstance(kernelspec, dict) or not isinstance(kernelspec.get("name"), str) or not kernelspec["name"]:
        return NotebookError(path, "no kernelspec in the notebook's metadata (papermill cannot run it); "
                             "open it in JupyterLab, choose the Python 3 kernel and save")
    info = metadata.get("language_info")
    language = kernelspec.get("language") or (info.get("name") if isinstance(info, dict) else None) or "python"
    if not isinstance(language, str) or language.lower() != "python":
        return NotebookError(path, f"kernel language is {language!r}; mlsm-nb runs Python notebooks")
    return None


def inspect_notebook(path: str | Path, *, check_git: bool = False,
                     check_names: bool = False) -> tuple[NotebookSpec | None, list[NotebookError]]:
    """Read a notebook's declarations and every contract problem, without running it.

    `check_git` also asks git whether the declared artifacts are tracked; `check_names` also finds names the
    production cells use that only untagged cells, or no cell, define (lint and validate do both; a run
    meets such a name as the NameError of the cell or record that uses it).
    """
    path = Path(path)
    lint = _Linter(path, check_git)
    try:
        nb = read_notebook(path)
    except NotebookError as exc:
        return None, [exc]
    if not isinstance(nb["cells"], list) or not nb["cells"]:
        return None, [NotebookError(path, "the notebook is empty (no cells)")]
    problem = _kernel_problem(path, nb)
    if problem:
        return None, [problem]
    cells, untagged = _collect_cells(nb, lint)
    spec = NotebookSpec(path=path, cells=cells)
    _check_counts(spec, lint)
    parsed = True
    for cell in spec.cells:
        tree = lint.parse(cell)
        parsed = parsed and tree is not None
        check = _CHECKS.get(cell.tag)
        if tree is not None and check is not None and cell is spec.cell(cell.tag):
            check(spec, cell, tree, lint)
    if check_names and parsed:  # a cell that does not parse is reported already; its names would look undefined
        _check_names(spec, untagged, lint)
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

