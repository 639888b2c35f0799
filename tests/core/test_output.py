"""A score output JSON cannot hold is that record's bad_output, never its batch's failure."""

import datetime
import decimal
import json

import numpy as np
import pandas as pd
import pytest

from mlsm_nb import Model
from mlsm_nb.core.batch import score_batch
from mlsm_nb.files import dumps

BAD = {
    "decimal": decimal.Decimal("0.5"),
    "timedelta": datetime.timedelta(days=1),
    "complex": 1j,
    "huge": 2 ** 64,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "numpy_nan": np.float64("nan"),
    "nested_inf": [0.5, {"deep": float("inf")}],
}


def per_record(data, results):
    kind = data["kind"]
    if kind == "tuple_key":
        return {"score": 0.5, "by": {(1, 2): 0.5}}
    return {"score": BAD.get(kind, 0.25)}


MODEL = Model("m", {"kind": str}, "1", per_record)
KINDS = [*BAD, "tuple_key"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_bad_output_costs_one_record(kind):
    records = [{"id": 1, "data": {"kind": "ok"}}, {"id": 2, "data": {"kind": kind}}, {"id": 3, "data": {"kind": "ok"}}]
    outcome = score_batch(MODEL, records)
    good, bad, after = outcome.entries
    assert good == after == {"score": 0.25, "_status": "draft"}
    assert bad["_error_kind"] == "bad_output" and "JSON cannot hold" in bad["_error"]
    dumps(outcome.entries)  # the batch can be written


def test_the_message_names_where_the_bad_number_is():
    entry, = score_batch(MODEL, [{"data": {"kind": "nested_inf"}}]).entries
    assert entry["_error"] == "score returned a number JSON cannot hold: output['score'][1]['deep'] is inf"


def test_numpy_values_and_none_are_fine():
    model = Model("n", {}, "1", lambda data, results: {"a": np.float32(0.5), "b": np.int64(3), "c": None,
                                                        "d": np.array([1.0, 2.0])})
    assert "_error" not in score_batch(model, [{"data": {}}]).entries[0]


def test_score_frame_outputs_are_checked_per_record():
    def frame(df):
        return pd.DataFrame({"score": [0.5, np.nan, 0.7]}, index=df.index)

    model = Model("f", {"x": int}, "1", lambda d, r: {"score": 0.5}, score_frame=frame)
    outcome = score_batch(model, [{"data": {"x": i}} for i in range(3)])
    assert outcome.method == "score_frame"
    assert [e.get("_error_kind") for e in outcome.entries] == [None, "bad_output", None]
    assert outcome.entries[0] == {"score": 0.5, "_status": "draft"}


def test_the_one_definition_of_a_valid_output_words_the_entry_a_run_stores():
    from mlsm_nb.core.output import stored_entry

    assert stored_entry({"score": 0.5, "_status": "draft"}) == {"score": 0.5, "_status": "draft"}
    assert stored_entry({"score": float("nan"), "_status": "draft"}) == {
        "_error": "score returned a number JSON cannot hold: output['score'] is nan", "_error_kind": "bad_output"}


@pytest.mark.parametrize("value, words", [("high", "'high' (str)"), (None, "None (NoneType)"),
                                          (True, "True (bool)"), ([0.5], "[0.5] (list)")])
def test_a_score_that_is_not_a_number_is_a_warning(value, words):
    from mlsm_nb.core.output import score_warning

    assert score_warning({"score": value}) == (f"`score` is {words}, not a number: runs store it, but run counts, "
                                               "summaries and reports leave it out; return a float")


def test_numbers_of_any_kind_and_outputs_without_a_score_get_no_warning():
    from mlsm_nb.core.output import score_warning

    for out in ({"score": 1}, {"score": 0.5}, {"score": np.float32(0.5)}, {"score": np.int64(3)}, {"route": "x"}):
        assert score_warning(out) is None, out


def test_a_record_gets_the_same_frame_values_in_any_batch():
    seen = []

    def frame(df):
        seen.append(dict(df.dtypes.astype(str)))
        return pd.DataFrame({"x": df["x"], "n": df["n"] * 2}, index=df.index)

    model = Model("f", {"x": float, "n": {"type": "int", "nullable": True}, "k": int}, "1",
                  lambda d, r: {"x": d["x"], "n": None if d["n"] is None else d["n"] * 2}, score_frame=frame)
    alone = {"x": 100, "n": 3, "k": 1}  # what a JSON client sends for 100.0
    others = [{"x": 0.5, "n": None, "k": 2}, {"x": 7, "n": 1, "k": 3}]
    entries = [score_batch(model, [{"data": d} for d in batch]).entries[0] for batch in ([alone], [alone, *others])]
    assert json.dumps(entries[0]) == json.dumps(entries[1]) == '{"x": 100.0, "n": 6.0, "_status": "draft"}'
    assert seen[0] == seen[1] == {"x": "float64", "n": "float64", "k": "int64"}
