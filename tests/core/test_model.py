import pytest

from mlsm_nb import Model, SummaryModel
from mlsm_nb.exceptions import ConfigError, ModelTestError


def double(data, results):
    return {"score": data["x"] * 2}


def test_execute_stores_result_with_status_and_returns_results():
    model = Model("m", {"x": int}, "1.0", double, status="active")
    results = {}
    assert model.execute({"x": 2}, results) is results
    assert results == {"m": {"1.0": {"score": 4, "_status": "active"}}}


def test_two_versions_of_one_model_keep_separate_results():
    # MLSM reset results[name] = {} and so the second version erased the first.
    v1 = Model("m", {"x": int}, "1.0", double)
    v2 = Model("m", {"x": int}, "2.0", lambda data, results: {"score": data["x"] * 3})
    results = {}
    v1.execute({"x": 2}, results)
    v2.execute({"x": 2}, results)
    assert results["m"]["1.0"]["score"] == 4
    assert results["m"]["2.0"]["score"] == 6


def test_wrong_type_does_not_reach_the_score_function():
    # MLSM only checked presence: "12" went straight into the model.
    calls = []
    model = Model("m", {"x": int}, "1.0", lambda data, results: calls.append(data) or {"score": 1})
    results = model.execute({"x": "12"}, {})
    assert calls == []
    assert results["m"]["1.0"] == {"_error": "field 'x': expected int, got str '12'", "_error_kind": "bad_type"}


@pytest.mark.parametrize("fcn, kind, words", [
    (lambda data, results: 1 / 0, "score_raised", "division by zero"),
    (lambda data, results: 0.5, "bad_output", "score returned float, expected dict"),
    (lambda data, results: None, "bad_output", "score returned NoneType"),
])
def test_score_failures_become_error_entries(fcn, kind, words):
    entry = Model("m", {"x": int}, "1.0", fcn).execute({"x": 1}, {})["m"]["1.0"]
    assert entry["_error_kind"] == kind
    assert words in entry["_error"]
    assert "_status" not in entry


def test_nested_layout_reads_the_models_own_entry():
    model = Model("m", {"x": int}, "2.0", double)
    data = {"m": {"1.0": {"x": 1}, "2.0": {"x": 5}}, "x": 100}
    assert model.execute(data, {})["m"]["2.0"]["score"] == 10


def test_nested_layout_without_this_version_is_missing_field():
    model = Model("m", {"x": int}, "2.0", double)
    entry = model.execute({"m": {"1.0": {"x": 1}}}, {})["m"]["2.0"]
    assert entry["_error_kind"] == "missing_field"
    assert "version '2.0'" in entry["_error"]


def test_returned_dict_is_not_mutated():
    shared = {"score": 1}
    model = Model("m", {}, "1", lambda data, results: shared)
    model.execute({}, {})
    assert shared == {"score": 1}


@pytest.mark.parametrize("kwargs, words", [
    ({"name": ""}, "model name must be a non-empty string, got ''"),
    ({"name": None}, "model name must be a non-empty string, got None"),
    ({"version": 1}, "version must be a non-empty string"),
    ({"version": " "}, "version must be a non-empty string"),
    ({"status": "prod"}, "status 'prod' is not one of draft, active, retired"),
    ({"fcn": "score"}, "fcn must be callable"),
])
def test_bad_model_definitions(kwargs, words):
    args = {"name": "m", "fields": {}, "version": "1", "fcn": double, "status": "draft"} | kwargs
    with pytest.raises(ConfigError, match=words):
        Model(**args)


def champion(data, results):
    a, b = results["a"]["1"]["score"], results["b"]["1"]["score"]
    return {"score": max(a, b), "winner": "a" if a >= b else "b"}


def test_summary_model_reads_model_results():
    summary = SummaryModel("champ", [{"name": "a", "version": "1"}, {"name": "b", "version": "1"}], "1", champion)
    results = {"a": {"1": {"score": 0.2}}, "b": {"1": {"score": 0.7}}}
    assert summary.execute({}, results)["champ"]["1"] == {"score": 0.7, "winner": "b", "_status": "draft"}


def test_summary_with_missing_dependency_is_an_error_entry_not_an_exception():
    # MLSM raised SummaryModelListException and stopped the whole run.
    summary = SummaryModel("champ", [{"name": "a", "version": "1"}, {"name": "b", "version": "1"}], "1", champion)
    entry = summary.execute({}, {"a": {"1": {"score": 0.2}}})["champ"]["1"]
    assert entry["_error_kind"] == "missing_dependency"
    assert "b 1" in entry["_error"]


def test_summary_whose_dependency_failed_on_the_record():
    summary = SummaryModel("champ", [{"name": "a", "version": "1"}], "1", champion)
    entry = summary.execute({}, {"a": {"1": {"_error": "boom", "_error_kind": "score_raised"}}})["champ"]["1"]
    assert entry == {"_error": "a 1 failed on this record: boom", "_error_kind": "missing_dependency"}


