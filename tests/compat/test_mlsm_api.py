"""MLSM's Python API on mlsm_nb: names, signatures and meanings (storing: test_mlsm_store.py)."""

import inspect
import logging

import pytest

import mlsm_nb
from mlsm_nb import Model, RunModels, RunModelsAll, SummaryModel, SummaryModelListException
from mlsm_nb.exceptions import ConfigError, ModelTestError, RecordError

V = "0.0.0"


def add(data, results):
    return {"total": data["a"] + data["b"]}


def pick_best(data, results):
    return {"best": max(results["first"][V]["total"], results["second"][V]["total"])}


def nested(record_id, **values):
    return {"id": record_id, "data": {name: {V: dict(values)} for name in ("first", "second", "best")}}


def two_models_and_a_summary():
    fields = {"a": int, "b": int}
    models = [Model("first", fields, V, add, "active"), Model("second", fields, V, add)]
    return models, [SummaryModel("best", [{"name": "first", "version": V}, {"name": "second", "version": V}],
                                 V, pick_best)]


def test_mlsm_exports_are_mlsm_nb_names():
    for name in ("Model", "SummaryModel", "RunModels", "RunModelsAll", "SummaryModelListException"):
        assert name in mlsm_nb.__all__ and getattr(mlsm_nb, name) is not None
    assert issubclass(SummaryModelListException, ConfigError)


@pytest.mark.parametrize("function, parameters", [
    (Model, [("name", None), ("fields", None), ("version", None), ("fcn", None), ("status", "draft")]),
    (SummaryModel, [("name", None), ("models", None), ("version", None), ("fcn", None), ("fields", None),
                    ("status", "draft")]),
    (RunModels, [("models", None), ("record", None)]),
    (RunModelsAll, [("models", None), ("records", None), ("summaryModels", ()), ("verbose", False),
                    ("db", None), ("collection", None), ("dbIdentifier", None)]),
    (Model.execute, [("self", None), ("data", None), ("results", None)]),
])
def test_signatures_take_mlsm_arguments_in_mlsm_order(function, parameters):
    signature = inspect.signature(function)
    positional = [p for p in signature.parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD][:len(parameters)]
    empty = inspect.Parameter.empty
    assert [(p.name, None if p.default is empty else p.default) for p in positional] == parameters


def test_attributes_are_what_was_given():
    fields = {"a": int, "b": str, "c": float}
    model = Model(name="m", fields=fields, version=V, fcn=add, status="active")
    assert (model.name, model.fields, model.version, model.fcn, model.status) == ("m", fields, V, add, "active")
    summary = SummaryModel(name="s", models=[{"name": "m", "version": V}], version=V, fcn=pick_best)
    assert summary.models == [{"name": "m", "version": V}] and summary.fields == {} and summary.status == "draft"


@pytest.mark.parametrize("name, version", [("testSummary", V), ("Lead Score", "v2 (beta)"), ("lead.score", "1.0"),
                                           ("$score", "1"), ("scoré", "é")])
def test_names_and_versions_as_mlsm_accepted_them(name, version):
    model = Model(name, {"a": int, "b": int}, version, add)
    assert model.execute({"a": 1, "b": 2}, {}) == {name: {version: {"total": 3, "_status": "draft"}}}
    record = {"id": 1, "data": {name: {version: {"a": 2, "b": 2}}}}
    assert RunModelsAll([model], [record])[0]["results"][name][version]["total"] == 4


def test_the_notebook_naming_rule_is_for_notebooks_only(make_notebook):
    from conftest import GOOD_CELLS, replace_cell
    from mlsm_nb.notebook.contract import inspect_notebook

    cells = replace_cell(GOOD_CELLS, "version", 'name = "testSummary"\nversion = "1.0"\nstatus = "active"')
    _, problems = inspect_notebook(make_notebook(cells=cells))
    assert any("name 'testSummary' must match" in str(p) for p in problems)


def test_the_function_is_called_with_keywords():
    seen = {}

    def swapped(results, data):  # MLSM called fcn(data=..., results=...): the order does not matter
        seen["data"], seen["results"] = data, results
        return {"ok": True}

    def anything(**kwargs):
        return {"keys": sorted(kwargs)}

    results = Model("swapped", {"a": int}, V, swapped).execute({"a": 1}, {"earlier": {}})
    assert seen == {"data": {"a": 1}, "results": results} and "earlier" in seen["results"]
    assert Model("kw", {}, V, anything).execute({}, {})["kw"][V]["keys"] == ["data", "results"]
    positional_only = Model("pos", {}, V, lambda d, r: {}).execute({}, {})["pos"][V]
    assert positional_only["_error_kind"] == "score_raised" and positional_only["_error_type"] == "TypeError"
    assert "unexpected keyword argument 'data'" in positional_only["_error"]


def test_error_holds_mlsm_message_with_type_and_kind_beside_it():
    def fails(data, results):
        raise Exception("Hi! I am an error message")

    entry = Model("m", {"a": int}, V, fails).execute({"a": 1}, {})["m"][V]
    assert entry == {"_error": "Hi! I am an error message", "_error_kind": "score_raised", "_error_type": "Exception"}
    missing = Model("m", {"a": int, "b": int}, V, add).execute({"a": 1}, {})["m"][V]
    assert missing["_error_kind"] == "missing_field" and "'b'" in missing["_error"]


