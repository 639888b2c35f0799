import logging
import re
import threading
import time
from collections import OrderedDict

import pytest

from mlsm_nb import Model, SummaryModel, iter_models_all, run_models_all
from mlsm_nb.exceptions import ERROR_KINDS, ConfigError, RecordError, SummaryModelListException
from mlsm_nb.leads import LEAD_FIELDS, generate_leads


def score_x(data, results):
    return {"score": data["x"] / 10}


def fragile(data, results):
    if data["x"] == 3:
        raise ValueError("three is unlucky")
    return {"score": 1.0}


def best(data, results):
    return {"score": max(results["a"]["1"]["score"], results["b"]["1"]["score"])}


A = Model("a", {"x": int}, "1", score_x, "active")
B = Model("b", {"x": int}, "1", fragile)
S = SummaryModel("best", [A, B], "1", best)


def records(n):
    return [{"id": i, "data": {"x": i}} for i in range(n)]


def test_models_then_summary_on_every_record():
    out = run_models_all([A, B], records(3), [S])
    assert [r["id"] for r in out] == [0, 1, 2]
    assert out[2]["results"] == {
        "a": {"1": {"score": 0.2, "_status": "active"}},
        "b": {"1": {"score": 1.0, "_status": "draft"}},
        "best": {"1": {"score": 1.0, "_status": "draft"}},
    }


def test_one_failing_model_on_one_record_loses_nothing_else():
    out = run_models_all([A, B], records(5), [S])
    failed = out[3]["results"]
    assert failed["b"]["1"] == {"_error": "three is unlucky", "_error_kind": "score_raised",
                                "_error_type": "ValueError"}
    assert failed["a"]["1"]["score"] == 0.3
    assert failed["best"]["1"]["_error_kind"] == "missing_dependency"
    assert all("_error" not in r["results"]["best"]["1"] for i, r in enumerate(out) if i != 3)


def test_bad_field_values_per_record():
    recs = [{"id": "ok", "data": {"x": 1}}, {"id": "str", "data": {"x": "1"}}, {"id": "none", "data": {"x": None}},
            {"id": "missing", "data": {}}]
    kinds = {r["id"]: r["results"]["a"]["1"].get("_error_kind") for r in run_models_all([A], recs)}
    assert kinds == {"ok": None, "str": "bad_type", "none": "bad_value", "missing": "missing_field"}
    assert set(kinds.values()) - {None} <= set(ERROR_KINDS)


def test_streams_without_materialising_the_input():
    consumed = []

    def source():
        for i in range(10**9):
            consumed.append(i)
            yield {"id": i, "data": {"x": i}}

    stream = iter_models_all([A], source())
    first = [next(stream) for _ in range(3)]
    assert [r["id"] for r in first] == [0, 1, 2]
    assert len(consumed) == 3


def test_nested_and_flat_layouts_in_one_run():
    recs = [{"id": 1, "data": {"x": 4}}, {"id": 2, "data": {"a": {"1": {"x": 7}}, "x": 1}}]
    out = run_models_all([A], recs)
    assert [r["results"]["a"]["1"]["score"] for r in out] == [0.4, 0.7]


def test_configurable_id_field_and_mapping_records():
    recs = [OrderedDict(lead_id="L1", data={"x": 2})]
    out = run_models_all([A], recs, id_field="lead_id")
    assert out[0]["lead_id"] == "L1" and out[0]["results"]["a"]["1"]["score"] == 0.2


def test_empty_iterable_gives_empty_list():
    assert run_models_all([A, B], [], [S]) == []


@pytest.mark.parametrize("bad, words", [
    (["not", "a", "mapping"], "record #1: is a list, not a mapping"),
    ({"data": {"x": 1}}, "record #1: has no id field 'id'"),
    ({"id": None, "data": {"x": 1}}, "record #1: id field 'id' is null; an id is a string or an integer"),
    ({"id": "z", "data": [1]}, "record #1, id 'z': 'data' must be a mapping, got list"),
])
def test_bad_records_are_reported_and_the_rest_scored(bad, words, caplog):
    recs = [{"id": "before", "data": {"x": 1}}, bad, {"id": "after", "data": {"x": 2}}]
    with caplog.at_level(logging.WARNING):
        out = run_models_all([A], recs)
    assert [r["id"] for r in out] == ["before", "after"]
    assert words in caplog.text

    rejected = []
    run_models_all([A], recs, on_bad_record=lambda err, rec: rejected.append((err.position, err.reason, rec)))
    assert rejected[0][0] == 1 and rejected[0][2] is bad
    with pytest.raises(RecordError, match=words):
        run_models_all([A], recs, on_bad_record="raise")


