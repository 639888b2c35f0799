import numpy as np
import pymongo
import pytest
from bson import ObjectId
from click.testing import CliRunner
from pymongo import monitoring

from mlsm_nb.cli import main
from mlsm_nb.store.base import store_as_run
from mlsm_nb.store.mongo import MongoStore, StoreError, document_id, started_micros, superseded_value
from servers import SecantusServer, free_port

pytestmark = pytest.mark.slow

DAY1, DAY2, DAY3 = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00"


def doc(record_id, score, **extra):
    return {"id": record_id, "_timestamp": 1, "results": {"m": {"1": {"score": score, "_status": "active", **extra}}}}


def opened(db, *runs):
    store = MongoStore.from_database(db)
    for run_id, started_at in runs:
        store.open_run({"run_id": run_id, "started_at": started_at})
    return store


def live(db, collection="results"):
    """(id, type name) -> run_id of every live document; fails if an id has two."""
    found = {}
    for d in db[collection].find({"_current": 0}):
        key = (d["id"], type(d["id"]).__name__)
        assert key not in found, f"two live documents for {key}"
        found[key] = d["run_id"]
    return found


def test_older_run_stored_after_a_newer_one_never_becomes_live(mongo_db):
    store = opened(mongo_db, ("new", DAY2), ("old", DAY1))
    assert store.write_batch("new", 0, [doc(1, 0.2), doc(2, 0.2)]) == []
    store.write_batch("old", 0, [doc(1, 0.1), doc(2, 0.1), doc(3, 0.1)])  # stored (or resumed) later
    assert live(mongo_db) == {(1, "int"): "new", (2, "int"): "new", (3, "int"): "old"}
    old = mongo_db.results.find_one({"id": 1, "run_id": "old"})
    assert old["_current"] == superseded_value(int(old["_id"][:17])) > 0
    assert [d["run_id"] for d in store.history(1)] == ["new", "old"]


def test_resume_after_a_lost_write_completes_the_batch_and_keeps_run_order(mongo_db):
    store = opened(mongo_db, ("old", DAY1), ("new", DAY2))
    store.write_batch("old", 0, [doc(1, 0.1), doc(2, 0.1)])
    store.write_batch("old", 1, [doc(3, 0.1)])
    mongo_db.results.delete_one({"id": 1, "run_id": "old"})  # the server lost an acknowledged write
    assert store.stored_batches("old") == {1}
    store.write_batch("new", 0, [doc(1, 0.2), doc(2, 0.2)])
    resumed = opened(mongo_db, ("old", DAY1))  # a new process resumes the older run
    for batch in {0, 1} - resumed.stored_batches("old"):
        resumed.write_batch("old", batch, [doc(1, 0.1), doc(2, 0.1)])
    assert resumed.stored_batches("old") == {0, 1}
    assert live(mongo_db) == {(1, "int"): "new", (2, "int"): "new", (3, "int"): "old"}
    assert mongo_db.results.count_documents({}) == 5


def test_a_crash_between_insert_and_supersede_is_completed_by_writing_again(mongo_db, monkeypatch):
    store = opened(mongo_db, ("a", DAY1), ("b", DAY2))
    store.write_batch("a", 0, [doc(i, 0.1) for i in range(4)])

    def crash(*args, **kwargs):
        raise pymongo.errors.OperationFailure("the process died here")

    monkeypatch.setattr(store.results, "bulk_write", crash)
    with pytest.raises(StoreError, match="update of _current failed"):
        store.write_batch("b", 0, [doc(i, 0.2) for i in range(4)])
    monkeypatch.undo()
    assert store.stored_batches("b") == set()
    assert mongo_db.results.count_documents({"_current": 0}) == 8  # both runs' documents live, for now
    store.write_batch("b", 0, [doc(i, 0.2) for i in range(4)])
    assert store.stored_batches("b") == {0}
    assert set(live(mongo_db).values()) == {"b"} and len(live(mongo_db)) == 4
    assert mongo_db.results.count_documents({}) == 8


