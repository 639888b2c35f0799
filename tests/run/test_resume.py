"""Resume derives what is missing from what exists; one process per run directory."""

import fcntl
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import NOTEBOOKS
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.leads import save_leads
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store import rundir
from mlsm_nb.store.manifest import ExecutionStatus
from mlsm_nb.store.rundir import RunDirectory, read_results

OPTIONS = dict(batch_size=500, engine="inprocess", workers=2)


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "leads.jsonl"
    save_leads(path, 5000, seed=7)
    return path


def comparable(run_dir):
    return [(d["id"], d["results"]) for d in read_results(run_dir)]


@pytest.fixture(scope="module")
def uninterrupted(leads, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    manifest = run_notebooks([NOTEBOOKS], leads, out=out, run_id="whole", **OPTIONS)
    assert manifest.status == "succeeded"
    return out / "whole", manifest


def test_a_lost_merge_is_merged_again(tmp_path, leads, uninterrupted):
    run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="r", **OPTIONS)
    (tmp_path / "r" / "results" / "batch-00004.jsonl").unlink()
    manifest = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="r", resume=True, **OPTIONS)
    assert manifest.status == "succeeded"
    assert comparable(tmp_path / "r") == comparable(uninterrupted[0])
    assert {k: m["records"] for k, m in manifest.models.items()} == {k: 5000 for k in manifest.models}


KILL_AFTER_SCORING = """
import os, signal, sys
from mlsm_nb.run import orchestrate, schedule

original = schedule.Scheduler.merged
def merged_or_die(self, event):
    if event.batch == 3:  # a worker scored batch 3 and wrote its results: die before the manifest records it
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, event)
schedule.Scheduler.merged = merged_or_die
orchestrate.run_notebooks([sys.argv[1]], sys.argv[2], out=sys.argv[3], run_id="k", batch_size=500,
                          engine="inprocess", workers=2)
"""


def test_killed_between_scoring_and_recording_then_resumed_equals_an_uninterrupted_run(tmp_path, leads,
                                                                                          uninterrupted):
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_SCORING, str(NOTEBOOKS), str(leads), str(tmp_path)])
    assert killed.returncode == -9
    run_dir = tmp_path / "k"
    before = json.loads((run_dir / "manifest.json").read_text())
    assert before["status"] == "running" and "3" not in before.get("batch_stats", {})
    assert (run_dir / "results" / "batch-00003.jsonl").exists()
    manifest = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="k", resume=True, **OPTIONS)
    assert manifest.status == "succeeded"
    assert comparable(run_dir) == comparable(uninterrupted[0])
    assert manifest.models == uninterrupted[1].models
    assert manifest.input == uninterrupted[1].input


# The papermill engine runs each (notebook, batch) on its own and merges the batch's output files afterwards.
PAPERMILL = dict(batch_size=20, engine="papermill", workers=2)

KILL_BEFORE_MERGE = """
import os, signal, sys
from mlsm_nb.run import merge
from mlsm_nb.run.orchestrate import run_notebooks

original = merge.Merger.merge
def merge_or_die(self, batch, *args):
    if batch == 1:  # every execution of batch 1 is done: die before its results are written
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batch, *args)
merge.Merger.merge = merge_or_die
run_notebooks([sys.argv[1]], sys.argv[2], out=sys.argv[3], run_id="k", batch_size=20, engine="papermill", workers=2)
"""


@pytest.fixture(scope="module")
def few_leads(tmp_path_factory):
    path = tmp_path_factory.mktemp("few") / "leads.jsonl"
    save_leads(path, 60, seed=8)
    return path


@pytest.mark.slow
def test_papermill_killed_between_executions_and_merge_then_resumed_equals_an_uninterrupted_run(tmp_path,
                                                                                                 few_leads):
    whole = run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="whole", **PAPERMILL)
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_MERGE, str(NOTEBOOKS), str(few_leads), str(tmp_path)])
    assert killed.returncode == -9
    run_dir = tmp_path / "k"
    before = json.loads((run_dir / "manifest.json").read_text())
    assert before["status"] == "running"
    assert all(before["executions"][key]["1"]["status"] == "ok" for key in before["executions"])
    assert not (run_dir / "results" / "batch-00001.jsonl").exists()
    manifest = run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="k", resume=True, **PAPERMILL)
    assert manifest.status == "succeeded"
    assert comparable(run_dir) == comparable(tmp_path / "whole")
    assert manifest.models == whole.models


KILL_WHILE_READING = """
import os, signal, sys
from mlsm_nb.run import orchestrate, plans

original = plans.write_lines
def write_or_die(path, lines):
    if path.name == "batch-00004.jsonl":  # executions of the first batches ran while the input was read
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path, lines)
plans.write_lines = write_or_die
orchestrate.run_notebooks([sys.argv[1]], sys.argv[2], out=sys.argv[3], run_id="k", batch_size=10,
                          engine="papermill", workers=2)
"""


