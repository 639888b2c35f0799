import json
import shutil

import pymongo
import pytest
from click.testing import CliRunner
from pymongo import monitoring

from conftest import NOTEBOOKS
from mlsm_nb.audit.database import AuditDatabase
from mlsm_nb.audit.trace import TraceError, trace_record
from mlsm_nb.cli import main
from mlsm_nb.files import file_sha256, read_jsonl
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.mongo import MongoStore


def write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two in-process runs of the example notebooks over the same leads: r1 (develop branch), then r2."""
    folder = tmp_path_factory.mktemp("trace")
    leads = write_records(folder / "leads.jsonl", generate_leads(60, seed=5))
    for run_id, branch in (("r1", "develop"), ("r2", None)):
        run_notebooks([NOTEBOOKS], leads, out=folder / "runs", run_id=run_id, batch_size=25, engine="inprocess",
                      branch=branch)
    return folder


def test_trace_of_a_run_directory_shows_the_whole_provenance(runs):
    run_dir = runs / "runs" / "r1"
    record_id = "lead-5-0000031"  # batch 1 of 25-record batches
    result = cli("trace", record_id, "--run", run_dir)
    assert result.exit_code == 0, result.output
    out = result.output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    document = next(d for d in read_jsonl(run_dir / "results" / "batch-00001.jsonl") if d["id"] == record_id)
    assert f"id '{record_id}': live result of run r1 (succeeded)" in out
    assert f"sha256 {file_sha256(runs / 'leads.jsonl')}" in out
    assert f"batch     1: {run_dir / 'batches' / 'batch-00001.jsonl'}" in out
    assert f"started   {manifest['started_at']} by {manifest['started_by']['user']}@" in out
    lr = lint_notebook(NOTEBOOKS / "lead_lr.ipynb")
    assert f"sha256 {lr.sha256()}" in out
    assert f"git       commit {manifest['notebooks'][0]['git_commit']}" in out
    assert f"score={document['results']['lead_lr']['1.0.0']['score']:.6g}" in out
    assert "status    draft: branch 'develop' matches 'develop'" in out  # git-flow forced draft, and why
    assert f"pandas {manifest['versions']['pandas']}" in out
    assert "executed  in-process (ok; no executed notebook)" in out


def test_trace_shows_why_the_score_is_what_it_is(runs):
    run_dir = runs / "runs" / "r2"
    document = next(d for d in read_jsonl(run_dir / "results" / "batch-00000.jsonl")
                    if d["results"]["champion"]["1.0.0"]["champion"] == "lead_lr@1.0.0")
    lr, champion = document["results"]["lead_lr"]["1.0.0"], document["results"]["champion"]["1.0.0"]
    words = ", ".join(f"{r['field']} {r['contribution']:+.3g}" for r in lr["_reasons"])
    out = cli("trace", document["id"], "--run", run_dir, "--model", "lead_lr").output
    assert f"  result    score={lr['score']:.6g}\n  reasons   {words}\n" in out  # one line, not the raw list
    assert "_reasons" not in out
    found = json.loads(cli("trace", document["id"], "--run", run_dir, "--json").output)
    rows = {row["name"]: row for row in found["models"]}
    assert rows["lead_lr"]["result"]["_reasons"] == lr["_reasons"] and len(lr["_reasons"]) == 3
    assert "_reasons" not in rows["lead_rules"]["result"]  # a model that gives none shows none
    assert rows["champion"]["result"]["_reasons"] == lr["_reasons"] == champion["_reasons"]  # the winner's, passed on


def test_trace_json_and_model_filter(runs):
    result = cli("trace", "lead-5-0000002", "--run", runs / "runs" / "r2", "--model", "lead_rules@2.0.0", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["run"]["run_id"] == "r2" and found["batch"] == 0 and found["live"] is True
    assert [(m["name"], m["version"]) for m in found["models"]] == [("lead_rules", "2.0.0")]
    model = found["models"][0]
    assert model["status"] == "draft" and model["why"] == "declared in the notebook's version cell"
    assert model["sha256"] == lint_notebook(NOTEBOOKS / "lead_rules_v2.ipynb").sha256()
    assert found["run"]["input"]["sha256"] == file_sha256(runs / "leads.jsonl")


def test_an_id_scored_in_several_runs_is_the_live_one_and_names_the_others(runs):
    result = cli("trace", "lead-5-0000002", "--run", runs / "runs")
    assert result.exit_code == 0, result.output
    assert "live result of run r2" in result.output
    assert "also scored in: r1 (" in result.output and "--run-id picks one" in result.output
    older = trace_record("lead-5-0000002", run=runs / "runs", run_id="r1")
    assert older["run"]["run_id"] == "r1" and older["live"] is False


@pytest.mark.parametrize("args, message", [
    (["nope"], "error: id 'nope' was never scored in "),
    (["lead-5-0000002", "--model", "lead_rules@9"], "has no result of model lead_rules@9 in run r2 (it has: "),
    (["lead-5-0000002", "--run-id", "r9"], "was not scored in run r9 (it was in: r1, r2)"),
])
def test_trace_bad_input_is_one_line(runs, args, message):
    result = cli("trace", args[0], "--run", runs / "runs", *args[1:])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_trace_needs_a_place_and_a_run_directory(tmp_path):
    result = cli("trace", "x")
    assert result.exit_code == 2 and "--run RUN_DIR or --mongo-uri URI" in result.output
    result = cli("trace", "x", "--run", tmp_path)
    assert result.exit_code == 1 and "not a run directory (no manifest.json)" in result.output


def test_an_id_stored_as_a_number_and_as_text_is_ambiguous(tmp_path):
    from conftest import GOOD_CELLS, write_notebook

    notebook = write_notebook(tmp_path / "tiny.ipynb", GOOD_CELLS)
    for run_id, record_id in (("a", 7), ("b", "7")):
        records = write_records(tmp_path / f"{run_id}.jsonl", [{"id": record_id, "data": {"x": 1, "label": "q"}}])
        run_notebooks([notebook], records, out=tmp_path / "runs", run_id=run_id, engine="inprocess")
    assert trace_record("7", run=tmp_path / "runs" / "a")["id"] == 7
    assert trace_record('"7"', run=tmp_path / "runs" / "b")["id"] == "7"
    with pytest.raises(TraceError, match="ambiguous.*stored both as a string and as a number"):
        trace_record("7", run=tmp_path / "runs")


class FindCounter(monitoring.CommandListener):
    def __init__(self):
        self.finds = []

    def started(self, event):
        if event.command_name in ("find", "aggregate", "count", "distinct"):
            self.finds.append(event.command[event.command_name])

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.mark.slow
def test_trace_from_mongodb_costs_one_query_per_collection(runs, mongo_uri, tmp_path):
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("trace_test")
    store = MongoStore.from_database(client["trace_test"])
    leads = runs / "leads.jsonl"
    for run_id in ("m1", "m2"):
        run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id=run_id, batch_size=25, engine="inprocess", sinks=[store])
    counter = FindCounter()
    watched = pymongo.MongoClient(mongo_uri, event_listeners=[counter])
    database = AuditDatabase(MongoStore.from_database(watched["trace_test"]))
    found = trace_record("lead-5-0000040", database=database)
    assert found["run"]["run_id"] == "m2" and found["live"] is True
    assert [o["run_id"] for o in found["other_runs"]] == ["m1"]
    assert found["batch"] is None  # MongoDB does not know the batch ...
    assert sorted(counter.finds) == ["models", "outcomes", "results", "runs"]  # one query per collection
    assert found["run"]["started_by"]["user"] and found["run"]["input"]["sha256"] == file_sha256(leads)
    located = trace_record("lead-5-0000040", database=database, run=tmp_path)  # ... the run directory does
    assert located["batch"] == 1 and located["models"][0]["execution"]["status"] == "ok"
    older = trace_record("lead-5-0000040", database=database, run_id="m1")
    assert older["run"]["run_id"] == "m1" and older["live"] is False
    result = cli("trace", "nobody", "--mongo-uri", f"{mongo_uri}/trace_test")
    assert result.exit_code == 1 and "id 'nobody' was never scored in MongoDB (trace_test.results)" in result.output
    indexes = client["trace_test"].results.index_information()
    assert "id_current" in indexes
    client.drop_database("trace_test")


def test_trace_names_the_bundle_a_run_scored_with(tmp_path, runs):
    from mlsm_nb.notebook.extract import extract_bundle

    bundle = tmp_path / "bundle"
    extract_bundle([NOTEBOOKS], bundle)
    run_notebooks([NOTEBOOKS], runs / "leads.jsonl", out=tmp_path / "runs", run_id="b", engine="inprocess",
                  bundle=bundle)
    found = trace_record("lead-5-0000001", run=tmp_path / "runs" / "b", model="lead_lr")
    module = json.loads((bundle / "manifest.json").read_text())["models"]
    expected = next(m["module_sha256"] for m in module if m["name"] == "lead_lr")
    assert found["models"][0]["bundle"] == {"path": str(bundle),
                                            "manifest_sha256": file_sha256(bundle / "manifest.json"),
                                            "module_sha256": expected}
    text = cli("trace", "lead-5-0000001", "--run", tmp_path / "runs" / "b", "--model", "lead_lr").output
    manifest_sha = file_sha256(bundle / "manifest.json")
    assert f"bundle    {bundle}  manifest sha256 {manifest_sha}, module sha256 {expected}" in text


def test_trace_shows_the_outcome_attached_to_the_id(tmp_path, runs):
    from mlsm_nb.audit.outcomes import attach_outcomes

    run_dir = tmp_path / "r2"
    shutil.copytree(runs / "runs" / "r2", run_dir)
    (tmp_path / "o.csv").write_text("id,won,observed_at\nlead-5-0000004,true,2026-12-01\n")
    attach_outcomes(tmp_path / "o.csv", "won", run=run_dir)
    text = cli("trace", "lead-5-0000004", "--run", run_dir, "--model", "champion").output
    assert "outcome won = 1 (observed 2026-12-01T00:00:00+00:00)" in text
