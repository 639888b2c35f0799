"""One set of record-shape rules for `run_models_all` and `mlsm-nb run` (core.records)."""

import pytest

from mlsm_nb import Model, run_models_all
from mlsm_nb.core.records import record_problem
from mlsm_nb.exceptions import RecordError

A = Model("a", {"x": int}, "1", lambda data, results: {"score": data["x"]})


@pytest.mark.parametrize("record, words", [
    ({"id": 1.0, "data": {"x": 1}}, "id field 'id' must be a string or an integer, got float"),
    ({"id": True, "data": {"x": 1}}, "id field 'id' must be a string or an integer, got bool"),
    ({"id": ("t",), "data": {"x": 1}}, "id field 'id' must be a string or an integer, got tuple"),
    ({"id": 2 ** 64, "data": {"x": 1}}, "integer id field 'id' does not fit in 64 bits"),
    ({"id": "x" * 2000, "data": {"x": 1}}, "id field 'id' is 2,000 bytes long; the limit is 1,024"),
])
def test_the_library_refuses_the_ids_the_reader_refuses(record, words):
    with pytest.raises(RecordError, match=words):
        run_models_all([A], [record], on_bad_record="raise")
    assert record_problem(record).startswith(words)


def test_ids_keep_their_type_in_the_library():
    out = run_models_all([A], [{"id": 1, "data": {"x": 1}}, {"id": "1", "data": {"x": 2}}])
    assert [(r["id"], r["results"]["a"]["1"]["score"]) for r in out] == [(1, 1), ("1", 2)]


def test_records_without_ids_pass_when_no_id_is_asked_for():
    out = run_models_all([A], [{"data": {"x": 3}}], id_field=None, on_bad_record="raise")
    assert out[0]["results"]["a"]["1"]["score"] == 3
    with pytest.raises(RecordError, match="'data' must be a mapping"):
        run_models_all([A], [{"data": 3}], id_field=None, on_bad_record="raise")
