"""The run manifest's one module: typed parts, statuses as an enum, the JSON shape kept, older shapes read."""

import json

import pytest

from conftest import write_records
from mlsm_nb.exceptions import MlsmError
from mlsm_nb.report.data import build_run_report
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.run.verdict import exit_code, judge
from mlsm_nb.store.manifest import (
    BatchState,
    ExecutionStatus,
    Manifest,
    RunStatus,
    Verdict,
    load_manifest,
    save_manifest,
)
from mlsm_nb.store.rundir import RunDirectory


@pytest.fixture
def finished(tmp_path, make_notebook):
    """A run directory of a real (in-process) run of one notebook over 25 records in 3 batches."""
    records = write_records(tmp_path / "in.jsonl", 25)
    returned = run_notebooks([make_notebook()], records, out=tmp_path / "runs", run_id="m", engine="inprocess",
                             batch_size=10)
    return tmp_path / "runs" / "m", returned


def test_a_run_manifest_reads_typed_and_writes_back_the_same_json(finished):
    root, returned = finished
    on_disk = json.loads((root / "manifest.json").read_text())
    manifest = load_manifest(root / "manifest.json")
    assert manifest.to_dict() == on_disk == returned.to_dict()  # the shape on disk is kept
    assert returned == manifest  # run_notebooks returns it typed
    assert manifest.status is RunStatus.SUCCEEDED and manifest.run_id == "m"
    assert manifest.input.records == 25 and manifest.input.batches == 3 and manifest.input.complete is True
    assert set(manifest.executions["tiny@1.0"]) == {0, 1, 2}  # batches as numbers
    entry = manifest.execution("tiny@1.0", 2)
    assert entry.status is ExecutionStatus.OK and entry.records == 5 and entry.errors == 0
    assert manifest.batch_states == dict.fromkeys((0, 1, 2), BatchState.STORED)  # by every sink (there are none)
    assert manifest.setting("engine") == "inprocess" and manifest.setting("batch_size") == 10
    assert manifest.notebooks[0].name == "tiny" and manifest.notebooks[0].kind == "model"
    assert manifest.verdict == Verdict(0.1, [], [], 0.0, False, False, 0, 0, None)


def test_a_run_started_to_the_microsecond(finished):
    _, returned = finished
    started = returned.started_at
    assert len(started) == len("2026-01-01T00:00:00.000000+00:00") and started[19] == "."


def test_saving_is_atomic_and_keeps_keys_it_does_not_know(tmp_path):
    data = {"run_id": "x", "status": "failed", "started_at": "2026-01-01T00:00:00+00:00", "ended_at": None,
            "notebooks": [{"name": "a", "version": "1", "status": "active", "kind": "model", "later": [1]}],
            "executions": {"a@1": {"0": {"status": "failed", "started_at": None, "worker": "lost", "seconds": None,
                                         "records": 3, "errors": 3, "error": "boom", "from_the_future": True}}},
            "sinks": [], "merge_errors": {"10": "batch 10: no", "2": "batch 2: no"},
            "a_new_key": {"kept": "as is"}}
    save_manifest(tmp_path / "manifest.json", Manifest.from_dict(data))
    assert json.loads((tmp_path / "manifest.json").read_text()) == data
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left
    manifest = load_manifest(tmp_path / "manifest.json")
    assert manifest.merge_error_lines() == ["batch 2: no", "batch 10: no"]
    assert manifest.execution("a@1", 0).extra == {"from_the_future": True}


def test_a_manifest_of_the_older_shape_reads():
    """Written before run verdicts (`threshold`, `over` as a mapping, `reason`), before batch states, and an
    MLSM-style call's run document (its models' registry entries under `models`)."""
    old = Manifest.from_dict({"run_id": "old", "status": "succeeded", "started_at": "2025-06-01T10:00:00+00:00",
                              "input": {"path": "in.jsonl", "sha256": "ab"},
                              "verdict": {"threshold": 0.05, "over": {"tiny@1.0": 0.2}, "reason": "too many"}})
    assert old.verdict.max_error_rate == 0.05 and old.verdict.models_over == ["tiny@1.0"]
    assert old.verdict.message == "too many" and old.input.batches is None and old.batch_states == {}
    unnamed = Verdict.from_dict({"threshold": 0.1})
    assert unnamed.models_over is None  # unknown, not "none over": the report computes it from the models
    call = Manifest.from_dict({"_id": "c", "run_id": "c", "status": "succeeded", "source": "RunModelsAll",
                               "models": [{"name": "m", "version": "1", "status": "draft", "kind": "model"}]})
    assert [n.name for n in call.notebooks] == ["m"] and call.models == {} and call.setting("source") == "RunModelsAll"


def test_an_unreadable_manifest_names_its_file(tmp_path):
    path = tmp_path / "manifest.json"
    with pytest.raises(MlsmError, match=f"{path}: no readable run manifest"):
        load_manifest(path)
    path.write_text(json.dumps({"run_id": "x", "status": "sleeping"}))
    with pytest.raises(MlsmError, match=f"{path}: no readable run manifest .*'sleeping'"):
        RunDirectory(tmp_path).read_manifest()
    path.write_text("[1, 2]")
    with pytest.raises(MlsmError, match="not a JSON object"):
        load_manifest(path)


def test_statuses_are_one_enum_used_by_the_verdict_and_the_report(finished):
    root, _ = finished
    assert exit_code(RunStatus.SUCCEEDED_WITH_ERRORS) == 0 and exit_code("interrupted") == 130
    assert exit_code(RunStatus.FAILED) == 1
    report = build_run_report(root)
    assert report.status is RunStatus.SUCCEEDED and report.status_class == "ok"
    manifest = load_manifest(root / "manifest.json")
    manifest.store_error = "mongodb: batch 1: down"
    status, verdict = judge(manifest, 0.1)
    assert status is RunStatus.FAILED and verdict == Verdict(0.1, [], [], 0.0, False, False, 0, 0, None).to_dict()
    manifest.status = RunStatus.INTERRUPTED
    RunDirectory(root).write_manifest(manifest)
    assert json.loads((root / "manifest.json").read_text())["status"] == "interrupted"
    assert build_run_report(root).status_class == "failed"
