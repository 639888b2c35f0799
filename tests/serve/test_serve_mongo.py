"""`mlsm-nb serve --mongo-uri` against a real MongoDB wire server: down at start, down mid-traffic."""

from __future__ import annotations

import time

import httpx
import pymongo
import pytest

from conftest import write_notebook
from mlsm_nb.notebook.extract import extract_bundle
from servers import SecantusServer, ServeServer

pytestmark = pytest.mark.slow

CELLS = [("version", 'name = "tiny"\nversion = "1.0"\nstatus = "active"'), ("fields", 'fields = {"x": int}'),
         ("score", "def score(data, results):\n    return {'score': data['x'] * 2}")]


@pytest.fixture
def bundle(tmp_path):
    extract_bundle([write_notebook(tmp_path / "nb" / "tiny.ipynb", CELLS)], tmp_path / "bundle")
    return tmp_path / "bundle"


def score_quickly(server, records):
    started = time.monotonic()
    response = httpx.post(server.url + "/score", json=records, timeout=30)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 2, "a response waited for the database"
    assert response.json()["stored"] == "queued"
    return response.json()


def storage(server, part="storage"):
    """/health's state of storing served results (`storage`) or posted outcomes (`outcomes`)."""
    return httpx.get(server.url + "/health", timeout=10).json()[part]


def wait_stored(server, count, timeout=90, part="storage"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = storage(server, part)
        if state["pending"] == 0 and state["stored"] == count:
            return state
        time.sleep(0.3)
    raise AssertionError(f"not stored in time: {storage(server, part)}")


def test_database_down_at_start_keeps_scoring_and_stores_everything_later(bundle, tmp_path):
    database = SecantusServer(tmp_path / "db")  # its port is free: nothing listens there yet
    server = ServeServer(bundle, "--mongo-uri", database.uri + "/served").start()
    try:
        for i in range(10):
            score_quickly(server, [{"id": i * 3 + k, "data": {"x": i}} for k in range(3)])
        deadline = time.time() + 30
        while not storage(server)["error"] and time.time() < deadline:
            time.sleep(0.3)
        state = storage(server)
        assert state["pending"] == 30 and "not reachable" in state["error"]
        health = httpx.get(server.url + "/health").json()
        assert health["status"] == "degraded"
        database.start()
        state = wait_stored(server, 30)
        assert state["error"] is None
        results = pymongo.MongoClient(database.uri)["served"]["results"]
        assert results.count_documents({"run_id": state["run_id"], "_current": 0}) == 30
    finally:
        server.stop()
        database.stop()


def test_database_down_mid_traffic_loses_nothing_and_newer_scores_stay_live(bundle, tmp_path):
    database = SecantusServer(tmp_path / "db").start()
    server = ServeServer(bundle, "--mongo-uri", database.uri + "/served").start()
    try:
        score_quickly(server, [{"id": i, "data": {"x": 1}} for i in range(20)])
        wait_stored(server, 20)
        database.stop()
        for i in range(10, 30):  # ids 10-19 again, newer scores
            score_quickly(server, {"id": i, "data": {"x": 5}})
        deadline = time.time() + 60
        while not storage(server)["error"] and time.time() < deadline:
            time.sleep(0.3)
        assert storage(server)["pending"] == 20 and storage(server)["error"]
        database.start()
        run_id = wait_stored(server, 40)["run_id"]
        results = pymongo.MongoClient(database.uri)["served"]["results"]
        live = {d["id"]: d for d in results.find({"_current": 0})}
        assert sorted(live) == list(range(30))
        assert all(live[i]["results"]["tiny"]["1.0"]["score"] == (2 if i < 10 else 10) for i in range(30))
        assert results.count_documents({"run_id": run_id}) == 40
        assert server.stop() in (0, -15)  # uvicorn shuts down cleanly, then re-raises SIGTERM
        run = pymongo.MongoClient(database.uri)["served"]["runs"].find_one({"_id": run_id})
        assert run["status"] == "succeeded" and run["engine"] == "serve" and run["input"]["records"] == 40
    finally:
        server.stop()
        database.stop()
    assert "not stored before shutdown" not in server.output()
    assert "storing served results failed" in server.output()
    assert "works again" in server.output()


def test_health_turns_degraded_at_the_first_failed_store_and_shutdown_keeps_its_time(bundle, tmp_path):
    database = SecantusServer(tmp_path / "db").start()
    server = ServeServer(bundle, "--mongo-uri", database.uri + "/served").start()
    try:
        score_quickly(server, [{"id": i, "data": {"x": 1}} for i in range(100)])
        wait_stored(server, 100)
        database.kill()
        score_quickly(server, [{"id": i, "data": {"x": 2}} for i in range(10_000)])
        killed = time.monotonic()
        while httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok":
            assert time.monotonic() - killed < 8, "/health said ok long after the database died"
            time.sleep(0.1)
        state = storage(server)
        assert state["pending"] == 10_000 and state["error"]
        stopping = time.monotonic()
        server.stop()
        assert time.monotonic() - stopping <= 10, "shutdown took longer than the documented 10 s"
    finally:
        server.stop()
        database.stop()
    assert "10000 served result document(s) were not stored before shutdown" in server.output()
