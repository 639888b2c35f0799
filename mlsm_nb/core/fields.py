"""Field specs: parse a model's `fields`, validate inputs, generate legal inputs.

A `fields` mapping gives each input field a type (`int`, `float`, `str`,
`bool`, as the Python type or its name) or a spec dict::

    {"type": "float", "required": True, "nullable": False,
     "min": 0, "max": 1, "allowed": [...]}

Validation is compiled once per model into one Python function with the checks
inline, so scoring a record costs a single call when its inputs are good; only
a bad input pays for a readable explanation. `bool` is not an `int`; an `int`
is a valid `float`.
"""

from __future__ import annotations

import difflib
import math
import numbers
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import FieldSpecError

TYPE_NAMES = ("int", "float", "str", "bool")
# CPython 3.11's parser is not safe to call from several threads at once ("SystemError: AST
# constructor recursion depth mismatch"): every ast.parse/compile of mlsm-nb holds this lock.
PARSE_LOCK = threading.Lock()
_SPEC_KEYS = {"type", "required", "nullable", "min", "max", "allowed"}
_MISSING = object()


@dataclass(frozen=True)
class FieldSpec:
    """One input field of a model."""

    name: str
    type: str
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple | None = None


def _type_name(field: str, value: Any) -> str:
    if isinstance(value, type) and value.__name__ in TYPE_NAMES:
        return value.__name__
    if isinstance(value, str) and value in TYPE_NAMES:
        return value
    near = difflib.get_close_matches(str(value).lower(), TYPE_NAMES, n=1, cutoff=0.5)
    guess = f" (did you mean `{near[0]}`?)" if near else ""
    raise FieldSpecError(field, f"unknown type {value!r}{guess}; use one of {', '.join(TYPE_NAMES)}")


def parse_field(name: str, spec: Any) -> FieldSpec:
    """Parse one `fields` entry (a type or a spec dict) into a FieldSpec."""
    if not isinstance(name, str) or not name:
        raise FieldSpecError(str(name), "field names must be non-empty strings")
    if not isinstance(spec, Mapping):
        return FieldSpec(name, _type_name(name, spec))
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        guesses = [f"`{near[0]}`" for key in sorted(unknown)
                   if (near := difflib.get_close_matches(str(key), _SPEC_KEYS, n=1))]
        guess = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise FieldSpecError(name, f"unknown spec key(s) {sorted(unknown)}{guess}; known: {sorted(_SPEC_KEYS)}")
    if "type" not in spec:
        raise FieldSpecError(name, "spec dict needs a 'type'")
    type_name = _type_name(name, spec["type"])
    for flag in ("required", "nullable"):
        if not isinstance(spec.get(flag, False), bool):
            raise FieldSpecError(name, f"{flag!r} must be True or False")
    bounds = {}
    for key in ("min", "max"):
        value = spec.get(key)
        if value is None:
            continue
        if type_name not in ("int", "float"):
            raise FieldSpecError(name, f"{key!r} only applies to int and float fields")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldSpecError(name, f"{key!r} must be a number, got {value!r}")
        bounds[key] = value
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise FieldSpecError(name, f"min {bounds['min']!r} is greater than max {bounds['max']!r}")
    allowed = spec.get("allowed")
    if allowed is not None:
        if isinstance(allowed, (str, bytes)) or not isinstance(allowed, Iterable):
            raise FieldSpecError(name, "'allowed' must be a list of values")
        allowed = tuple(allowed)
        if not allowed:
            raise FieldSpecError(name, "'allowed' is empty: no value could ever pass")
        bad = [v for v in allowed if _type_error(type_name, v)]
        if bad:
            raise FieldSpecError(name, f"'allowed' values {bad!r} are not of type {type_name}")
    return FieldSpec(
        name,
        type_name,
        required=spec.get("required", True),
        nullable=spec.get("nullable", False),
        min=bounds.get("min"),
        max=bounds.get("max"),
        allowed=allowed,
    )


def parse_fields(fields: Mapping | None) -> tuple[FieldSpec, ...]:
    """Parse a whole `fields` mapping; None or {} means no declared inputs."""
    if fields is None:
        return ()
    if not isinstance(fields, Mapping):
        raise FieldSpecError("<fields>", f"fields must be a dict, got {type(fields).__name__}")
    return tuple(parse_field(name, spec) for name, spec in fields.items())


# --- validation -----------------------------------------------------------

def _type_error(type_name: str, value: Any) -> bool:
    """True when `value` is not of the field type (the lenient, exact rule)."""
    if type_name == "bool":
        return not (isinstance(value, bool) or type(value).__name__ == "bool_")
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return True
    if type_name == "int":
        return not isinstance(value, numbers.Integral)
    if type_name == "float":
        return not isinstance(value, numbers.Real)
    return not isinstance(value, str)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(spec: FieldSpec, data: Mapping) -> tuple[str, str] | None:
    """Why `data` fails `spec`, as (error kind, message); None when it passes."""
    value = data.get(spec.name, _MISSING)
    where = f"field {spec.name!r}"
    if value is _MISSING:
        if spec.required:
            return "missing_field", f"{where} is missing"
        return None
    if value is None:
        return None if spec.nullable else ("bad_value", f"{where} is None but not nullable")
    if _type_error(spec.type, value):
        return "bad_type", f"{where}: expected {spec.type}, got {type(value).__name__} {_short(value)}"
    if spec.type == "float" and isinstance(value, float) and math.isnan(value):
        return "bad_value", f"{where} is NaN"
    if spec.min is not None and value < spec.min:
        return "bad_value", f"{where}: {_short(value)} is below the minimum {spec.min!r}"
    if spec.max is not None and value > spec.max:
        return "bad_value", f"{where}: {_short(value)} is above the maximum {spec.max!r}"
    if spec.allowed is not None and value not in spec.allowed:
        return "bad_value", f"{where}: {_short(value)} is not one of {list(spec.allowed)!r}"
    return None


