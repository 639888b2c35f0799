"""What an extracted model module declares, read with `ast` (never run): its `parameters` cell's
defaults, and its outputs.

A model's outputs are the keys of what `score` returns, which only running it would tell for sure.
What the notebook states is enough for the Open Inference Protocol's model metadata: the string keys
of the dict literals `score` returns, then the keys its `examples` expect; each typed ("int",
"float", "str", "bool") by the examples' expected values, else by the returned expression where its
form tells (a literal, an f-string, a division, a comparison, `float(...)`, `round(x, n)`, ...), else
None (not known without running it).
"""

from __future__ import annotations

import ast

from ..core.cells import CELL_MARKER
from ..core.fields import PARSE_LOCK
from ..core.output import REASONS_KEY

_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}
_CALL_TYPES = {"float": "float", "int": "int", "str": "str", "bool": "bool", "len": "int", "repr": "str"}


def _cell_trees(module_text: str, tag: str) -> list[ast.Module]:
    """The syntax trees of the cells tagged `tag` in an extracted module (cells that do not parse left out)."""
    parts = CELL_MARKER.split(module_text)  # [header, index, tag, source, index, tag, source, ...]
    trees = []
    for cell_tag, source in zip(parts[2::3], parts[3::3], strict=False):
        if cell_tag == tag:
            try:
                with PARSE_LOCK:
                    trees.append(ast.parse(source))
            except SyntaxError:
                continue
    return trees


def module_parameters(module_text: str) -> dict:
    """The defaults of the `parameters` cell of an extracted module.

    A value that is not a literal is given as its source text.
    """
    trees = _cell_trees(module_text, "parameters")
    found = {}
    for node in trees[0].body if trees else ():
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                found[node.targets[0].id] = ast.unparse(node.value)
    return found


def _merge(known: str | None, new: str | None) -> str | None:
    """One output's type from two sightings: an int and a float make a float; other disagreements, None."""
    if known is None or new is None or known == new:
        return known or new
    return "float" if {known, new} == {"int", "float"} else None


def _expression_type(node: ast.expr) -> str | None:
    """The type a returned expression has, where its form alone tells."""
    if isinstance(node, ast.Constant):
        return _TYPES.get(type(node.value))
    if isinstance(node, ast.JoinedStr):
        return "str"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return "float"
    if isinstance(node, ast.Compare) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return "bool"
    if isinstance(node, ast.IfExp):
        body, orelse = _expression_type(node.body), _expression_type(node.orelse)
        return _merge(body, orelse) if body and orelse else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "round":
            return "float" if len(node.args) == 2 else "int"
        return _CALL_TYPES.get(node.func.id)
    return None


def _returned_outputs(trees: list[ast.Module], outputs: dict[str, str | None]) -> None:
    for tree in trees:
        for function in tree.body:
            if not (isinstance(function, ast.FunctionDef) and function.name == "score"):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            outputs[key.value] = _merge(outputs.get(key.value), _expression_type(value))


def _expected_outputs(trees: list[ast.Module], outputs: dict[str, str | None]) -> None:
    for tree in trees:
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "examples" for t in node.targets)):
                continue
            try:
                examples = ast.literal_eval(node.value)
            except ValueError:
                continue
            for example in examples if isinstance(examples, list) else ():
                expected = example.get("expected") if isinstance(example, dict) else None
                for key, value in expected.items() if isinstance(expected, dict) else ():
                    seen = _TYPES.get(type(value)) if value is not None else None
                    outputs[key] = seen if key not in outputs else _merge(outputs[key], seen)


def module_outputs(module_text: str) -> dict[str, str | None]:
    """The outputs an extracted module's `score` returns, name -> type (None where not known), in the
    order the notebook states them."""
    returned: dict[str, str | None] = {}
    _returned_outputs(_cell_trees(module_text, "score"), returned)
    expected: dict[str, str | None] = {}
    _expected_outputs(_cell_trees(module_text, "examples"), expected)
    outputs = dict(returned)
    for key, seen in expected.items():  # where the two disagree (but for int and float), the example is right
        stated = outputs.get(key)
        outputs[key] = _merge(stated, seen) or seen or stated
    outputs.pop(REASONS_KEY, None)  # every model may give it: one of the protocol's META_OUTPUTS
    return outputs
