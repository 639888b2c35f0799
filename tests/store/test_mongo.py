import json

import numpy as np
import pymongo
import pytest
from click.testing import CliRunner

from conftest import NOTEBOOKS
from mlsm_nb import Model, RunModelsAll
from mlsm_nb.cli import main
from mlsm_nb.leads import generate_leads
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.mongo import MongoStore, StoreError
from servers import SecantusServer

pytestmark = pytest.mark.slow


def doc(record_id, run_id, score, **extra):
    return {"id": record_id, "run_id": run_id, "_timestamp": 1, "_current": 0,
            "results": {"m": {"1": {"score": score, "_status": "active", **extra}}}}


def currents(db, collection="results"):
    return {(d["id"], d["run_id"]): d["_current"] for d in db[collection].find()}


def test_current_counts_up_over_three_runs_and_reruns_are_idempotent(mongo_db):
    store = MongoStore.from_database(mongo_db)
    store.write_results([doc(i, "r1", 0.1) for i in range(4)])
    store.write_results([doc(i, "r2", 0.2) for i in range(4)])
    store.write_results([doc(i, "r3", 0.3) for i in (0, 1)])  # a run that scores only some ids
    store.write_results([doc(i, "r3", 0.3) for i in (0, 1)])  # the same run again: nothing changes
    assert currents(mongo_db) == {
        (0, "r1"): 2, (0, "r2"): 1, (0, "r3"): 0, (1, "r1"): 2, (1, "r2"): 1, (1, "r3"): 0,
        (2, "r1"): 1, (2, "r2"): 0, (3, "r1"): 1, (3, "r2"): 0}
    live = store.current_results([0, 2])
    assert live[0]["run_id"] == "r3" and live[2]["run_id"] == "r2"
    assert [d["run_id"] for d in store.history(0)] == ["r3", "r2", "r1"]
    indexes = mongo_db.results.index_information()
    assert "id_current" in indexes and "run_id" in indexes


def test_crash_between_batches_is_completed_by_writing_again(mongo_db):
    store = MongoStore.from_database(mongo_db)
    store.write_results([doc(i, "r1", 0.1) for i in range(6)])
    batch = [doc(i, "r2", 0.2) for i in range(6)]
    store.write_results(batch[:3])  # the process died here
    store.write_results(batch)      # resume stores every batch again
    assert mongo_db.results.count_documents({}) == 12
    assert mongo_db.results.count_documents({"_current": 0}) == 6
    assert mongo_db.results.count_documents({"run_id": "r1", "_current": 1}) == 6


def test_values_bson_cannot_encode(mongo_db):
    store = MongoStore.from_database(mongo_db)
    documents = [doc("np", "r", np.float64(0.5), n=np.int64(3), tags={"b", "a"}),
                 doc("obj", "r", object()),
                 doc("big", "r", 0.1, blob="x" * (17 * 1024 * 1024)),
                 doc("fine", "r", 0.9)]
    assert store.write_results(documents) == 4
    stored = {d["id"]: d["results"]["m"]["1"] for d in mongo_db.results.find()}
    assert stored["np"] == {"score": 0.5, "n": 3, "tags": ["a", "b"], "_status": "active"}
    assert stored["obj"]["_error_kind"] == "bad_output" and "cannot be stored" in stored["obj"]["_error"]
    assert "over BSON's 16 MiB limit" in stored["big"]["_error"]
    assert stored["fine"]["score"] == 0.9


def test_run_models_all_alias_stores_with_mlsm_keywords(mongo_db):
    model = Model("m", {"x": int}, "1", lambda data, results: {"score": data["x"] / 10}, "active")
    records = [{"lead": f"L{i}", "data": {"x": i}} for i in range(3)]
    RunModelsAll([model], records, db=mongo_db, collection="scores", dbIdentifier="lead")
    RunModelsAll([model], [dict(r) for r in records], db=mongo_db, collection="scores", dbIdentifier="lead")
    assert mongo_db.scores.count_documents({}) == 6
    assert mongo_db.scores.count_documents({"_current": 0}) == 3
    assert mongo_db.scores.find_one({"lead": "L2", "_current": 0})["results"]["m"]["1"]["score"] == 0.2


