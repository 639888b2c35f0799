"""`mlsm-nb run` over hostile records, outputs and parameters: one bad thing costs one record, never the run."""

import hashlib
import json

import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, replace_cell, write_records
from mlsm_nb.cli import main
from mlsm_nb.store.rundir import read_results

pytestmark = pytest.mark.slow

HOSTILE_LINES = [
    b'{"id": 1, "data": {"x": 1, "label": "int id"}}',
    b'{"id": "1", "data": {"x": 2, "label": "str id"}}',
    b'{"id": 2, "data": {"x": 3, "label": "caf\xe9"}}',
    b'{"id": 3, "data": {"x": 4, "label": ' + b"[" * 300 + b"]" * 300 + b"}}",
    b'{"id": 4.0, "data": {"x": 5, "label": "float id"}}',
    b'{"id": 5, "data": {"x": 6, "label": "ok"}}',
]


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


@pytest.mark.parametrize("engine", ["inprocess", "papermill"])
def test_hostile_lines_cost_their_line_and_ids_keep_their_type(tmp_path, make_notebook, engine):
    records = tmp_path / "hostile.jsonl"
    records.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    # half the lines are hostile: allow that share, so the verdict says "succeeded with errors"
    result = run_cli(make_notebook(), "--records", records, "--out", tmp_path, "--run-id", "h", "--engine", engine,
                     "--max-error-rate", "0.5")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rejected = [json.loads(line) for line in (tmp_path / "h" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejected] == [
        (3, "not valid UTF-8"), (4, "nested too deeply to be stored as JSON"),
        (5, "id field 'id' must be a string or an integer, got float 4.0")]
    docs = list(read_results(tmp_path / "h"))
    assert [(d["id"], d["results"]["tiny"]["1.0"]["score"]) for d in docs] == [(1, 2), ("1", 4), (5, 12)]


DECIMAL_SCORE = ("import decimal\n"
                 "def score(data, results):\n"
                 "    return {'score': decimal.Decimal(1) if data['x'] == 2 else data['x'] * FACTOR, 'n': 1}")


@pytest.mark.parametrize("engine", ["inprocess", "papermill"])
def test_one_output_json_cannot_hold_costs_one_record(tmp_path, make_notebook, engine):
    path = make_notebook("decimal.ipynb", replace_cell(GOOD_CELLS, "score", DECIMAL_SCORE))
    records = tmp_path / "r.jsonl"
    records.write_text("".join(json.dumps({"id": i, "data": {"x": i, "label": "a"}}) + "\n" for i in range(1, 4)))
    # the exit code is the verdict's business (--max-error-rate); here: the run finished, one record lost
    result = run_cli(path, "--records", records, "--out", tmp_path, "--run-id", "d", "--engine", engine)
    assert "Traceback" not in result.output
    entries = {d["id"]: d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "d")}
    assert entries[1] == {"score": 2, "n": 1, "_status": "active"}
    assert entries[3] == {"score": 6, "n": 1, "_status": "active"}
    assert entries[2]["_error_kind"] == "bad_output" and "Decimal" in entries[2]["_error"]


def test_a_password_nested_in_a_dict_parameter_never_reaches_the_run_directory(tmp_path, make_notebook):
    planted = "s3cr3t-PLANTED-nested"
    digest = hashlib.sha256(planted.encode()).hexdigest()  # the notebook checks the value without holding it
    cells = replace_cell(GOOD_CELLS, "setup", "import hashlib\nFACTOR = 2\n"
                         f"assert hashlib.sha256(db['password'].encode()).hexdigest() == {digest!r}\n"
                         "assert db['port'] == 1\n"
                         "import logging\n"  # the kernel's own log, outside the notebook
                         "logging.getLogger('IPKernelApp').error('connecting with ' + db['password'])")
    path = make_notebook("nested.ipynb", [("parameters", "db = {}")] + cells)
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps({"id": 1, "data": {"x": 1, "label": "a"}}) + "\n")
    param = json.dumps({"host": "db.example", "port": 1, "password": planted})
    result = run_cli(path, "--records", records, "--out", tmp_path, "--run-id", "s", "--param", f"db={param}")
    assert result.exit_code == 0, result.output
    for file in (tmp_path / "s").rglob("*"):
        if file.is_file():
            assert planted not in file.read_text(errors="replace"), file
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["parameters"] == {"db": {"host": "db.example", "port": 1, "password": "***"}}
    log = tmp_path / "s" / manifest["executions"]["tiny@1.0"]["0"]["kernel_log"]
    assert "ERROR | connecting with ***" in log.read_text()


def test_a_cell_that_rebinds_the_declarations_changes_neither_engine(tmp_path, make_notebook):
    cells = replace_cell(GOOD_CELLS, "setup", 'FACTOR = 2\nstatus = "retired"\nfields = {"x": {"type": "str"}}')
    notebook = make_notebook(cells=cells)
    records = tmp_path / "in.jsonl"
    write_records(records, 3)
    scored = {}
    for engine in ("inprocess", "papermill"):
        result = run_cli(notebook, "--records", records, "--out", tmp_path, "--run-id", engine, "--engine", engine)
        assert result.exit_code == 0, result.output
        scored[engine] = [d["results"] for d in read_results(tmp_path / engine)]
    assert scored["inprocess"] == scored["papermill"]
    assert scored["papermill"][2] == {"tiny": {"1.0": {"score": 4, "n": 2, "_status": "active"}}}


@pytest.mark.parametrize("engine", ["inprocess", "papermill"])
def test_sys_exit_in_score_costs_that_record_in_both_engines(tmp_path, make_notebook, engine):
    cells = replace_cell(GOOD_CELLS, "score", "import sys\n\ndef score(data, results):\n"
                                              "    if data['x'] == 1:\n        sys.exit(0)\n"
                                              "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}")
    records = tmp_path / "in.jsonl"
    write_records(records, 20)
    result = run_cli(make_notebook(cells=cells), "--records", records, "--out", tmp_path, "--run-id", "x",
                     "--engine", engine)
    assert result.exit_code == 0, result.output
    entries = {d["id"]: d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "x")}
    assert entries[1]["_error_type"] == "SystemExit" and entries[1]["_error_kind"] == "score_raised"
    assert entries[2]["score"] == 4 and len(entries) == 20
