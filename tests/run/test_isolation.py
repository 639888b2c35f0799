"""In-process model code runs in worker processes: exits, crashes, hangs and failing setups cost one
execution (or one record), never the run; a stopped or killed run leaves no worker behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records
from mlsm_nb.processes import pid_alive
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.manifest import load_manifest
from mlsm_nb.store.rundir import read_results

OPTIONS = dict(batch_size=10, engine="inprocess", workers=2)


def score_cell(line_for_13):
    """A score that does `line_for_13` for the record with x == 13 (batch 1 of four batches of ten)."""
    return replace_cell(GOOD_CELLS, "score", (
        "import os, sys, time\n\n"
        "def score(data, results):\n"
        "    if data['x'] == 13:\n"
        f"        {line_for_13}\n"
        "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}"))


@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path / "in.jsonl", 40)


def entries(run_dir, name="tiny"):
    return {d["id"]: d["results"][name]["1.0"] for d in read_results(run_dir)}


def test_sys_exit_in_score_costs_that_record(tmp_path, make_notebook, records):
    notebook = make_notebook(cells=score_cell("sys.exit(0)"))
    manifest = run_notebooks([notebook], records, out=tmp_path, run_id="e", **OPTIONS)
    assert manifest.status == "succeeded with errors" and manifest.failed_executions == 0
    got = entries(tmp_path / "e")
    assert got[13] == {"_error": "score called sys.exit(0)", "_error_kind": "score_raised", "_error_type": "SystemExit",
                       "_error_at": "cell 5 [score], line 5"}
    assert got[12]["score"] == 24 and got[14]["score"] == 28 and len(got) == 40


def test_os_exit_in_score_costs_that_execution_and_the_run_says_failed(tmp_path, make_notebook, records):
    notebook = make_notebook(cells=score_cell("os._exit(0)"))
    manifest = run_notebooks([notebook], records, out=tmp_path, run_id="x", **OPTIONS)
    assert manifest.status == "failed" and manifest.failed_executions == 1
    execution = manifest.executions["tiny@1.0"]
    assert execution[1].status == "failed" and execution[1].worker == "lost"
    assert "tiny.ipynb: batch 1: ExecutionLost: the worker process exited (code 0)" in execution[1].error
    assert all(execution[b].status == "ok" for b in (0, 2, 3))
    got = entries(tmp_path / "x")
    assert len(got) == 40 and all(got[i]["_error_kind"] == "notebook_failed" for i in range(10, 20))
    assert got[9]["score"] == 18 and got[20]["score"] == 40
    on_disk = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["ended_at"]


def test_a_hung_score_is_stopped_at_the_timeout_and_costs_that_execution(tmp_path, make_notebook, records):
    notebook = make_notebook(cells=score_cell("time.sleep(3600)"))
    started = time.monotonic()
    manifest = run_notebooks([notebook], records, out=tmp_path, run_id="h", timeout=2, **OPTIONS)
    assert time.monotonic() - started < 30
    execution = manifest.executions["tiny@1.0"]
    assert execution[1].status == "failed"
    assert "ran longer than the timeout (2 s per model)" in execution[1].error
    assert all(execution[b].status == "ok" for b in (0, 2, 3))
    assert manifest.status == "failed" and len(entries(tmp_path / "h")) == 40


def test_a_model_lost_in_a_batch_fails_alone_and_its_summary_says_why(tmp_path, records):
    killer = write_notebook(tmp_path / "tiny.ipynb", score_cell("os._exit(3)"))
    other = write_notebook(tmp_path / "other.ipynb", replace_cell(GOOD_CELLS, "version",
                                                                  'name = "other"\nversion = "1.0"\nstatus = "active"'))
    summary = write_notebook(tmp_path / "pick.ipynb", [
        ("version", 'name = "pick"\nversion = "1.0"\nstatus = "active"'),
        ("models", 'models = [{"name": "tiny", "version": "1.0"}, {"name": "other", "version": "1.0"}]'),
        ("score", "def score(data, results):\n    return {'score': results['tiny']['1.0']['score']}")])
    manifest = run_notebooks([killer, other, summary], records, out=tmp_path, run_id="s", **OPTIONS)
    failed = {(k, b) for k, per in manifest.executions.items() for b, e in per.items() if e.status != "ok"}
    assert failed == {("tiny@1.0", 1)}
    assert "code 3" in manifest.executions["tiny@1.0"][1].error
    assert entries(tmp_path / "s", "other")[13]["score"] == 26  # scored again, model by model, after the loss
    assert entries(tmp_path / "s", "pick")[13]["_error_kind"] == "missing_dependency"
    assert entries(tmp_path / "s", "pick")[23]["score"] == 46


def test_a_failing_setup_fails_that_model_only(tmp_path, records):
    broken = write_notebook(tmp_path / "broken.ipynb", replace_cell(
        replace_cell(GOOD_CELLS, "version", 'name = "broken"\nversion = "1.0"\nstatus = "active"'),
        "setup", "FACTOR = 1 / 0"))
    good = write_notebook(tmp_path / "tiny.ipynb", GOOD_CELLS)
    manifest = run_notebooks([broken, good], records, out=tmp_path, run_id="b", **OPTIONS)
    assert manifest.status == "failed"
    assert all(e.status == "ok" for e in manifest.executions["tiny@1.0"].values())
    errors = [e.error for e in manifest.executions["broken@1.0"].values()]
    assert len(errors) == 4 and all("ZeroDivisionError" in e and "[setup]" in e for e in errors), errors[0]
    assert entries(tmp_path / "b")[5]["score"] == 10


HANG_AND_RECORD_PID = "open(os.environ['MLSM_TEST_PIDS'] + '/' + str(os.getpid()), 'w').close(); time.sleep(3600)"


def _cli(tmp_path, notebook, records, *extra):
    env = {**os.environ, "MLSM_TEST_PIDS": str(tmp_path / "pids")}
    (tmp_path / "pids").mkdir()
    return subprocess.Popen([sys.executable, "-m", "mlsm_nb.cli", "run", str(notebook), "--records", str(records),
                             "--out", str(tmp_path), "--run-id", "r", "--engine", "inprocess", "--batch-size", "10",
                             "--no-progress", *extra], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _hung_workers(tmp_path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list((tmp_path / "pids").iterdir()):
        time.sleep(0.1)
    return [int(p.name) for p in (tmp_path / "pids").iterdir()]


def _gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_ctrl_c_stops_a_hung_model_at_once(tmp_path, make_notebook, records):
    notebook = make_notebook(cells=score_cell(HANG_AND_RECORD_PID))
    process = _cli(tmp_path, notebook, records)
    workers = _hung_workers(tmp_path)
    assert workers, process.communicate()[0]
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    # The message gives the whole command that finishes the run: what a resume must repeat included.
    assert (f"error: interrupted; finish with: mlsm-nb run {notebook} --records {records} --out {tmp_path} --run-id r "
            "--resume --batch-size 10 --engine inprocess\n") in output
    assert all(_gone(pid) for pid in workers)
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_a_killed_run_leaves_no_worker_behind_and_resumes(tmp_path, make_notebook, records):
    notebook = make_notebook(cells=score_cell(HANG_AND_RECORD_PID))
    process = _cli(tmp_path, notebook, records)
    workers = _hung_workers(tmp_path)
    assert workers, process.communicate()[0]
    process.kill()
    process.communicate()
    assert all(_gone(pid) for pid in workers)
    result = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", str(notebook), "--records", str(records),
                             "--out", str(tmp_path), "--run-id", "r", "--engine", "inprocess", "--batch-size", "10",
                             "--resume", "--timeout", "1", "--no-progress"], capture_output=True, text=True,
                            env={**os.environ, "MLSM_TEST_PIDS": str(tmp_path / "pids")})
    assert result.returncode == 1, result.stdout + result.stderr  # batch 1 hangs again: failed after its timeout
    manifest = load_manifest(tmp_path / "r" / "manifest.json")
    assert manifest.status == "failed" and manifest.failed_executions == 1
    assert len(entries(tmp_path / "r")) == 40