def test_an_older_run_rewriting_a_batch_it_left_live_leaves_the_newer_live(mongo_db):
    store = opened(mongo_db, ("old", DAY1), ("new", DAY2))
    store.write_batch("new", 0, [doc(1, 0.2)])
    # a crashed attempt of the older run, racing the newer one, had inserted its document live
    mongo_db.results.insert_one({"_id": document_id(started_micros(DAY1), "old", 0, 0), **doc(1, 0.1),
                                 "run_id": "old", "_current": 0})
    store.write_batch("old", 0, [doc(1, 0.1)])
    assert live(mongo_db) == {(1, "int"): "new"}
    assert mongo_db.results.count_documents({}) == 2


def test_one_and_string_one_are_two_records(mongo_db):
    store = opened(mongo_db, ("r", DAY1), ("s", DAY2))
    store.write_batch("r", 0, [doc(1, 0.1), doc("1", 0.5)])
    store.write_batch("s", 0, [doc("1", 0.6)])
    assert mongo_db.results.count_documents({}) == 3
    assert live(mongo_db) == {(1, "int"): "r", ("1", "str"): "s"}
    current = store.current_results([1])
    assert list(current) == [1] and current[1]["results"]["m"]["1"]["score"] == 0.1
    assert store.current_results(["1"])["1"]["results"]["m"]["1"]["score"] == 0.6


def test_repeated_id_in_one_batch_stores_both_and_the_later_is_live(mongo_db):
    store = opened(mongo_db, ("r", DAY1))
    store.write_batch("r", 0, [doc(7, 0.1), doc(8, 0.0), doc(7, 0.9)])
    store.write_batch("r", 0, [doc(7, 0.1), doc(8, 0.0), doc(7, 0.9)])  # idempotent
    assert mongo_db.results.count_documents({"id": 7}) == 2
    assert mongo_db.results.find_one({"id": 7, "_current": 0})["results"]["m"]["1"]["score"] == 0.9
    assert [d["results"]["m"]["1"]["score"] for d in store.history(7)] == [0.9, 0.1]


def test_run_ids_with_colons_never_collide(mongo_db):
    store = opened(mongo_db, ("a:1", DAY1), ("a", DAY2))
    store.write_batch("a:1", 0, [doc(2, 0.1)])
    store.write_batch("a", 0, [doc("1:2", 0.2)])  # MLSM-era _id "a:1:2" for both
    assert mongo_db.results.count_documents({}) == 2
    assert live(mongo_db) == {(2, "int"): "a:1", ("1:2", "str"): "a"}


class UpdateCounter(monitoring.CommandListener):
    def __init__(self):
        self.modified = 0

    def started(self, event):
        pass

    def succeeded(self, event):
        if event.command_name == "update":
            self.modified += event.reply.get("nModified", 0)

    def failed(self, event):
        pass


def test_cost_of_a_run_does_not_grow_with_history(mongo_uri, mongo_db):
    counter = UpdateCounter()
    client = pymongo.MongoClient(mongo_uri, event_listeners=[counter])
    store = MongoStore.from_database(client[mongo_db.name])
    touched = []
    for day in range(1, 7):
        store.open_run({"run_id": f"day{day}", "started_at": f"2026-01-0{day}T00:00:00+00:00"})
        before = counter.modified
        store.write_batch(f"day{day}", 0, [doc(i, day / 10) for i in range(20)])
        touched.append(counter.modified - before)
    assert touched == [0] + [20] * 5  # only the one live document per id, whatever the history
    values = [d["_current"] for d in store.history(3)]
    assert values[0] == 0 and values == sorted(values) and len(set(values)) == 6
    first = mongo_db.results.find_one({"id": 3, "run_id": "day1"})
    assert first["_current"] == superseded_value(int(first["_id"][:17]))  # never renumbered
    client.close()


def test_a_collection_mlsm_wrote_first_is_continued(mongo_db):
    mongo_db.scores.insert_many([{"lead": "L1", "_current": c, "_timestamp": 1_500_000_000 + 10 * (2 - c),
                                  "results": {"m": {"1": {"score": c}}}} for c in (2, 1, 0)])
    store = MongoStore.from_database(mongo_db, results_collection="scores", id_field="lead")
    store_as_run(store, [{"lead": "L1", "results": {"m": {"1": {"score": 9}}}}])
    history = store.history("L1")
    assert [d["results"]["m"]["1"]["score"] for d in history] == [9, 0, 1, 2]
    assert [d["_current"] for d in history][0] == 0 and history[2]["_current"] == 1
    assert isinstance(history[1]["_id"], ObjectId) and 0 < history[1]["_current"] < 1


