import pytest

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell, write_records
from mlsm_nb.leads import save_leads
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.rundir import read_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "leads.jsonl"
    save_leads(path, 240, seed=6)
    return path


def results(run_dir):
    return [(d["id"], d["results"]) for d in read_results(run_dir)]


@pytest.mark.parametrize("engine", ["inprocess", "papermill"])
def test_local_cluster_gives_the_local_results(tmp_path, leads, engine):
    options = dict(out=tmp_path, batch_size=80, engine=engine)
    local = run_notebooks([NOTEBOOKS], leads, run_id="local", **options)
    dask = run_notebooks([NOTEBOOKS], leads, run_id="dask", scheduler="local:2", **options)
    assert local.status == dask.status == "succeeded"
    assert results(tmp_path / "local") == results(tmp_path / "dask")
    workers = {e.worker for per in dask.executions.values() for e in per.values()}
    assert all(w.startswith("tcp://") for w in workers) and len(workers) == 2
    assert dask.setting("scheduler") == "local:2"


KILLER = replace_cell(GOOD_CELLS, "score", (
    "import os\n\n"
    "def score(data, results):\n"
    "    if data['x'] == 13 and os.environ.get('MLSM_TEST_KILL') == '1':\n"
    "        os._exit(1)  # the worker process dies\n"
    "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}"))


def test_a_task_that_kills_its_worker_fails_alone_and_resume_finishes(tmp_path, make_notebook, monkeypatch):
    notebook = make_notebook("killer.ipynb", KILLER)
    records = tmp_path / "in.jsonl"
    write_records(records, 40)
    options = dict(out=tmp_path, run_id="k", batch_size=10, engine="inprocess", scheduler="local:2")
    monkeypatch.setenv("MLSM_TEST_KILL", "1")
    manifest = run_notebooks([notebook], records, **options)
    assert manifest.status == "failed" and manifest.failed_executions == 1
    executions = manifest.executions["tiny@1.0"]
    assert executions[1].status == "failed" and executions[1].worker == "lost"
    assert all(executions[b].status == "ok" for b in (0, 2, 3))
    docs = {d["id"]: d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "k")}
    assert len(docs) == 40
    assert docs[13]["_error_kind"] == "notebook_failed" and docs[25]["score"] == 50

    monkeypatch.setenv("MLSM_TEST_KILL", "0")
    manifest = run_notebooks([notebook], records, resume=True, **options)
    assert manifest.status == "succeeded"
    docs = {d["id"]: d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "k")}
    assert len(docs) == 40 and docs[13]["score"] == 26
