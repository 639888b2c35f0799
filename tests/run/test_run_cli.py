import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell
from mlsm_nb.cli import main
from mlsm_nb.leads import generate_leads
from mlsm_nb.store.rundir import read_results

pytestmark = pytest.mark.slow


def write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def leads_file(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("in") / "leads.jsonl", generate_leads(300, seed=4))


def run_cli(*args):
    result = CliRunner().invoke(main, ["run", *map(str, args)])
    return result


def manifest_of(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def papermill_run(leads_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = run_cli(NOTEBOOKS, "--records", leads_file, "--out", out, "--run-id", "pm", "--batch-size", 120)
    return result, out / "pm"


def test_example_notebooks_end_to_end(papermill_run):
    result, run_dir = papermill_run
    assert result.exit_code == 0, result.output
    assert "run pm: succeeded (papermill engine)" in result.output
    assert "\n  lead_rules@2.0.0 (draft) 300 records, score mean" in result.output  # not active: marked
    assert "\n  lead_rules@1.0.0         300 records, score mean" in result.output
    docs = list(read_results(run_dir))
    assert len(docs) == 300 and len({d["id"] for d in docs}) == 300
    doc = docs[0]
    assert set(doc) == {"id", "run_id", "_timestamp", "_current", "results"}
    assert doc["run_id"] == "pm" and doc["_current"] == 0 and isinstance(doc["_timestamp"], int)
    results = doc["results"]
    assert set(results["lead_rules"]) == {"1.0.0", "2.0.0"}
    assert results["lead_lr"]["1.0.0"]["_status"] == "active"
    champion = results["champion"]["1.0.0"]
    best = max(results["lead_rules"]["1.0.0"]["score"], results["lead_lr"]["1.0.0"]["score"])
    assert champion["score"] == best and champion["route"] in ("sales", "nurture")


def test_manifest_records_what_ran(papermill_run, leads_file):
    _, run_dir = papermill_run
    manifest = manifest_of(run_dir)
    assert manifest["status"] == "succeeded" and manifest["ended_at"]
    assert manifest["input"]["records"] == 300 and manifest["input"]["batches"] == 3
    assert len(manifest["input"]["sha256"]) == 64
    notebooks = {(n["name"], n["version"]): n for n in manifest["notebooks"]}
    assert notebooks["champion", "1.0.0"]["kind"] == "summary"
    assert len(notebooks["lead_lr", "1.0.0"]["sha256"]) == 64
    executions = manifest["executions"]
    assert set(executions) == {"lead_rules@1.0.0", "lead_rules@2.0.0", "lead_lr@1.0.0", "champion@1.0.0"}
    one = executions["lead_lr@1.0.0"]["0"]
    assert one["status"] == "ok" and one["seconds"] > 0 and (run_dir / one["executed"]).is_file()
    assert {"mlsm-nb", "papermill", "python", "pandas"} <= set(manifest["versions"])
    stats = manifest["models"]["lead_rules@1.0.0"]
    assert stats["records"] == 300 and stats["errors"] == {} and 0 <= stats["score_min"] <= stats["score_max"] <= 1


def test_executed_notebooks_show_the_summary(papermill_run):
    _, run_dir = papermill_run
    nb = nbformat.read(run_dir / "executed" / "lead_lr@1.0.0" / "batch-00000.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["injected-parameters"] in tags
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    text = json.dumps(outputs)
    assert "lead_lr 1.0.0: 120 records, 0 errors (scored with `score_frame`)" in text
    assert any("image/svg+xml" in o.get("data", {}) for o in outputs)
    sample = next(o["data"]["text/plain"] for o in outputs if "_reasons" in o.get("data", {}).get("text/plain", ""))
    first = next(d for d in read_results(run_dir) if "_reasons" in d["results"]["lead_lr"]["1.0.0"])
    reasons = first["results"]["lead_lr"]["1.0.0"]["_reasons"]
    words = ", ".join(f"{r['field']} {r['contribution']:+.3g}" for r in reasons)
    assert words in sample  # the sample of the batch reads its reasons as one line


def test_both_engines_give_identical_results(papermill_run, leads_file, tmp_path):
    _, run_dir = papermill_run
    result = run_cli(NOTEBOOKS, "--records", leads_file, "--out", tmp_path, "--run-id", "ip",
                     "--batch-size", 120, "--engine", "inprocess")
    assert result.exit_code == 0, result.output
    papermill = [(d["id"], d["results"]) for d in read_results(run_dir)]
    inprocess = [(d["id"], d["results"]) for d in read_results(tmp_path / "ip")]
    assert papermill == inprocess
    assert not any((tmp_path / "ip" / "executed").rglob("*.ipynb"))


def tiny_records(tmp_path, n=6):
    return write_records(tmp_path / "tiny.jsonl", [{"id": f"r{i}", "data": {"x": i, "label": "ab"}} for i in range(n)])


def test_failing_notebook_marks_its_records_and_others_go_on(tmp_path, make_notebook):
    good = make_notebook("good.ipynb")
    cells = replace_cell(GOOD_CELLS, "version", 'name = "broken"\nversion = "1"\nstatus = "draft"')
    cells = replace_cell(cells, "setup", "FACTOR = 2\nraise RuntimeError('cannot load weights')")
    broken = make_notebook("broken.ipynb", cells)
    result = run_cli(good, broken, "--records", tiny_records(tmp_path), "--out", tmp_path / "runs",
                     "--run-id", "f", "--batch-size", 3)
    assert result.exit_code == 1
    assert f"{broken}:cell 3 [setup]: batch 0: RuntimeError: cannot load weights" in result.output
    docs = list(read_results(tmp_path / "runs" / "f"))
    assert len(docs) == 6
    assert all(d["results"]["broken"]["1"]["_error_kind"] == "notebook_failed" for d in docs)
    assert all(d["results"]["tiny"]["1.0"]["score"] == int(d["id"][1:]) * 2 for d in docs)
    manifest = manifest_of(tmp_path / "runs" / "f")
    assert manifest["status"] == "failed" and manifest["failed_executions"] == 2
    executed = nbformat.read(tmp_path / "runs" / "f" / manifest["executions"]["broken@1"]["0"]["executed"], 4)
    assert any(o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", []))


REASONS_AT_3 = ("def score(data, results):\n"
                "    why = 'big' if data['x'] == 3 else data['x'] * FACTOR\n"
                "    return {'score': data['x'] * FACTOR, '_reasons': [{'field': 'x', 'contribution': why}]}")


def test_a_bad_reasons_is_its_records_bad_output_in_both_engines_named_by_id_and_field(tmp_path, make_notebook):
    path = make_notebook(cells=replace_cell(replace_cell(GOOD_CELLS, "score", REASONS_AT_3), "examples", None))
    records = tiny_records(tmp_path)
    documents = {}
    for engine in ("papermill", "inprocess"):
        result = run_cli(path, "--records", records, "--out", tmp_path / "runs", "--run-id", engine, "--batch-size", 4,
                         "--engine", engine, "--max-error-rate", 0.5)
        assert result.exit_code == 0, result.output
        assert ("    id 'r3': bad_output: _reasons[0]['contribution'] is 'big' (str), expected a finite number"
                in result.output.splitlines())
        documents[engine] = [(d["id"], d["results"]) for d in read_results(tmp_path / "runs" / engine)]
    assert documents["papermill"] == documents["inprocess"]
    entries = {record_id: results["tiny"]["1.0"] for record_id, results in documents["inprocess"]}
    assert entries["r2"] == {"score": 4, "_reasons": [{"field": "x", "contribution": 4}], "_status": "active"}
    assert entries["r3"]["_error_kind"] == "bad_output" and len(entries) == 6


@pytest.mark.parametrize("source, words", [
    ("import time\ntime.sleep(60)", "batch 0:"),
    ("import os\nos._exit(1)", "batch 0:"),
])
def test_timeout_and_dead_kernel_fail_only_that_execution(tmp_path, make_notebook, source, words):
    cells = replace_cell(GOOD_CELLS, "setup", "FACTOR = 2\n" + source)
    path = make_notebook("hang.ipynb", cells)
    result = run_cli(path, "--records", tiny_records(tmp_path, 2), "--out", tmp_path, "--run-id", "t",
                     "--timeout", 5)
    assert result.exit_code == 1
    assert f"{path}" in result.output and words in result.output
    assert "Traceback" not in result.output
    docs = list(read_results(tmp_path / "t"))
    assert [d["results"]["tiny"]["1.0"]["_error_kind"] for d in docs] == ["notebook_failed"] * 2


def test_bad_records_go_to_rejected_and_the_rest_is_scored(tmp_path, make_notebook):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": "a", "data": {"x": 1, "label": ""}}\nnot json\n{"data": {}}\n'
                    '{"id": "a", "data": {"x": 2, "label": ""}}\n{"id": "b", "data": {"x": "7", "label": ""}}\n')
    result = run_cli(make_notebook(), "--records", path, "--out", tmp_path, "--run-id", "m", "--engine", "inprocess")
    assert result.exit_code == 1, result.output  # 3 of 5 lines rejected: over --max-error-rate
    assert "2 scored in 1 batch(es), 3 rejected" in result.output
    assert "error: 60.0% of input lines were rejected (over --max-error-rate 0.1)" in result.output
    rejected = [json.loads(line) for line in (tmp_path / "m" / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [2, 3, 4]
    assert "duplicate id 'a'" in rejected[2]["reason"]
    docs = {d["id"]: d for d in read_results(tmp_path / "m")}
    assert docs["b"]["results"]["tiny"]["1.0"]["_error_kind"] == "bad_type"


@pytest.mark.parametrize("name, content, words", [
    ("missing.jsonl", None, "missing.jsonl: no such file"),
    ("empty.jsonl", "", "empty.jsonl: the file is empty"),
    ("noid.csv", "x,label\n1,a\n", "noid.csv: no id column 'id'"),
])
def test_file_level_problems_are_one_line_and_exit_1(tmp_path, make_notebook, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = run_cli(make_notebook(), "--records", path, "--out", tmp_path / "runs", "--engine", "inprocess")
    assert result.exit_code == 1
    assert words in result.output and "Traceback" not in result.output


def test_secrets_never_reach_the_run_directory(tmp_path, make_notebook):
    cells = replace_cell(GOOD_CELLS, "setup", "FACTOR = 2\nassert db_uri.startswith('mongodb://')")
    cells = [("parameters", "db_uri = ''\napi_token = ''\nthreshold = 0.5")] + cells
    path = make_notebook("secret.ipynb", cells)
    planted = "s3cr3t-PLANTED-value"
    result = run_cli(path, "--records", tiny_records(tmp_path, 2), "--out", tmp_path, "--run-id", "s",
                     "--param", f"db_uri=mongodb://scorer:{planted}@db.example:27017/leads",
                     "--param", f"api_token={planted}", "--param", "threshold=0.7")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "s"
    for file in run_dir.rglob("*"):
        if file.is_file():
            assert planted not in file.read_text(errors="replace"), file
    assert manifest_of(run_dir)["parameters"] == {"db_uri": "***", "api_token": "***", "threshold": 0.7}
    assert not [name for name in os.environ if name.startswith("MLSM_PARAM_")]  # only the kernels' env had them


def test_resume_repeats_only_what_is_missing(tmp_path, leads_file):
    args = [NOTEBOOKS / "lead_rules.ipynb", "--records", leads_file, "--out", tmp_path, "--run-id", "r",
            "--batch-size", 100, "--engine", "inprocess"]
    assert run_cli(*args).exit_code == 0
    run_dir = tmp_path / "r"
    manifest = manifest_of(run_dir)
    manifest["executions"]["lead_rules@1.0.0"]["1"]["status"] = "failed"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "results" / "batch-00001.jsonl").unlink()
    kept = manifest["executions"]["lead_rules@1.0.0"]["0"]["started_at"]
    result = run_cli(*args, "--resume")
    assert result.exit_code == 0, result.output
    after = manifest_of(run_dir)
    assert after["executions"]["lead_rules@1.0.0"]["0"]["started_at"] == kept
    assert after["executions"]["lead_rules@1.0.0"]["1"]["status"] == "ok"
    ids = [d["id"] for d in read_results(run_dir)]
    assert len(ids) == len(set(ids)) == 300
    assert run_cli(*args).exit_code == 1  # the run exists: no silent overwrite


@pytest.mark.parametrize("how", ["sigkill", "ctrl-c", "sigterm"])
def test_killed_or_interrupted_run_is_completed_by_resume(tmp_path, leads_file, how):
    args = [sys.executable, "-m", "mlsm_nb.cli", "run", str(NOTEBOOKS), "--records", str(leads_file),
            "--out", str(tmp_path), "--run-id", "k", "--batch-size", "50", "--workers", "1"]
    process = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    manifest_path = tmp_path / "k" / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if manifest_path.is_file() and len(json.loads(manifest_path.read_text()).get("executions", {})) >= 1:
            break
        time.sleep(0.2)
    if how == "sigkill":
        os.killpg(process.pid, signal.SIGKILL)  # the runner and its kernels
        process.wait()
        assert manifest_of(tmp_path / "k")["status"] == "running"
    else:  # Ctrl-C in the terminal, or SIGTERM (Jenkins aborting the build): stopped, and told how to finish
        process.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        said = "interrupted" if how == "ctrl-c" else "terminated (SIGTERM)"
        assert process.returncode == (130 if how == "ctrl-c" else 143), err
        assert (f"error: {said}; finish with: mlsm-nb run {NOTEBOOKS} --records {leads_file} --out {tmp_path} "
                "--run-id k --resume --batch-size 50\n") in err
        assert "Traceback" not in err
        assert manifest_of(tmp_path / "k")["status"] == "interrupted"
    done = subprocess.run(args[:-2] + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [d["id"] for d in read_results(tmp_path / "k")]
    assert len(ids) == len(set(ids)) == 300


def test_the_resume_command_repeats_the_time_limits_the_run_was_given():
    from mlsm_nb.run.settings import resume_command

    said = resume_command(["nb"], "in.jsonl", "runs", "r", {"batch_size": 10, "record_timeout": 5.0, "timeout": 600.0})
    assert said == ("mlsm-nb run nb --records in.jsonl --out runs --run-id r --resume --batch-size 10 "
                    "--record-timeout 5.0")
    said = resume_command(["nb"], "in.jsonl", "runs", "r", {"timeout": 30.0, "record_timeout": 0.0})
    assert said.endswith("--resume --timeout 30.0 --record-timeout 0.0")