def test_summary_models_given_as_model_objects_and_validation():
    a = Model("a", {}, "1", double)
    assert SummaryModel("s", [a], "1", champion).models == [{"name": "a", "version": "1"}]
    with pytest.raises(ConfigError, match="needs string 'name' and 'version'"):
        SummaryModel("s", [{"name": "a"}], "1", champion)
    assert SummaryModel("s", [], "1", champion).models == []  # MLSM accepted a summary of nothing


def test_model_test_passes_for_a_robust_model():
    model = Model("m", {"x": {"type": "int", "min": 0}, "t": str}, "1",
                  lambda data, results: {"score": data["x"] + len(data["t"])})
    assert model.test() is True
    assert model.test(raise_on_failure=True) is True


def test_model_test_answers_false_or_reports_the_failing_generated_input():
    model = Model("m", {"size": {"type": "int", "min": 0}}, "1", lambda data, results: {"score": 1 / data["size"]})
    assert model.test() is False
    with pytest.raises(ModelTestError, match=r"score_raised: ZeroDivisionError: division by zero "
                                             r"on input \{'size': 0\}") as info:
        model.test(raise_on_failure=True)
    assert info.value.failures and all(case["size"] == 0 for case, _ in info.value.failures)


def test_models_built_from_notebook_declarations_keep_the_notebook_naming_rule():
    from mlsm_nb.core.model import build_model
    from mlsm_nb.exceptions import NotebookError

    declared = {"name": "../Lead Rules", "version": "1", "status": "draft", "kind": "model", "fields": {}}
    with pytest.raises(NotebookError, match=r"bundle/m.py: name '../Lead Rules' must match \[a-z\]"):
        build_model(declared, {"score": double}, {"source": "bundle/m.py"})
    assert build_model({**declared, "name": "lead_rules"}, {"score": double}, {}).name == "lead_rules"


def test_model_test_fails_a_model_whose_output_a_run_could_not_store():
    """NaN when a field is 0: a run fails those records as bad_output, so test() says False and names the input."""
    model = Model("m", {"clicks": {"type": "int", "min": 0}}, "1",
                  lambda data, results: {"score": data["clicks"] / data["clicks"] if data["clicks"] else float("nan")})
    assert model.test() is False
    with pytest.raises(ModelTestError, match=r"bad_output: score returned a number JSON cannot hold: "
                                             r"output\['score'\] is nan on input \{'clicks': 0\}"):
        model.test(raise_on_failure=True)


def test_score_gives_one_records_outputs():
    model = Model("m", {"x": {"type": "int", "min": 0}}, "1", lambda data, results: {"score": data["x"] / 10})
    assert model.score({"x": 5}) == {"score": 0.5}
    assert model.score({"m": {"1": {"x": 3}}}) == {"score": 0.3}  # the nested layout too


@pytest.mark.parametrize("data, kind, words", [
    ({}, "missing_field", "field 'x' is missing"),
    ({"x": -1}, "bad_value", "field 'x': -1 is below the minimum 0"),
    ({"x": 0}, "score_raised", "ZeroDivisionError: division by zero"),
    ({"x": 7}, "bad_output", r"output\['score'\] is inf"),
])
def test_score_raises_a_score_error_naming_the_kind_and_the_field(data, kind, words):
    from mlsm_nb.exceptions import MlsmError, ScoreError

    model = Model("m", {"x": {"type": "int", "min": 0}}, "1",
                  lambda data, results: {"score": float("inf") if data["x"] == 7 else 1 / data["x"]})
    with pytest.raises(ScoreError, match=f"^model m 1: {kind}: .*{words}") as info:
        model.score(data)
    assert info.value.kind == kind and isinstance(info.value, MlsmError)
    assert info.value.entry["_error_kind"] == kind


def test_a_summarys_score_reads_the_results_given():
    summary = SummaryModel("s", [{"name": "a", "version": "1"}], "1",
                           lambda data, results: {"score": results["a"]["1"]["score"] * 2})
    assert summary.score({}, {"a": {"1": {"score": 0.25}}}) == {"score": 0.5}
    from mlsm_nb.exceptions import ScoreError
    with pytest.raises(ScoreError, match="missing_dependency: needs results of a 1"):
        summary.score({})


def test_model_key_is_name_at_version_and_splits_back():
    from mlsm_nb.core.model import model_key, split_model_key

    model = Model("lead_rules", {"x": float}, "1.0.0-rc.1", lambda data, results: {"score": 0.0})
    assert model_key(*model.key) == "lead_rules@1.0.0-rc.1"
    assert split_model_key(model_key(*model.key)) == model.key