def test_model_test_answers_true_or_false_like_mlsm():
    def concat(data, results):
        return {"x": data["a"] + " " + data["b"]}

    def bad_concat(data, results):
        return {"x": data["a"] + 1}

    assert Model("m", {"a": int, "b": int}, V, add).test() is True
    assert Model("m", {"a": str, "b": str}, V, concat).test() is True
    assert Model("m", {"a": str}, V, bad_concat).test() is False
    assert Model("m", {"a": int}, V, lambda data, results: {"x": data["a"] + "!"}).test() is False


def test_model_test_can_say_which_inputs_failed():
    model = Model("m", {"a": str}, V, lambda data, results: {"first": data["a"][0]})
    assert model.test() is False  # the empty string is among the generated inputs
    with pytest.raises(ModelTestError, match=r"IndexError: string index out of range on input \{'a': ''\}") as info:
        model.test(raise_on_failure=True)
    assert info.value.failures and all(case == {"a": ""} for case, _ in info.value.failures)


def test_run_models_scores_one_record_in_place():
    models, _ = two_models_and_a_summary()
    record = nested(1, a=1, b=2)
    record["results"] = {"stale": {}}
    assert RunModels(models=models, record=record) is record
    assert record["results"] == {"first": {V: {"total": 3, "_status": "active"}},
                                 "second": {V: {"total": 3, "_status": "draft"}}}


def test_run_models_raises_for_a_record_without_input_for_a_model_as_mlsm_did():
    models, _ = two_models_and_a_summary()
    with pytest.raises(RecordError, match=r"id 1: no input for model first 0.0.0: neither "
                                          r"data\['first'\]\['0.0.0'\] nor its field\(s\) a, b"):
        RunModels(models, {"id": 1, "data": {}})
    with pytest.raises(RecordError, match="'data' is missing"):
        RunModels(models, {"id": 1})
    half = RunModels(models, {"id": 1, "data": {"a": 1}})["results"]  # flat, a field missing: an _error
    assert half["first"][V]["_error_kind"] == "missing_field"


def test_run_models_all_returns_every_record_in_order_without_ids():
    models, summaries = two_models_and_a_summary()
    records = [nested(None, a=1, b=2), {"data": {"first": {V: {"a": 5, "b": 5}}, "second": {V: {"a": 0, "b": 1}},
                                                 "best": {V: {}}}}]
    out = RunModelsAll(models=models, records=records, summaryModels=summaries)
    assert out == records and out[0] is records[0]
    assert [r["results"]["best"][V]["best"] for r in out] == [3, 10]


def test_run_models_all_verbose_shows_progress(capsys):
    models, summaries = two_models_and_a_summary()
    RunModelsAll(models, [nested(i, a=i, b=1) for i in range(3)], summaries, verbose=True)
    assert "3/3" in capsys.readouterr().err


def test_run_models_all_raises_for_a_record_it_cannot_score(caplog):
    models, _ = two_models_and_a_summary()
    with caplog.at_level(logging.WARNING), pytest.raises(RecordError, match="record #1: 'data' is missing"):
        RunModelsAll(models, [nested(1, a=1, b=2), {"id": 2}])


def test_one_failing_record_or_model_does_not_stop_run_models_all():
    models, summaries = two_models_and_a_summary()
    out = RunModelsAll(models, [nested(1, a=1, b=2), nested(2, a="x", b=2), {"id": 3, "data": {}}], summaries)
    assert out[0]["results"]["best"][V]["best"] == 3
    assert out[1]["results"]["first"][V]["_error_kind"] == "bad_type"
    assert out[1]["results"]["best"][V]["_error_kind"] == "missing_dependency"
    assert out[2]["results"]["first"][V]["_error_kind"] == "missing_field"


@pytest.mark.parametrize("dependency", [{"name": "third", "version": V}, {"name": "first", "version": "0.0.1"}])
def test_summary_needing_results_the_run_lacks_raises_summary_model_list_exception(dependency):
    models, _ = two_models_and_a_summary()
    summary = SummaryModel("best", [dependency], V, pick_best)

    def never():
        raise AssertionError("records were read")
        yield

    with pytest.raises(SummaryModelListException, match=f"needs {dependency['name']} {dependency['version']}"):
        RunModelsAll(models, never(), summaryModels=[summary])
    with pytest.raises(SummaryModelListException):
        RunModelsAll([], [nested(1, a=1, b=1)], summaryModels=[summary])


def test_partial_database_arguments_are_refused_not_silently_ignored():
    models, _ = two_models_and_a_summary()
    for partial in ({"db": object()}, {"collection": "results"}, {"dbIdentifier": "id"},
                    {"db": object(), "collection": "results"}):
        with pytest.raises(ConfigError, match="db, collection and dbIdentifier"):
            RunModelsAll(models, [nested(1, a=1, b=1)], **partial)
