"""`mlsm-nb run --record-timeout`, driven as a person would: a score that sleeps on 8 of 300 records, and
one stuck in C code on 2, with both engines; the run goes on, only those records fail, as `timeout`,
and the summary names them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_notebook
from mlsm_nb.store.rundir import read_results

SLOW = [7, 42, 77, 123, 150, 201, 250, 299]  # a sleep: an interrupt ends it
STUCK = [5, 150]  # C code holding the interpreter: no interrupt reaches it; its kernel or worker is replaced


def lead_id(x):
    return f"lead-{x}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("record-timeout")
    write_notebook(folder / "nb" / "slowish.ipynb", [
        ("version", 'name = "slowish"\nversion = "1.0"\nstatus = "active"'),
        ("fields", 'fields = {"x": int}'),
        ("setup", f"import time\nSLOW = {set(SLOW)!r}"),
        ("score", "def score(data, results):\n    if data['x'] in SLOW:\n        time.sleep(30)\n"
                  "    return {'score': data['x'] / 300}")])
    write_notebook(folder / "nb" / "stuck.ipynb", [
        ("version", 'name = "stuck"\nversion = "1.0"\nstatus = "active"'),
        ("fields", 'fields = {"x": int}'),
        ("setup", f"STUCK = {set(STUCK)!r}"),
        ("score", "def score(data, results):\n    if data['x'] in STUCK:\n        sum(range(10**12))\n"
                  "    return {'score': data['x'] / 300}")])
    (folder / "leads.jsonl").write_text("".join(json.dumps({"id": lead_id(x), "data": {"x": x}}) + "\n"
                                                for x in range(300)))
    return folder


@pytest.mark.parametrize("engine", ["inprocess", pytest.param("papermill", marks=pytest.mark.slow)])
def test_slow_records_fail_alone_as_timeouts_named_in_the_summary(folder, engine):
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", "nb", "--records", "leads.jsonl", "--out",
                           "runs", "--run-id", engine, "--engine", engine, "--batch-size", "100",
                           "--record-timeout", "1", "--timeout", "20", "--no-progress"],
                          cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"run {engine}: succeeded with errors" in out
    assert "slowish@1.0              300 records, score mean" in out and "errors: 8 timeout (2.7%)" in out
    assert "errors: 2 timeout (0.7%)" in out
    assert "  slowest records (--record-timeout 1 s):\n" in out
    named = {line.split()[1].strip("'") for line in out.splitlines() if line.endswith("  timeout")}
    assert named == {lead_id(x) for x in SLOW + STUCK}  # 10 timeouts: all named
    documents = {d["id"]: d["results"] for d in read_results(folder / "runs" / engine)}
    assert len(documents) == 300
    for model, failed in (("slowish", SLOW), ("stuck", STUCK)):
        timeouts = {i for i, r in documents.items() if r[model]["1.0"].get("_error_kind") == "timeout"}
        assert timeouts == {lead_id(x) for x in failed}
        assert all(r[model]["1.0"]["score"] == int(i[5:]) / 300 for i, r in documents.items() if i not in timeouts)
    assert "stuck where no interrupt reached it" in documents[lead_id(5)]["stuck"]["1.0"]["_error"]
    manifest = json.loads((folder / "runs" / engine / "manifest.json").read_text())
    assert manifest["record_timeout"] == 1.0 and manifest["failed_executions"] == 0
    executions = manifest["executions"]["stuck@1.0"]
    assert [e.get("stuck", [[None]])[0][0] for _, e in sorted(executions.items())] == ["lead-5", "lead-150", None]
    assert {i for i, _ in manifest["slowest"]["slowish@1.0"][:8]} == {lead_id(x) for x in SLOW}


def test_the_board_files_a_killed_run_left_are_removed_and_a_live_runs_kept():
    from mlsm_nb.run.watchdog import KernelBoard, remove_stale_boards

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a process id nobody has now
    with KernelBoard() as live:
        stale = Path(live.path).with_name(f"mlsm-board-{gone}-abcd1234")
        stale.write_bytes(bytes(64))
        assert remove_stale_boards() >= 1
        assert not stale.exists() and Path(live.path).exists()
    assert not Path(live.path).exists()  # a board is removed when its execution ends
