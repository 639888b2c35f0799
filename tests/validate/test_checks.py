"""What the examples check says when there is nothing to check."""

import pytest

from conftest import GOOD_CELLS, replace_cell
from mlsm_nb import load_notebook
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.validate.checks import check_examples


@pytest.mark.parametrize("examples, why", [(None, "the notebook has no examples cell"),
                                           ("examples = []", "its examples cell lists none")])
def test_no_examples_skips_the_check_saying_why(make_notebook, examples, why):
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "examples", examples))
    result = check_examples(lint_notebook(path), load_notebook(path))
    assert (result.status, result.message) == ("skipped", why)


NAN_AT_ZERO = ("score", "def score(data, results):\n"
                        "    return {'score': data['x'] * FACTOR / data['x'] if data['x'] else float('nan')}")


def test_robustness_fails_a_score_that_returns_nan_naming_the_input(make_notebook):
    from mlsm_nb.validate.checks import check_robustness

    path = make_notebook(cells=replace_cell(GOOD_CELLS, "score", NAN_AT_ZERO[1]))
    result = check_robustness(lint_notebook(path), load_notebook(path))
    assert result.status == "failed"
    assert result.message == ("bad_output: score returned a number JSON cannot hold: output['score'] is nan "
                              "on input {'x': 0, 'label': 'example'}")


def test_examples_fail_an_example_whose_output_is_infinite(make_notebook):
    score = "def score(data, results):\n    return {'score': float('inf'), 'n': len(data['label'])}"
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "score", score))
    result = check_examples(lint_notebook(path), load_notebook(path))
    assert (result.status, result.message) == (
        "failed", "example 0: bad_output: score returned a number JSON cannot hold: output['score'] is inf")


def test_a_score_that_is_a_string_is_a_warning_naming_the_example_and_the_input(make_notebook):
    from mlsm_nb.validate.checks import check_robustness

    score = "def score(data, results):\n    return {'score': 'high' if data['x'] > 1 else 0.1, 'n': 2}"
    examples = ('examples = [{"data": {"x": 0, "label": "ab"}, "expected": {"n": 2}},\n'
                '            {"data": {"x": 2, "label": "ab"}, "expected": {"n": 2}}]')
    path = make_notebook(cells=replace_cell(replace_cell(GOOD_CELLS, "score", score), "examples", examples))
    spec, model = lint_notebook(path), load_notebook(path)
    result = check_examples(spec, model)
    assert (result.status, result.message) == (
        "warning", "2 example(s); warning: example 1: `score` is 'high' (str), not a number: runs store it, but "
                   "run counts, summaries and reports leave it out; return a float")
    assert result.passed
    result = check_robustness(spec, model)
    assert result.status == "warning"
    assert result.message.endswith("warning: `score` is 'high' (str), not a number: runs store it, but run counts, "
                                   "summaries and reports leave it out; return a float (on input "
                                   "{'x': 10, 'label': 'example'})")


def test_robustness_tries_unbounded_numbers_within_jsons_safe_integers(make_notebook):
    """x * 2 overflows 64 bits only past 2**62: not a record's doing, so not a failure."""
    from mlsm_nb.validate.checks import check_robustness

    fields = 'fields = {"x": {"type": "int", "min": 0}, "label": str, "f": {"type": "float", "required": False}}'
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "fields", fields))
    assert check_robustness(lint_notebook(path), load_notebook(path)).status == "passed"


REASONS_SCORE = ("def score(data, results):\n"
                 "    reasons = [{'field': 'label', 'contribution': 1.0}, {'field': 'x', 'contribution': data['x']}]\n"
                 "    return {'score': data['x'] * FACTOR, 'n': len(data['label']), '_reasons': reasons}")


def test_robustness_fails_reasons_that_break_the_definition_for_some_input(make_notebook):
    from mlsm_nb.validate.checks import check_robustness

    path = make_notebook(cells=replace_cell(GOOD_CELLS, "score", REASONS_SCORE))  # fine for x = 0 and 1 only
    result = check_robustness(lint_notebook(path), load_notebook(path))
    assert result.status == "failed"
    assert result.message.startswith("bad_output: _reasons[1]['contribution'] is larger (in absolute value) than the "
                                     "item before it: order reasons by |contribution|, largest first on input {'x': ")


def test_examples_compare_the_expected_reasons(make_notebook):
    examples = ('examples = [{"data": {"x": 1, "label": "ab"}, "expected": {"score": 2, '
                '"_reasons": [{"field": "label", "contribution": 1.0}]}}]')
    path = make_notebook(cells=replace_cell(replace_cell(GOOD_CELLS, "score", REASONS_SCORE), "examples", examples))
    result = check_examples(lint_notebook(path), load_notebook(path))
    assert (result.status, result.message) == (
        "failed", "example 0: expected {'_reasons': [{'field': 'label', 'contribution': 1.0}]}, got {'_reasons': "
                  "[{'field': 'label', 'contribution': 1.0}, {'field': 'x', 'contribution': 1}]}")
