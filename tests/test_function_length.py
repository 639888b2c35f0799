"""No function longer than 60 lines (def line to last line, docstring included) in run/ and serve/."""

import ast
from pathlib import Path

import mlsm_nb

LIMIT = 60
PACKAGE = Path(mlsm_nb.__file__).parent
CHECKED = ("run", "serve")


def long_functions(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    found.append(f"{path}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_function_is_longer_than_60_lines():
    assert [line for part in CHECKED for line in long_functions(PACKAGE / part)] == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert [line.split(" ", 1)[1] for line in long_functions(tmp_path)] == [f"long: {LIMIT + 1} lines"]
