"""RunModelsAll(db=..., collection=..., dbIdentifier=...) stores as MLSM did, on a real MongoDB wire server."""

import time

import pytest

from mlsm_nb import Model, RunModelsAll, SummaryModel
from mlsm_nb.exceptions import RecordError
from mlsm_nb.store import MongoStore

pytestmark = pytest.mark.slow  # every test talks to a database server

V = "0.0.0"


def double(data, results):
    return {"score": data["x"] * 2}


def champion(data, results):
    return {"winner": results["m"][V]["score"]}


MODEL = Model("m", {"x": int}, V, double, "active")
SUMMARY = SummaryModel("testSummary", [{"name": "m", "version": V}], V, champion)


def store(db, records, **kwargs):
    return RunModelsAll([MODEL], records, [SUMMARY], db=db, collection="results", dbIdentifier="id", **kwargs)


def live(db, record_id):
    return list(db.results.find({"id": record_id, "_current": 0}))


def test_stored_document_shape(mongo_db):
    before = int(time.time())
    returned = store(mongo_db, [{"id": 7, "data": {"x": 2}, "source": "crm"}])
    (doc,) = mongo_db.results.find()
    assert set(doc) == {"_id", "id", "run_id", "_timestamp", "_current", "results"}
    assert doc["_id"].endswith(f":{doc['run_id']}:0:0")  # its place in run order: start:run:batch:position
    assert doc["id"] == 7 and doc["_current"] == 0 and isinstance(doc["run_id"], str)
    assert before <= doc["_timestamp"] <= int(time.time()) and isinstance(doc["_timestamp"], int)
    assert doc["results"] == {"m": {V: {"score": 4, "_status": "active"}},
                              "testSummary": {V: {"winner": 4, "_status": "draft"}}}
    assert returned[0]["results"] == doc["results"] and returned[0]["source"] == "crm"


def scores_newest_first(db, record_id):
    return [d["results"]["m"][V]["score"] for d in MongoStore.from_database(db).history(record_id)]


def test_current_is_zero_for_the_newest_and_larger_for_older_ones(mongo_db):
    for x in (1, 2, 3):
        store(mongo_db, [{"id": "a", "data": {"x": x}}])
    store(mongo_db, [{"id": "b", "data": {"x": 9}}])
    by_current = sorted((d["_current"], d["results"]["m"][V]["score"]) for d in mongo_db.results.find({"id": "a"}))
    assert [score for _, score in by_current] == [6, 4, 2]
    assert by_current[0][0] == 0 < by_current[1][0] < by_current[2][0]
    assert all(set(d) == {"_id", "id", "run_id", "_timestamp", "_current", "results"}  # nothing undocumented
               for d in mongo_db.results.find())
    assert [d["_current"] for d in mongo_db.results.find({"id": "b"})] == [0]


def test_an_id_repeated_in_one_call_is_stored_each_time_the_later_live(mongo_db):
    store(mongo_db, [{"id": 1, "data": {"x": 0}}])
    store(mongo_db, [{"id": 1, "data": {"x": 1}}, {"id": 2, "data": {"x": 5}}, {"id": 1, "data": {"x": 2}},
                     {"id": 1, "data": {"x": 3}}])
    assert mongo_db.results.count_documents({"id": 1}) == 4
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, 1)] == [6]
    assert scores_newest_first(mongo_db, 1) == [6, 4, 2, 0]
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, 2)] == [10]


def test_ids_keep_their_type(mongo_db):
    store(mongo_db, [{"id": 1, "data": {"x": 1}}, {"id": "1", "data": {"x": 2}}])
    assert mongo_db.results.count_documents({}) == 2
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, 1)] == [2]
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, "1")] == [4]
    store(mongo_db, [{"id": "1", "data": {"x": 10}}])
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, 1)] == [2]  # "1" is another record
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, "1")] == [20]


def test_timestamp_is_when_each_record_was_scored(mongo_db):
    def slow_on_b(data, results):
        if data["x"] == 2:
            second = int(time.time())
            while int(time.time()) == second:
                time.sleep(0.02)
        return {"score": data["x"]}

    model = Model("m", {"x": int}, V, slow_on_b)
    RunModelsAll([model], [{"id": "a", "data": {"x": 1}}, {"id": "b", "data": {"x": 2}}],
                 db=mongo_db, collection="results", dbIdentifier="id")
    stamps = {d["id"]: d["_timestamp"] for d in mongo_db.results.find()}
    assert stamps["b"] > stamps["a"]


