"""MongoStore's `ids_per_query` setting: what a batch sends to the server, and what a crash part-way leaves."""

import pymongo
import pytest
from click.testing import CliRunner
from pymongo import monitoring

from conftest import write_records
from mlsm_nb.cli import main
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.store.mongo import IDS_PER_QUERY, MongoStore, StoreError

DAY1, DAY2 = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"


def doc(record_id, score):
    return {"id": record_id, "_timestamp": 1, "results": {"m": {"1": {"score": score, "_status": "active"}}}}


def live_runs(db):
    """id -> the run ids of its live documents."""
    found: dict = {}
    for d in db.results.find({"_current": 0}):
        found.setdefault(d["id"], []).append(d["run_id"])
    return found


class InSizes(monitoring.CommandListener):
    """The `$in` lists of the finds and updates sent to the results collection."""

    def __init__(self):
        self.finds, self.updates = [], []

    def started(self, event):
        command = event.command
        if event.command_name == "find" and command["find"] == "results":
            self.finds.append(len(command["filter"]["id"]["$in"]))
        elif event.command_name == "update" and command["update"] == "results":
            self.updates += [len(u["q"]["_id"]["$in"]) for u in command["updates"]]

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.mark.slow
def test_live_documents_are_read_and_superseded_ids_per_query_at_a_time(mongo_uri, mongo_db):
    sizes = InSizes()
    client = pymongo.MongoClient(mongo_uri, event_listeners=[sizes])
    store = MongoStore.from_database(client[mongo_db.name], ids_per_query=20)
    for run_id, started in (("a", DAY1), ("b", DAY2)):
        store.open_run({"run_id": run_id, "started_at": started})
        store.write_batch(run_id, 0, [doc(i, 0.1) for i in range(45)])
    assert sizes.finds == [20, 20, 5] * 2
    assert sizes.updates == [20, 20, 5]  # run b supersedes run a's 45 live documents
    assert live_runs(mongo_db) == {i: ["b"] for i in range(45)}
    client.close()


@pytest.mark.slow
def test_a_crash_part_way_through_superseding_is_completed_by_writing_again(mongo_db, monkeypatch):
    store = MongoStore.from_database(mongo_db, ids_per_query=3)
    for run_id, started in (("a", DAY1), ("b", DAY2)):
        store.open_run({"run_id": run_id, "started_at": started})
    store.write_batch("a", 0, [doc(i, 0.1) for i in range(10)])
    bulk_write = store.results.bulk_write

    def crash_after_two_updates(operations, **kwargs):
        bulk_write(operations[:2], **kwargs)  # 6 of run a's documents superseded, then the process dies
        raise pymongo.errors.OperationFailure("the process died here")

    monkeypatch.setattr(store.results, "bulk_write", crash_after_two_updates)
    with pytest.raises(StoreError, match="update of _current failed"):
        store.write_batch("b", 0, [doc(i, 0.2) for i in range(10)])
    monkeypatch.undo()
    assert sorted(len(runs) for runs in live_runs(mongo_db).values()) == [1] * 6 + [2] * 4
    assert store.stored_batches("b") == set()
    store.write_batch("b", 0, [doc(i, 0.2) for i in range(10)])
    assert live_runs(mongo_db) == {i: ["b"] for i in range(10)}
    assert store.stored_batches("b") == {0} and mongo_db.results.count_documents({}) == 20


@pytest.mark.parametrize("wrong", [0, -5, 2.5, True, "20"])
def test_ids_per_query_is_a_whole_number_of_at_least_one(wrong):
    with pytest.raises(ConfigError, match=f"ids_per_query must be a whole number of at least 1, not {wrong!r}"):
        MongoStore(None, ids_per_query=wrong)


def test_run_help_gives_the_stores_default():
    assert f"(default {IDS_PER_QUERY}," in " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())


@pytest.mark.slow
def test_run_passes_mongo_ids_per_query_to_the_store(mongo_uri, mongo_db, tmp_path, make_notebook, monkeypatch):
    made = []
    real_init = MongoStore.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self.ids_per_query)

    monkeypatch.setattr(MongoStore, "__init__", recording_init)
    records = write_records(tmp_path / "in.jsonl", 5)
    args = ["run", str(make_notebook()), "--records", str(records), "--out", str(tmp_path / "runs"),
            "--engine", "inprocess", "--mongo-uri", mongo_uri, "--mongo-db", mongo_db.name]
    result = CliRunner().invoke(main, [*args, "--mongo-ids-per-query", "2"])
    assert result.exit_code == 0, result.output
    assert made == [2] and mongo_db.results.count_documents({"_current": 0}) == 5
    made.clear()
    result = CliRunner().invoke(main, args, env={"MLSM_MONGO_IDS_PER_QUERY": "3"})
    assert result.exit_code == 0, result.output
    assert made == [3] and mongo_db.results.count_documents({"_current": 0}) == 5
    assert CliRunner().invoke(main, [*args, "--mongo-ids-per-query", "0"]).exit_code == 2


@pytest.mark.slow
def test_serve_passes_mongo_ids_per_query_to_its_stores(mongo_uri, mongo_db, tmp_path, make_notebook, monkeypatch):
    from mlsm_nb.notebook.extract import extract_bundle
    from mlsm_nb.serve import server
    from mlsm_nb.serve.app import buffers

    settings = []
    monkeypatch.setattr(server, "serve", lambda given, **options: settings.append(given))
    bundle = tmp_path / "bundle"
    extract_bundle([make_notebook()], bundle)
    args = ["serve", str(bundle), "--mongo-uri", mongo_uri, "--mongo-db", mongo_db.name]
    assert CliRunner().invoke(main, [*args, "--mongo-ids-per-query", "4"]).exit_code == 0
    assert CliRunner().invoke(main, args, env={"MLSM_MONGO_IDS_PER_QUERY": "6"}).exit_code == 0
    assert CliRunner().invoke(main, args).exit_code == 0
    assert [s.mongo_ids_per_query for s in settings] == [4, 6, None]
    results, outcomes = buffers(settings[0], "bundle-sha256")
    try:
        assert results.open_sink().ids_per_query == 4
        assert outcomes.open_sink().store.ids_per_query == 4
    finally:
        results.close(), outcomes.close()
    results, outcomes = buffers(settings[2], "bundle-sha256")
    try:
        assert results.open_sink().ids_per_query == IDS_PER_QUERY
    finally:
        results.close(), outcomes.close()