@pytest.mark.slow
def test_papermill_killed_while_reading_the_input_then_resumed_keeps_what_ran(tmp_path, few_leads):
    options = {**PAPERMILL, "batch_size": 10}
    whole = run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="whole", **options)
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_READING, str(NOTEBOOKS), str(few_leads),
                             str(tmp_path)])
    assert killed.returncode == -9
    before = json.loads((tmp_path / "k" / "manifest.json").read_text())
    assert before["status"] == "running" and "complete" not in before["input"]
    ran = {(key, int(batch)): e["started_at"] for key, batches in before["executions"].items()
           for batch, e in batches.items() if e["status"] == "ok"}
    assert ran and all(batch < 4 for _, batch in ran)
    manifest = run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="k", resume=True, **options)
    assert manifest.status == "succeeded" and manifest.input == whole.input
    assert comparable(tmp_path / "k") == comparable(tmp_path / "whole")
    assert manifest.models == whole.models
    assert all(manifest.executions[key][batch].started_at == at for (key, batch), at in ran.items())


@pytest.mark.slow
def test_a_rerun_model_reruns_the_summaries_that_consumed_it(tmp_path, few_leads):
    run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="s", **PAPERMILL)
    run_dir = RunDirectory(tmp_path / "s")
    manifest = run_dir.read_manifest()
    manifest.executions["lead_lr@1.0.0"][2].status = ExecutionStatus.FAILED
    for batch in (1, 2):
        manifest.executions["champion@1.0.0"][batch].started_at = "before the resume"
    run_dir.write_manifest(manifest)
    after = run_notebooks([NOTEBOOKS], few_leads, out=tmp_path, run_id="s", resume=True, **PAPERMILL)
    assert after.executions["champion@1.0.0"][2].started_at != "before the resume"  # ran again
    assert after.executions["champion@1.0.0"][1].started_at == "before the resume"  # kept


def test_in_process_a_batch_with_a_failed_execution_is_scored_again_whole(tmp_path, leads):
    run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="w", **OPTIONS)
    run_dir = RunDirectory(tmp_path / "w")
    manifest = run_dir.read_manifest()
    manifest.executions["lead_lr@1.0.0"][2].status = ExecutionStatus.FAILED
    for key in manifest.executions:
        for batch in (1, 2):
            manifest.executions[key][batch].started_at = "before the resume"
    run_dir.write_manifest(manifest)
    after = run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="w", resume=True, **OPTIONS)
    assert all(after.executions[key][2].started_at != "before the resume" for key in after.executions)
    assert all(after.executions[key][1].started_at == "before the resume" for key in after.executions)
    assert after.status == "succeeded"


LOCK_AND_LEAVE_A_CHILD = """
import fcntl, os, subprocess, sys

with open(os.path.join(sys.argv[1], ".lock"), "a+") as lock:  # as RunDirectory.lock takes it
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.write(str(os.getpid()))
    lock.flush()
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))", sys.argv[2]],
                             pass_fds=[lock.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(child.pid, flush=True)
    os._exit(0)  # as if killed: the child, holding the lock's descriptor, outlives its parent
"""


def _leave_a_lock_behind(run_dir, seconds):
    """(pid of the process that took the run's lock and ended, pid of its child that still holds it)."""
    run_dir.mkdir()
    taker = subprocess.run([sys.executable, "-c", LOCK_AND_LEAVE_A_CHILD, str(run_dir), str(seconds)],
                           capture_output=True, text=True, check=True)
    holder = int(taker.stdout)
    assert (run_dir / ".lock").read_text() != str(os.getpid())
    with open(run_dir / ".lock") as f, pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return int((run_dir / ".lock").read_text()), holder


def test_a_lock_left_to_a_child_of_a_killed_run_is_waited_for(tmp_path):
    _leave_a_lock_behind(tmp_path / "r", seconds=2)
    with RunDirectory(tmp_path / "r").lock():
        assert (tmp_path / "r" / ".lock").read_text() == str(os.getpid())


def test_a_lock_a_leftover_process_keeps_is_refused_after_a_while(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "LEFTOVER_WAIT", 0.3)
    taker, holder = _leave_a_lock_behind(tmp_path / "r", seconds=60)
    try:
        with pytest.raises(ConfigError, match=rf"run r is locked by a process left over from mlsm-nb process "
                                              rf"{taker}, which has ended; stop it first \(`fuser -v "):
            with RunDirectory(tmp_path / "r").lock():
                pass
    finally:
        os.kill(holder, signal.SIGKILL)


def test_a_second_process_on_the_same_run_is_refused(tmp_path, leads):
    run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="l", **OPTIONS)
    with RunDirectory(tmp_path / "l").lock():
        with pytest.raises(ConfigError, match=r"run l is being run by another mlsm-nb process \(pid \d+\)"):
            run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="l", resume=True, **OPTIONS)
    with pytest.raises(ConfigError, match="run directory exists; pass --resume"):
        run_notebooks([NOTEBOOKS], leads, out=tmp_path, run_id="l", **OPTIONS)