def test_store_as_run_keeps_call_order_and_repeated_ids(mongo_db):
    store = MongoStore.from_database(mongo_db, results_collection="scores", id_field="lead")
    first, problems = store_as_run(store, [{"lead": "L1", "_timestamp": 11, "results": {"m": {"1": {"s": 1}}}}],
                                   models=[{"name": "testSummary", "version": "0.0.0", "status": "draft"}])
    second, _ = store_as_run(store, [{"lead": "L1", "_timestamp": 12, "results": {"m": {"1": {"s": 2}}}},
                                     {"lead": "L1", "_timestamp": 13, "results": {"m": {"1": {"s": 3}}}}],
                             batch_size=1)  # the repeat lands in another batch
    assert problems == [] and first.started_at < second.started_at
    assert [(d["run_id"], d["_timestamp"]) for d in store.history("L1")] == [
        (second.run_id, 13), (second.run_id, 12), (first.run_id, 11)]
    assert mongo_db.scores.count_documents({"_current": 0}) == 1
    assert mongo_db.runs.find_one({"_id": second.run_id})["status"] == "succeeded"
    entry = mongo_db.models.find_one({"name": "testSummary", "version": "0.0.0"})
    assert entry["runs"] == [first.run_id] and entry["status"] == "draft" and "ran_at" in entry
    assert "_bumped_by" not in mongo_db.scores.find_one()


def test_records_mongodb_cannot_hold_cost_only_themselves(mongo_db):
    store = opened(mongo_db, ("r", DAY1))
    documents = [doc("np", np.float64(0.5), n=np.int64(3), tags={"b", "a"}),
                 doc("obj", object()),
                 doc("big", 0.1, blob="x" * (17 * 1024 * 1024)),
                 doc("x" * (17 * 1024 * 1024), 0.1),  # an id too large for any document
                 doc("long-id-" + "y" * 2_000_000, 0.3),
                 doc("fine", 0.9)]
    problems = store.write_batch("r", 0, documents)
    assert len(problems) == 3
    assert problems[0].startswith("record 'obj': stored as its error: result cannot be stored")
    assert "record 'big': stored as its error: result document is" in problems[1]
    assert "(17,825,794 characters): not stored in MongoDB" in problems[2] and len(problems[2]) < 300
    stored = {d["id"][:20]: d["results"]["m"]["1"] for d in mongo_db.results.find()}
    assert stored["np"] == {"score": 0.5, "n": 3, "tags": ["a", "b"], "_status": "active"}
    assert stored["obj"]["_error_kind"] == "bad_output" and "cannot be stored" in stored["obj"]["_error"]
    assert "over BSON's 16 MiB limit" in stored["big"]["_error"]
    assert stored["long-id-yyyyyyyyyyyy"]["score"] == 0.3 and stored["fine"]["score"] == 0.9
    assert store.stored_batches("r") == {0}  # a resume does not try again and again
    assert store.write_batch("r", 0, documents) == problems


def test_finish_run_records_the_manifest_and_registers_models(mongo_db):
    store = opened(mongo_db, ("r", DAY1))
    store.write_batch("r", 0, [doc(1, 0.1)])
    store.finish_run({"run_id": "r", "started_at": DAY1, "status": "succeeded",
                      "notebooks": [{"name": "lead_lr", "version": "1.0.0", "status": "active", "kind": "model",
                                     "sha256": "ab" * 32}]})
    assert mongo_db.runs.find_one({"_id": "r"})["status"] == "succeeded"
    entry = mongo_db.models.find_one({"name": "lead_lr"})
    assert entry["runs"] == ["r"] and entry["sha256"] == "ab" * 32 and "ran_at" in entry
    indexes = mongo_db.results.index_information()
    assert "current_id" in indexes and "run_id" in indexes