def test_a_collection_mlsm_wrote_first_is_continued(mongo_db):
    mongo_db.results.insert_many([  # what MLSM 0.0.4 left: no run_id, _current counted per id
        {"id": 1, "_current": 1, "_timestamp": 1481600000, "results": {"m": {V: {"score": 0, "_status": "draft"}}}},
        {"id": 1, "_current": 0, "_timestamp": 1481700000, "results": {"m": {V: {"score": 1, "_status": "draft"}}}},
        {"id": 2, "_current": 0, "_timestamp": 1481700000, "results": {"m": {V: {"score": 2, "_status": "draft"}}}},
    ])
    store(mongo_db, [{"id": 1, "data": {"x": 5}}])
    by_current = sorted((d["_current"], d["results"]["m"][V]["score"]) for d in mongo_db.results.find({"id": 1}))
    assert [score for _, score in by_current] == [10, 1, 0] and by_current[0][0] == 0
    assert live(mongo_db, 1)[0]["results"]["m"][V]["score"] == 10
    assert [d["results"]["m"][V]["score"] for d in live(mongo_db, 2)] == [2]


def test_names_mlsm_accepted_are_stored_as_keys(mongo_db):
    odd = Model("lead.score", {"x": int}, "v 2", double)
    RunModelsAll([odd], [{"lead": "L1", "data": {"x": 1}}], db=mongo_db, collection="scores", dbIdentifier="lead")
    assert mongo_db.scores.find_one()["results"] == {"lead.score": {"v 2": {"score": 2, "_status": "draft"}}}


def test_a_record_without_its_id_stores_nothing(mongo_db):
    with pytest.raises(RecordError, match="record #1: has no id field 'id'"):
        store(mongo_db, [{"id": 1, "data": {"x": 1}}, {"data": {"x": 2}}])
    assert mongo_db.results.count_documents({}) == 0


def test_each_call_is_recorded_as_a_run_with_its_models(mongo_db):
    store(mongo_db, [{"id": 1, "data": {"x": 1}}])
    store(mongo_db, [{"id": 1, "data": {"x": 2}}])
    runs = list(mongo_db.runs.find())
    assert [r["source"] for r in runs] == ["RunModelsAll", "RunModelsAll"]
    assert {d["run_id"] for d in mongo_db.results.find()} == {r["_id"] for r in runs}
    registry = {(m["name"], m["version"]): m for m in mongo_db.models.find()}
    assert set(registry) == {("m", V), ("testSummary", V)} and len(registry[("m", V)]["runs"]) == 2


def test_a_result_mongodb_cannot_hold_is_stored_as_its_error_and_logged(mongo_db, caplog):
    opaque = Model("m", {"x": int}, V, lambda data, results: {"score": object()} if data["x"] else {"score": 0})
    with caplog.at_level("WARNING", logger="mlsm_nb.compat"):
        returned = RunModelsAll([opaque], [{"id": "bad", "data": {"x": 1}}, {"id": "ok", "data": {"x": 0}}],
                                db=mongo_db, collection="results", dbIdentifier="id")
    stored = {d["id"]: d["results"]["m"][V] for d in mongo_db.results.find()}
    assert stored["ok"] == {"score": 0, "_status": "draft"}
    assert stored["bad"]["_error_kind"] == "bad_output" and "cannot be stored in MongoDB" in stored["bad"]["_error"]
    assert "RunModelsAll: record 'bad': stored as its error" in caplog.text
    assert type(returned[0]["results"]["m"][V]["score"]) is object  # the caller still gets what was scored


def test_a_float_id_is_refused_naming_the_record(mongo_db):
    with pytest.raises(RecordError, match="record #1: id field 'id' must be a string or an integer, got float"):
        store(mongo_db, [{"id": 1, "data": {"x": 1}}, {"id": 1.5, "data": {"x": 3}}])
    assert mongo_db.results.count_documents({}) == 0  # refused before anything is stored