@pytest.fixture
def leads_file(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in generate_leads(120, seed=2)))
    return path


def test_run_stores_results_runs_and_registry(tmp_path, leads_file, mongo_uri, mongo_db):
    args = ["run", str(NOTEBOOKS), "--records", str(leads_file), "--out", str(tmp_path), "--engine", "inprocess",
            "--batch-size", "50", "--mongo-uri", mongo_uri, "--mongo-db", mongo_db.name]
    for run_id in ("a", "b", "c"):
        result = CliRunner().invoke(main, args + ["--run-id", run_id])
        assert result.exit_code == 0, result.output
    assert mongo_db.results.count_documents({}) == 360
    assert mongo_db.results.count_documents({"_current": 0, "run_id": "c"}) == 120
    assert mongo_db.results.count_documents({"_current": 2, "run_id": "a"}) == 120
    run = mongo_db.runs.find_one({"_id": "c"})
    assert run["status"] == "succeeded" and run["input"]["records"] == 120
    entry = mongo_db.models.find_one({"name": "lead_lr", "version": "1.0.0"})
    assert entry["runs"] == ["a", "b", "c"] and len(entry["sha256"]) == 64 and entry["kind"] == "model"
    assert entry["status"] == "active" and "ran_at" in entry


def test_server_down_at_start_fails_before_any_notebook(tmp_path, leads_file):
    from servers import free_port

    result = CliRunner().invoke(main, ["run", str(NOTEBOOKS), "--records", str(leads_file), "--out",
                                       str(tmp_path / "runs"), "--mongo-uri", f"mongodb://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "is not reachable" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_server_killed_mid_run_then_restarted_and_resumed(tmp_path, leads_file):
    server = SecantusServer(tmp_path / "db").start()
    try:
        store = MongoStore.connect(server.uri, "crash", timeout_ms=1000, retries=2, retry_wait=0.1)
        write_results = store.write_results

        def write_then_kill(documents):
            written = write_results(documents)
            server.kill()  # the server dies right after the first batch is stored
            return written

        store.write_results = write_then_kill
        options = dict(out=tmp_path / "runs", run_id="k", batch_size=40, workers=1, engine="inprocess")
        manifest = run_notebooks([NOTEBOOKS], leads_file, store=store, **options)
        assert manifest["status"] == "failed" and "batch 1" in manifest["store_error"]
        assert manifest["stored"] == {"0": True}
        server.start()
        store = MongoStore.connect(server.uri, "crash")
        manifest = run_notebooks([NOTEBOOKS], leads_file, store=store, resume=True, **options)
        assert manifest["status"] == "succeeded"
        assert store.results.count_documents({}) == 120
        assert store.results.count_documents({"_current": 0}) == 120
    finally:
        server.stop()


def test_wrong_password_is_refused_and_never_echoed(tmp_path, leads_file):
    server = SecantusServer(tmp_path / "db").start()
    client = pymongo.MongoClient(server.uri)
    client.admin.command("createUser", "scorer", pwd="right-password", roles=["root"])
    client.close()
    server.stop()
    server.auth = True
    server.start()
    try:
        bad = f"mongodb://scorer:WRONG-pa55word@127.0.0.1:{server.port}/leads?authSource=admin"
        result = CliRunner().invoke(main, ["run", str(NOTEBOOKS), "--records", str(leads_file), "--out",
                                           str(tmp_path / "runs"), "--mongo-uri", bad])
        assert result.exit_code == 1
        assert "WRONG-pa55word" not in result.output
        assert "mongodb://scorer:***@" in result.output
        assert not (tmp_path / "runs").exists()
        good = f"mongodb://scorer:right-password@127.0.0.1:{server.port}/leads?authSource=admin"
        result = CliRunner().invoke(main, ["run", str(NOTEBOOKS), "--records", str(leads_file), "--out",
                                           str(tmp_path / "runs"), "--run-id", "ok", "--engine", "inprocess",
                                           "--mongo-uri", good])
        assert result.exit_code == 0, result.output
        for file in (tmp_path / "runs").rglob("*"):
            if file.is_file():
                assert "right-password" not in file.read_text(errors="replace")
        with pytest.raises(StoreError, match="refused"):
            MongoStore.connect(bad)
    finally:
        server.stop()