def test_write_batch_before_open_run_is_a_clear_error(mongo_db):
    with pytest.raises(StoreError, match="run 'x' was not opened"):
        MongoStore.from_database(mongo_db).write_batch("x", 0, [doc(1, 0.1)])


def test_server_killed_mid_run_then_restarted_and_resumed(tmp_path):
    server = SecantusServer(tmp_path / "db").start()
    try:
        store = MongoStore.connect(server.uri, "crash", timeout_ms=1000, retries=2, retry_wait=0.1)
        store.open_run({"run_id": "k", "started_at": DAY1})
        store.write_batch("k", 0, [doc(i, 0.1) for i in range(40)])
        server.kill()
        with pytest.raises(StoreError, match="failed after 2 attempts"):
            store.write_batch("k", 1, [doc(i, 0.1) for i in range(40, 80)])
        server.start()
        store = MongoStore.connect(server.uri, "crash")
        store.open_run({"run_id": "k", "started_at": DAY1})
        assert store.stored_batches("k") == {0}
        store.write_batch("k", 1, [doc(i, 0.1) for i in range(40, 80)])
        assert store.stored_batches("k") == {0, 1}
        assert store.results.count_documents({"_current": 0}) == 80
    finally:
        server.stop()


def test_server_down_at_start_fails_before_any_notebook(tmp_path):
    from conftest import NOTEBOOKS

    records = tmp_path / "leads.jsonl"
    records.write_text('{"id": 1, "data": {}}\n')
    result = CliRunner().invoke(main, ["run", str(NOTEBOOKS), "--records", str(records), "--out",
                                       str(tmp_path / "runs"), "--mongo-uri", f"mongodb://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "is not reachable" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    server = SecantusServer(tmp_path_factory.mktemp("auth") / "db").start().require_login("scorer", "right-password")
    yield server
    server.stop()


PASSWORDS = ["WRONG-pa55word", "s3cr/et-Pa55", "s3cr et-Pa55", "s3cr@et-Pa55", "ab@cd/ef gh:ij-Pa55"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_connection_errors_never_echo_the_password(auth_server, password):
    uri = f"mongodb://scorer:{password}@127.0.0.1:{auth_server.port}/leads?authSource=admin"
    with pytest.raises(StoreError) as refused:
        MongoStore.connect(uri, timeout_ms=2000)
    down = f"mongodb://scorer:{password}@127.0.0.1:{free_port()}/leads"
    with pytest.raises(StoreError) as unreachable:
        MongoStore.connect(down, timeout_ms=300)
    for message in (str(refused.value), str(unreachable.value)):
        assert "\n" not in message
        for piece in {password, *password.replace("/", " ").replace("@", " ").replace(":", " ").split()}:
            if len(piece) >= 3:
                assert piece not in message, message
        assert "mongodb://scorer:***@127.0.0.1:" in message, message
    assert "refused" in str(refused.value) or "not valid" in str(refused.value)


def test_wrong_password_from_the_command_line(auth_server, tmp_path):
    from conftest import NOTEBOOKS

    records = tmp_path / "leads.jsonl"
    records.write_text('{"id": 1, "data": {}}\n')
    bad = f"mongodb://scorer:WRONG/pa55 w@rd@127.0.0.1:{auth_server.port}/leads?authSource=admin"
    result = CliRunner().invoke(main, ["run", str(NOTEBOOKS), "--records", str(records), "--out",
                                       str(tmp_path / "runs"), "--mongo-uri", bad])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "WRONG" not in result.output and "pa55" not in result.output and "rd@" not in result.output
    assert "mongodb://scorer:***@127.0.0.1:" in result.output
    good = MongoStore.connect(f"mongodb://scorer:right-password@127.0.0.1:{auth_server.port}/leads"
                              "?authSource=admin")
    assert good.db.name == "leads"
    good.close()


def test_a_uri_that_is_not_mongodb_is_told_so_without_the_password_hint():
    with pytest.raises(StoreError) as wrong:
        MongoStore.connect("http://127.0.0.1:27017/leads", timeout_ms=300)
    # Our words only: pymongo's reason (after the colon) is its own to reword between releases.
    message = str(wrong.value)
    assert message.startswith("MongoDB URI http://127.0.0.1:27017 is not valid: ")
    assert "percent-escaped" not in message
    with pytest.raises(StoreError) as unescaped:
        MongoStore.connect("mongodb://u:p@ss/w@localhost/x", timeout_ms=300)
    message = str(unescaped.value)
    assert message.startswith("MongoDB URI mongodb://u:***@localhost is not valid: ")
    assert message.endswith(" (write a password holding / @ : % or spaces percent-escaped)")
    assert "p@ss" not in message and "ss/w" not in message


def test_driver_errors_stop_at_the_store_as_store_errors(mongo_uri, mongo_db):
    store = opened(mongo_db, ("r", DAY1))
    with pytest.raises(StoreError, match=r"^MongoDB write of the run failed: .*"):
        store.open_run({"run_id": "odd", "started_at": DAY1, "parameters": {"threshold": object()}})  # no BSON for it
    with pytest.raises(StoreError, match=r"^MongoDB read of the model registry failed: "):
        MongoStore.from_database(mongo_db).registry.entries([("m", {"$bad": object()})])
    closed = MongoStore.connect(mongo_uri, mongo_db.name)
    closed.close()
    with pytest.raises(StoreError, match="^MongoDB "):
        closed.stored_batches("r")


def test_the_later_of_two_runs_started_in_one_second_is_live(mongo_db, tmp_path, make_notebook, monkeypatch):
    """Run ids that sort the other way round: with starts to the second, the run id decided, and the
    earlier run stayed live."""
    import datetime as dt
    from types import SimpleNamespace

    from conftest import write_records
    from mlsm_nb import clock
    from mlsm_nb.run.orchestrate import run_notebooks

    # The clock holds still within one second (a microsecond a call), however slow the machine.
    second_start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    calls = iter(range(1_000_000))

    class FrozenSecond(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return second_start + dt.timedelta(microseconds=next(calls))

    monkeypatch.setattr(clock, "dt", SimpleNamespace(**{**vars(dt), "datetime": FrozenSecond}))
    notebook, records = make_notebook(), write_records(tmp_path / "in.jsonl", 3)
    store = MongoStore.from_database(mongo_db)
    first, second = (run_notebooks([notebook], records, out=tmp_path / "runs", run_id=run_id, engine="inprocess",
                                   workers=1, sinks=[store]) for run_id in ("z", "a"))
    assert first.started_at[:19] == second.started_at[:19]
    assert first.started_at < second.started_at and first.run_id > second.run_id
    assert {d["run_id"] for d in mongo_db.results.find({"_current": 0})} == {second.run_id}
    assert mongo_db.results.count_documents({"_current": 0}) == 3
    assert started_micros(second.started_at) % 1_000_000 == int(second.started_at[20:26])  # the _id's µs
    assert mongo_db.results.find_one({"run_id": second.run_id})["_id"].startswith(
        f"{started_micros(second.started_at):017d}:")


def test_a_driver_error_is_told_in_one_line_a_person_can_use():
    from bson.binary import Binary
    from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

    from mlsm_nb.store.mongo import driver_message

    refused = OperationFailure("Authentication failed., full error: {...}", 18, {
        "ok": 0.0, "errmsg": "Authentication failed.", "code": 18, "codeName": "AuthenticationFailed",
        "$clusterTime": {"clusterTime": 1, "signature": {"hash": Binary(b"\x00" * 20), "keyId": 0}}})
    assert driver_message(refused) == "Authentication failed. (AuthenticationFailed)"
    gone = ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused (configured timeouts: "
                                       "socketTimeoutMS: 20000.0ms), Timeout: 5.0s, Topology Description: "
                                       "<TopologyDescription id: 1, topology_type: Unknown, servers: [...]>")
    assert driver_message(gone) == "127.0.0.1:27017: [Errno 111] Connection refused"
    uri = "mongodb://scorer:s3cret@db.example/leads"
    assert "s3cret" not in driver_message(OperationFailure(f"bad {uri}\nsecond line"), uri)
