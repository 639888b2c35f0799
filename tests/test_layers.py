"""The parts import one way: each module imports only from its own layer or the layers below it.

The order is docs/design.md's ("The parts"): every `import` counts, at module level or inside a function,
and so does a front door's lazy `_WHERE` table; imports under `if TYPE_CHECKING:` do not (they never run).
Written with `ast` rather than import-linter: the rule is this one table and one walk over the source.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlsm_nb

PACKAGE = Path(mlsm_nb.__file__).parent

# Lowest first. A module may import from its own layer and from any layer below it.
LAYERS = [
    {"mlsm_nb._gc", "mlsm_nb._imports", "mlsm_nb._lazy", "mlsm_nb._version", "mlsm_nb.clock",
     "mlsm_nb.exceptions", "mlsm_nb.files", "mlsm_nb.histogram", "mlsm_nb.leads", "mlsm_nb.processes",
     "mlsm_nb.redact"},
    {"mlsm_nb.core"},
    {"mlsm_nb.notebook"},
    {"mlsm_nb.validate"},
    {"mlsm_nb.store"},
    {"mlsm_nb.run"},
    {"mlsm_nb.audit"},
    {"mlsm_nb.report"},
    {"mlsm_nb.serve"},
    {"mlsm_nb", "mlsm_nb.cli", "mlsm_nb.compat", "mlsm_nb.widgets"},  # the front door and the tools beside cli
]

# (importer, imported) pairs still against the order, each with the branch that removes it.
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """The layer of a module: that of the listed part it is or belongs to (`mlsm_nb` itself: its front door)."""
    found = None
    for index, members in enumerate(LAYERS):
        for member in members:
            if module == member or (member != "mlsm_nb" and module.startswith(member + ".")):
                found = index
    assert found is not None, f"{module}: in no layer of tests/test_layers.py; add it to LAYERS"
    return found


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every mlsm_nb module `path` imports, `from a import b` counted as a.b when a.b is a
    module, else as a."""
    importer, is_package = _module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, is_package, node.level, node.module)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() \
                    or (PACKAGE.parent / Path(*candidate.split("."))).is_dir()
                found.append((node.lineno, candidate if is_module else base))
        elif isinstance(node, ast.Assign) and is_package and any(
                isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets):
            for value in node.value.values:  # ".module" or "..part.module", relative to the package
                dots = len(value.value) - len(value.value.lstrip("."))
                found.append((node.lineno, _resolve(importer, True, dots, value.value.lstrip("."))))
    return [(line, name) for line, name in found if name == "mlsm_nb" or name.startswith("mlsm_nb.")]


def violations() -> list[str]:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for line, imported in imports_of(path):
            if _layer(imported) > _layer(importer) and (importer, _part(imported)) not in KNOWN:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} imports {imported}, "
                             "a layer above it")
    return sorted(set(found))


def _part(module: str) -> str:
    """`module` as KNOWN names it: down to the module file (a.b.c for a name imported from a.b.c)."""
    while module.count(".") > 1 and not (PACKAGE.parent / Path(*module.split("."))).with_suffix(".py").is_file():
        module = module.rsplit(".", 1)[0]
    return module


def test_parts_import_one_way():
    assert violations() == []


def test_serve_needs_nothing_of_run():
    """The service scores with the core alone (record checks and id typing are core's), never the run path."""
    served = [(path, imported) for path in sorted((PACKAGE / "serve").rglob("*.py"))
              for _, imported in imports_of(path) if imported == "mlsm_nb.run" or imported.startswith("mlsm_nb.run.")]
    assert served == []


def test_known_exceptions_are_still_needed():
    """Each known exception still happens (delete it from KNOWN when its branch lands)."""
    seen = {(_module_name(path), _part(imported)) for path in PACKAGE.rglob("*.py")
            for _, imported in imports_of(path)}
    assert KNOWN <= seen


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        _layer(_module_name(path))


def test_an_upward_import_inside_a_function_is_found(tmp_path, monkeypatch):
    """The check sees through function bodies and skips TYPE_CHECKING blocks."""
    package = tmp_path / "mlsm_nb"
    (package / "core").mkdir(parents=True)
    (package / "run").mkdir()
    (package / "core" / "__init__.py").write_text("")
    (package / "run" / "__init__.py").write_text("")
    (package / "run" / "engines.py").write_text("")
    (package / "core" / "scoring.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..run import engines\n"
        "def f():\n    from ..run.engines import get_engine\n")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert imports_of(package / "core" / "scoring.py") == [(5, "mlsm_nb.run.engines")]
    assert violations() == ["mlsm_nb/core/scoring.py:5: mlsm_nb.core.scoring imports mlsm_nb.run.engines, "
                            "a layer above it"]
