"""A run's merged batches reach every ResultSink: a recording sink (fast) and MongoDB (real server)."""


import pytest
from click.testing import CliRunner

from conftest import NOTEBOOKS
from mlsm_nb.cli import main
from mlsm_nb.leads import save_leads
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.base import ResultSink, StoreError
from mlsm_nb.store.rundir import read_results


class Recording(ResultSink):
    """Keeps what it is given; can be told to fail on one batch."""

    name = "recording"

    def __init__(self, fail_on=None):
        self.batches, self.opened, self.finished, self.fail_on = {}, [], [], fail_on

    def open_run(self, manifest):
        self.opened.append(manifest["run_id"])

    def write_batch(self, run_id, batch, documents):
        if batch == self.fail_on:
            raise StoreError(f"recording: batch {batch} refused")
        self.batches[batch] = list(documents)
        return []

    def stored_batches(self, run_id):
        return set(self.batches)

    def finish_run(self, manifest):
        self.finished.append(manifest["status"])


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "leads.jsonl"
    save_leads(path, 300, seed=5)
    return path


OPTIONS = dict(batch_size=100, engine="inprocess")


def test_every_merged_batch_reaches_the_sinks(tmp_path, leads):
    sink = Recording()
    manifest = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="a", sinks=[sink], **OPTIONS)
    assert manifest.status == "succeeded" and manifest.sinks == ["recording"]
    assert sink.opened == ["a"] and sink.finished == ["succeeded"]
    stored = [d for b in sorted(sink.batches) for d in sink.batches[b]]
    assert stored == list(read_results(tmp_path / "a"))


def test_a_failing_sink_fails_the_run_and_resume_stores_only_what_it_lacks(tmp_path, leads):
    sink = Recording(fail_on=1)
    manifest = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="f", sinks=[sink], **OPTIONS)
    assert manifest.status == "failed"
    assert manifest.store_error == "recording: batch 1: recording: batch 1 refused"
    assert 1 not in sink.batches and len(sink.batches) < 3  # batches finish in any order; none after the failure
    assert manifest.batch_states[1] == "merged"
    assert len(list(read_results(tmp_path / "f"))) == 300  # the run directory is complete anyway
    sink.fail_on = None
    first = dict(sink.batches)
    manifest = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="f", sinks=[sink], resume=True, **OPTIONS)
    assert manifest.status == "succeeded" and manifest.store_error is None
    assert set(sink.batches) == {0, 1, 2}
    assert manifest.batch_states == {0: "stored", 1: "stored", 2: "stored"}
    assert all(sink.batches[b] is documents for b, documents in first.items())  # not written again


@pytest.mark.slow
def test_run_into_mongodb_from_the_command_line(tmp_path, leads, mongo_uri, mongo_db):
    args = ["run", str(NOTEBOOKS), "--records", str(leads), "--out", str(tmp_path), "--engine", "inprocess",
            "--batch-size", "100", "--mongo-uri", mongo_uri, "--mongo-db", mongo_db.name]
    for run_id in ("a", "b"):
        result = CliRunner().invoke(main, args + ["--run-id", run_id])
        assert result.exit_code == 0, result.output
        assert f"MongoDB:  {mongo_db.name}.results" in result.output
    assert mongo_db.results.count_documents({}) == 600
    assert mongo_db.results.count_documents({"_current": 0}) == 300
    assert mongo_db.results.count_documents({"_current": 0, "run_id": "b"}) == 300
    assert mongo_db.runs.find_one({"_id": "b"})["status"] == "succeeded"
