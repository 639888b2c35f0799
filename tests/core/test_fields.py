import math

import pytest

from mlsm_nb.core.fields import FieldSpec, compile_validator, generate_inputs, parse_field, parse_fields
from mlsm_nb.exceptions import FieldSpecError


def check(fields, data):
    return compile_validator(parse_fields(fields))(data)


def test_types_given_as_python_types_or_names():
    assert parse_field("a", int) == FieldSpec("a", "int")
    assert parse_field("a", "float") == FieldSpec("a", "float")
    assert parse_field("a", {"type": bool, "required": False}).required is False


@pytest.mark.parametrize("fields, data", [
    ({"a": int}, {"a": 3}),
    ({"a": float}, {"a": 3}),  # an int is a valid float
    ({"a": float}, {"a": 3.5}),
    ({"a": str}, {"a": ""}),
    ({"a": bool}, {"a": False}),
    ({"a": {"type": "int", "required": False}}, {}),
    ({"a": {"type": "int", "nullable": True}}, {"a": None}),
    ({"a": {"type": "float", "min": 0, "max": 1}}, {"a": 1}),
    ({"a": {"type": "str", "allowed": ["x", "y"]}}, {"a": "y"}),
    ({}, {"anything": object()}),
])
def test_good_inputs_pass(fields, data):
    assert check(fields, data) is None


@pytest.mark.parametrize("fields, data, kind, words", [
    ({"a": int}, {}, "missing_field", "field 'a' is missing"),
    ({"a": int}, {"a": "12"}, "bad_type", "expected int, got str '12'"),
    ({"a": int}, {"a": True}, "bad_type", "expected int, got bool"),  # bool is not an int
    ({"a": int}, {"a": 1.0}, "bad_type", "expected int, got float"),
    ({"a": float}, {"a": False}, "bad_type", "expected float, got bool"),
    ({"a": bool}, {"a": 1}, "bad_type", "expected bool, got int"),
    ({"a": str}, {"a": 5}, "bad_type", "expected str, got int"),
    ({"a": int}, {"a": None}, "bad_value", "None but not nullable"),
    ({"a": float}, {"a": math.nan}, "bad_value", "is NaN"),
    ({"a": {"type": "int", "min": 0}}, {"a": -1}, "bad_value", "below the minimum 0"),
    ({"a": {"type": "float", "max": 1}}, {"a": 1.5}, "bad_value", "above the maximum 1"),
    ({"a": {"type": "str", "allowed": ["x"]}}, {"a": "z"}, "bad_value", "'z' is not one of ['x']"),
])
def test_bad_inputs_name_field_and_kind(fields, data, kind, words):
    problem = check(fields, data)
    assert problem is not None
    assert problem[0] == kind
    assert "field 'a'" in problem[1]
    assert words in problem[1]


def test_first_bad_field_in_declared_order_is_reported():
    problem = check({"a": int, "b": str}, {"a": 1, "b": 2})
    assert problem == ("bad_type", "field 'b': expected str, got int 2")


def test_numpy_and_subclass_values_are_judged_by_the_exact_rule():
    import numpy as np
    assert check({"a": int}, {"a": np.int64(3)}) is None
    assert check({"a": float}, {"a": np.float32(0.5)}) is None
    assert check({"a": int}, {"a": np.bool_(True)})[0] == "bad_type"


@pytest.mark.parametrize("spec, words", [
    ("integer", "unknown type 'integer'"),
    ({"type": "int", "colour": 1}, "unknown spec key"),
    ({"required": True}, "needs a 'type'"),
    ({"type": "str", "min": 1}, "only applies to int and float"),
    ({"type": "int", "min": 5, "max": 1}, "greater than max"),
    ({"type": "int", "allowed": []}, "'allowed' is empty"),
    ({"type": "int", "allowed": ["a"]}, "not of type int"),
    ({"type": "int", "nullable": "yes"}, "'nullable' must be True or False"),
])
def test_bad_specs_are_rejected_with_the_field_name(spec, words):
    with pytest.raises(FieldSpecError, match="field 'f'") as info:
        parse_field("f", spec)
    assert words in str(info.value)


def test_field_names_in_specs_cannot_inject_code():
    fields = {'x"): pass\nimport os\nif (': int}
    assert check(fields, {'x"): pass\nimport os\nif (': 1}) is None
    assert check(fields, {})[0] == "missing_field"


def test_generated_inputs_are_legal_and_cover_edges():
    specs = parse_fields({
        "n": {"type": "int", "min": 0, "max": 100},
        "x": {"type": "float", "nullable": True},
        "s": str,
        "c": {"type": "str", "allowed": ["a", "b"]},
        "o": {"type": "bool", "required": False},
    })
    validator = compile_validator(specs)
    cases = generate_inputs(specs, random_count=30, seed=1)
    assert all(validator(case) is None for case in cases)
    ns = {c["n"] for c in cases}
    assert {0, 100, 1, 99} <= ns
    assert any(c["x"] is None for c in cases)
    assert any(c["s"] == "" for c in cases)
    assert {c["c"] for c in cases} == {"a", "b"}
    assert any("o" not in c for c in cases)
    assert generate_inputs(specs, random_count=30, seed=1) == cases
