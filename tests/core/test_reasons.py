"""`_reasons`: one definition (core.output), checked as any output is: a bad one costs its record, never the batch."""

import decimal
import json

import numpy as np
import pandas as pd
import pytest

from mlsm_nb import Model, top_reasons
from mlsm_nb.core.batch import score_batch
from mlsm_nb.core.output import MAX_REASONS, reasons_problem, reasons_text, stored_entry
from mlsm_nb.files import dumps

GOOD = [{"field": "company_size", "contribution": 1.36}, {"field": "days_since_last_activity", "contribution": -0.57},
        {"field": "trial_signup", "contribution": 0.5}]

BAD = {  # name -> (reasons, the message's start, naming the item and key)
    "not_a_list": ("company_size", "_reasons is str, expected a list"),
    "a_dict": ({"field": "x", "contribution": 1}, "_reasons is dict, expected a list"),
    "too_long": ([{"field": f"f{i}", "contribution": 10 - i} for i in range(MAX_REASONS + 1)],
                 f"_reasons has {MAX_REASONS + 1} items, at most {MAX_REASONS}"),
    "item_not_a_dict": ([GOOD[0], "trial_signup"], "_reasons[1] is str, expected a dict"),
    "no_contribution": ([GOOD[0], {"field": "x"}], "_reasons[1] has no 'contribution'"),
    "no_field": ([{"contribution": 1.0}], "_reasons[0] has no 'field'"),
    "extra_key": ([{"field": "x", "contribution": 1.0, "value": 3}], "_reasons[0] has 'value': an item holds only"),
    "field_not_text": ([{"field": 3, "contribution": 1.0}], "_reasons[0]['field'] is 3, expected the name"),
    "empty_field": ([{"field": "", "contribution": 1.0}], "_reasons[0]['field'] is '', expected the name"),
    "field_twice": ([{"field": "x", "contribution": 2.0}, {"field": "x", "contribution": 1.0}],
                    "_reasons[1]['field'] is 'x' again"),
    "text_contribution": ([{"field": "x", "contribution": "high"}], "_reasons[0]['contribution'] is 'high' (str)"),
    "bool_contribution": ([{"field": "x", "contribution": True}], "_reasons[0]['contribution'] is True (bool)"),
    "nan_contribution": ([{"field": "x", "contribution": float("nan")}], "_reasons[0]['contribution'] is nan"),
    "not_json": ([{"field": "x", "contribution": decimal.Decimal("1.5")}],
                 "_reasons[0]['contribution'] is Decimal('1.5') (Decimal)"),
    "unordered": ([{"field": "x", "contribution": 0.1}, {"field": "y", "contribution": -0.2}],
                  "_reasons[1]['contribution'] is larger (in absolute value) than the item before it"),
}


def per_record(data, results):
    if data["kind"] == "good":
        return {"score": 0.5, "_reasons": GOOD}
    return {"score": 0.5, "_reasons": BAD[data["kind"]][0]}


MODEL = Model("m", {"kind": str}, "1", per_record)


def test_valid_reasons_are_stored_with_the_score():
    entry, = score_batch(MODEL, [{"id": 1, "data": {"kind": "good"}}]).entries
    assert entry == {"score": 0.5, "_reasons": GOOD, "_status": "draft"}
    assert reasons_problem([]) is None and reasons_problem(tuple(GOOD)) is None
    assert reasons_problem([{"field": "a", "contribution": np.float32(0.5)},
                            {"field": "b", "contribution": np.int64(-0)}]) is None
    assert reasons_problem([{"field": f"f{i}", "contribution": 1} for i in range(MAX_REASONS)]) is None


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_reasons_costs_its_record_only_and_the_message_names_the_item(kind):
    records = [{"id": i, "data": {"kind": k}} for i, k in ((1, "good"), (2, kind), (3, "good"))]
    good, bad, after = score_batch(MODEL, records).entries
    assert good == after == {"score": 0.5, "_reasons": GOOD, "_status": "draft"}
    assert bad["_error_kind"] == "bad_output"
    assert bad["_error"].startswith(BAD[kind][1]), bad["_error"]
    assert reasons_problem(BAD[kind][0]) == bad["_error"]  # the one definition words it


def test_score_frame_reasons_are_checked_per_record():
    def frame(df):
        reasons = [GOOD, "nope", []]
        return pd.DataFrame({"score": [0.5, 0.6, 0.7], "_reasons": reasons}, index=df.index)

    model = Model("f", {"x": int}, "1", lambda d, r: {"score": 0.5}, score_frame=frame)
    outcome = score_batch(model, [{"id": i, "data": {"x": i}} for i in range(3)])
    assert outcome.method == "score_frame"
    first, second, third = outcome.entries
    assert first == {"score": 0.5, "_reasons": GOOD, "_status": "draft"}
    assert second == {"_error": "_reasons is str, expected a list of {'field': ..., 'contribution': ...}",
                      "_error_kind": "bad_output"}
    assert third == {"score": 0.7, "_reasons": [], "_status": "draft"}
    dumps(outcome.entries)


def test_model_score_raises_for_a_bad_reasons():
    from mlsm_nb.exceptions import ScoreError

    with pytest.raises(ScoreError, match=r"bad_output: _reasons\[1\]\['field'\] is 'x' again"):
        MODEL.score({"kind": "field_twice"})
    assert stored_entry({"score": 1, "_reasons": GOOD})["_reasons"] == GOOD


def test_top_reasons_picks_the_largest_by_size_leaves_zeros_out_and_keeps_ties_in_order():
    parts = {"a": 0.5, "b": -2.0, "c": 0.0, "d": 0.5, "e": np.float64(-0.1), "f": 1.0}
    assert top_reasons(parts) == [{"field": "b", "contribution": -2.0}, {"field": "f", "contribution": 1.0},
                                  {"field": "a", "contribution": 0.5}]
    assert top_reasons(parts, top=5)[3:] == [{"field": "d", "contribution": 0.5}, {"field": "e", "contribution": -0.1}]
    assert top_reasons({"a": 0.0}) == [] and top_reasons(parts, top=0) == []
    assert len(top_reasons({f"f{i}": i + 1 for i in range(20)}, top=50)) == MAX_REASONS
    assert all(reasons_problem(top_reasons(parts, top=n)) is None for n in range(8))
    assert type(top_reasons(parts)[0]["contribution"]) is float  # JSON-ready, numpy or not
    json.dumps(top_reasons(parts))


def test_reasons_read_as_one_line():
    assert reasons_text(GOOD) == "company_size +1.36, days_since_last_activity -0.57, trial_signup +0.5"
    assert reasons_text([]) == "none"


def test_the_quick_check_of_plain_reasons_agrees_with_the_walk_that_words_problems():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mlsm_nb.core.output import _plainly_valid, _walk_reasons

    number = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2 ** 53 + 1, 2 ** 53 - 1)
              | st.booleans() | st.none() | st.text(max_size=2))
    item = (st.fixed_dictionaries({"field": st.sampled_from(["a", "b", "c", "", 1]), "contribution": number})
            | st.dictionaries(st.sampled_from(["field", "contribution", "value"]), number | st.just("a"), max_size=3)
            | number)
    reasons = st.lists(item, max_size=MAX_REASONS + 2) | number

    @settings(max_examples=3000, database=None, derandomize=True)
    @given(reasons)
    def agree(value):
        assert _plainly_valid(value) == (_walk_reasons(value) is None), value

    agree()
    assert _plainly_valid(GOOD) and _walk_reasons(GOOD) is None