def test_configuration_errors_before_any_record():
    def never():
        raise AssertionError("records were read")
        yield

    with pytest.raises(ConfigError, match="model a 1 appears twice"):
        run_models_all([A, Model("a", {}, "1", score_x)], never())
    with pytest.raises(SummaryModelListException, match="needs b 1, which is not among the models run before it"):
        run_models_all([A], never(), [S])
    with pytest.raises(ConfigError, match="expected Model"):
        run_models_all([score_x], never())
    with pytest.raises(ConfigError, match="on_bad_record"):
        run_models_all([A], never(), on_bad_record="explode")


def test_records_get_results_in_place_as_mlsm_documented():
    recs = records(2)
    run_models_all([A], recs)
    assert recs[1]["results"]["a"]["1"]["score"] == 0.1


def test_progress_bar_reports_records(capsys):
    run_models_all([A], records(5), progress=True)
    assert re.search(r"(?<!\d)5/5(?!\d)", capsys.readouterr().err)  # not 15/5 or 5/50


def test_lead_generator_is_seeded_and_valid_for_the_lead_fields():
    model = Model("lead", LEAD_FIELDS, "1", lambda data, results: {"score": 0.0})
    leads = list(generate_leads(500, seed=7))
    assert leads == list(generate_leads(500, seed=7))
    assert leads != list(generate_leads(500, seed=8))
    assert len({r["id"] for r in leads}) == 500
    assert all("_error" not in r["results"]["lead"]["1"] for r in run_models_all([model], leads))
    nested = next(generate_leads(1, nested_models=[("lead", "1"), ("lead", "2")]))
    assert set(nested["data"]["lead"]) == {"1", "2"}


def test_a_model_that_changes_its_data_changes_neither_the_record_nor_the_next_model():
    def vandal(data, results):
        data["x"] = -1
        data.pop("y", None)
        return {"score": 0.0}

    def reader(data, results):
        return {"seen": (data["x"], data.get("y"))}

    recs = [{"id": 1, "data": {"x": 5, "y": 6}},
            {"id": 2, "data": {"v": {"1": {"x": 7, "y": 8}}, "r": {"1": {"x": 7, "y": 8}}}}]
    out = run_models_all([Model("v", {"x": int}, "1", vandal), Model("r", {"x": int}, "1", reader)], recs)
    assert [r["results"]["r"]["1"]["seen"] for r in out] == [(5, 6), (7, 8)]
    assert recs[0]["data"] == {"x": 5, "y": 6}
    assert recs[1]["data"]["v"]["1"] == {"x": 7, "y": 8}


def test_records_need_no_id_when_id_field_is_none():
    out = run_models_all([A], [{"data": {"x": 1}}, {"id": None, "data": {"x": 2}}], id_field=None)
    assert [r["results"]["a"]["1"]["score"] for r in out] == [0.1, 0.2]
    with pytest.raises(RecordError, match=r"record #0: 'data' is missing \(a record's fields go in a 'data' mapping\)"):
        run_models_all([A], [{"x": 1}], id_field=None, on_bad_record="raise")



def spins_on_two(data, results):
    ends = time.monotonic() + 3  # far past the limit; returns, so that a broken limit fails the test, not hangs it
    while data["x"] == 2 and time.monotonic() < ends:
        pass
    return {"score": data["x"] / 10}


SLOW = Model("slow", {"x": int}, "1", spins_on_two)


def check_one_timeout(out: list, seconds: float) -> None:
    assert seconds < 2.5
    assert out[2]["results"]["slow"]["1"]["_error_kind"] == "timeout"
    assert [r["results"]["slow"]["1"].get("score") for r in out] == [0.0, 0.1, None, 0.3]
    assert [r["results"]["a"]["1"]["score"] for r in out] == [0.0, 0.1, 0.2, 0.3]  # the next model goes on


def test_a_record_over_record_timeout_gets_a_timeout_entry_and_the_others_are_scored():
    started = time.monotonic()
    out = run_models_all([SLOW, A], records(4), record_timeout=0.2)
    check_one_timeout(out, time.monotonic() - started)
    for no_limit in (None, 0):  # as --record-timeout 0
        assert run_models_all([A], records(2), record_timeout=no_limit)[1]["results"]["a"]["1"]["score"] == 0.1
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="record_timeout must be a number of seconds"):
            run_models_all([A], records(1), record_timeout=bad)


def test_record_timeout_stops_a_score_in_a_thread_too():
    done = {}

    def score_in_thread():
        started = time.monotonic()
        done["out"] = run_models_all([SLOW, A], records(4), record_timeout=0.2)
        done["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=score_in_thread)
    thread.start()
    thread.join(10)
    check_one_timeout(done["out"], done["seconds"])