_FAST_TYPE_TESTS = {
    "int": "type(v) is not int",
    "float": "(type(v) is not float and type(v) is not int) or v != v",
    "str": "type(v) is not str",
    "bool": "type(v) is not bool",
}


def _fast_check_source(specs: tuple[FieldSpec, ...]) -> tuple[str, dict]:
    """Source of `check(data)` with every check inline, and its constants.

    Good inputs return None straight away; the first failed test hands over to
    `_explain`, which words the problem (and has the last word: the inline
    tests are conservative, e.g. numpy integers fail them but are valid ints).

    Field names and bounds are passed as named constants, never pasted into the
    source, so no spec value can change the generated code.
    """
    lines = ["def check(data):", "    get = data.get"]
    constants: dict[str, Any] = {"_MISSING": _MISSING}
    for i, spec in enumerate(specs):
        constants[f"K{i}"] = spec.name
        lines.append(f"    v = get(K{i}, _MISSING)")
        tests = [_FAST_TYPE_TESTS[spec.type]]
        if spec.min is not None:
            constants[f"MIN{i}"] = spec.min
            tests.append(f"v < MIN{i}")
        if spec.max is not None:
            constants[f"MAX{i}"] = spec.max
            tests.append(f"v > MAX{i}")
        if spec.allowed is not None:
            constants[f"ALLOWED{i}"] = frozenset(spec.allowed)
            tests.append(f"v not in ALLOWED{i}")
        condition = " or ".join(f"({t})" for t in tests)
        skips = []
        if not spec.required:
            skips.append("v is not _MISSING")
        if spec.nullable:
            skips.append("v is not None")
        if skips:
            condition = " and ".join(skips) + f" and ({condition})"
        lines.append(f"    if {condition}:")
        lines.append("        return _explain(data)")
    lines.append("    return None")
    return "\n".join(lines), constants


Validator = Callable[[Mapping], "tuple[str, str] | None"]


def compile_validator(specs: tuple[FieldSpec, ...]) -> Validator:
    """A function `check(data) -> None | (kind, message)` for these specs.

    Good inputs take the compiled fast path; the rest are explained field by
    field (the fast path is conservative: the explanation has the last word).
    """
    source, namespace = _fast_check_source(specs)

    def explain_all(data: Mapping):
        for spec in specs:
            problem = explain(spec, data)
            if problem is not None:
                return problem
        return None

    namespace["_explain"] = explain_all
    with PARSE_LOCK:
        code = compile(source, "<mlsm_nb fields>", "exec")
    exec(code, namespace)  # noqa: S102 - our own generated code
    return namespace["check"]


# --- synthetic inputs ------------------------------------------------------

def _clamp(spec: FieldSpec, value):
    if spec.min is not None and value < spec.min:
        value = spec.min
    if spec.max is not None and value > spec.max:
        value = spec.max
    return int(value) if spec.type == "int" else value


def _typical(spec: FieldSpec):
    if spec.allowed:
        return spec.allowed[0]
    return {"int": lambda: _clamp(spec, 10), "float": lambda: _clamp(spec, 1.5),
            "str": lambda: "example", "bool": lambda: True}[spec.type]()


def _edge_values(spec: FieldSpec) -> list:
    if spec.allowed:
        values = list(spec.allowed)
    elif spec.type == "int":
        values = [0, 1, -1, 10**9, -(10**9)]
    elif spec.type == "float":
        values = [0.0, -0.0, 1.0, -1.0, 1e-9, 1e12, -1e12, 3]
    elif spec.type == "str":
        values = ["", " ", "x" * 500, "Zoë ✓ 北京", "<script>alert(1)</script>", "NULL"]
    else:
        values = [True, False]
    values += [b for b in (spec.min, spec.max) if b is not None]
    if spec.type == "int":
        values += [int(b) + d for b in (spec.min, spec.max) if b is not None for d in (1, -1)]
    if spec.nullable:
        values.append(None)
    return [v for v in values if explain(spec, {spec.name: v}) is None]


def _random_value(spec: FieldSpec, rng: random.Random):
    if spec.nullable and rng.random() < 0.1:
        return None
    if spec.allowed:
        return rng.choice(spec.allowed)
    if spec.type in ("int", "float"):
        low = spec.min if spec.min is not None else -1000
        high = spec.max if spec.max is not None else max(low, 0) + 1000
        if spec.type == "int":
            return rng.randint(math.ceil(low), math.floor(high))
        return rng.uniform(low, high)
    if spec.type == "str":
        alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.éü"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
    return rng.random() < 0.5


def generate_inputs(specs: tuple[FieldSpec, ...], random_count: int = 50, seed: int = 0) -> list[dict]:
    """Legal inputs for these specs: a typical one, then each field's edge cases
    (zero, negatives, bounds, empty strings, None where nullable, absent where
    optional) with the other fields typical, then `random_count` random ones."""
    typical = {spec.name: _typical(spec) for spec in specs}
    cases = [typical]
    for spec in specs:
        for value in _edge_values(spec):
            cases.append({**typical, spec.name: value})
        if not spec.required:
            cases.append({k: v for k, v in typical.items() if k != spec.name})
    rng = random.Random(seed)
    for _ in range(random_count):
        case = {}
        for spec in specs:
            if spec.required or rng.random() < 0.8:
                case[spec.name] = _random_value(spec, rng)
        cases.append(case)
    return cases
