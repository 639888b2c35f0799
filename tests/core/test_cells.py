"""A score that raises names the notebook cell and line it was raised in, whichever way the model runs."""

import shutil

import pytest

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records
from mlsm_nb import Model, load_bundle, load_notebook
from mlsm_nb.exceptions import describe_error
from mlsm_nb.notebook.extract import extract_bundle
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.rundir import read_results

# The helper in `setup` (cell 3) raises on line 6 of its cell (IPython drops the two blank lines at the top
# before compiling: the kernel's line numbers are off by two unless the runner says so), called from `score`.
CELLS = replace_cell(replace_cell(GOOD_CELLS, "setup", (
    "\n  \nFACTOR = 2\n\ndef ratio(x):\n    return 10 / (x - 3)")), "score", (
    "def score(data, results):\n"
    "    if data['x'] == 7:\n"
    "        int(data['label'])\n"
    "    return {'score': ratio(data['x']), 'n': len(data['label'])}"))
IN_SETUP = "cell 3 [setup], line 6"
IN_SCORE = "cell 5 [score], line 3"  # int() raised in the library; the innermost cell's line is the one to fix


def entry(model, x, label="ab"):
    return model.execute({"x": x, "label": label}, {})["tiny"]["1.0"]


@pytest.fixture
def notebook(make_notebook):
    return make_notebook(cells=CELLS)


def test_in_process_names_the_innermost_cell_and_line(notebook):
    model = load_notebook(notebook)
    raised = entry(model, 3)
    assert raised == {"_error": "division by zero", "_error_kind": "score_raised", "_error_type": "ZeroDivisionError",
                      "_error_at": IN_SETUP}
    assert entry(model, 7)["_error_at"] == IN_SCORE
    assert describe_error(raised) == f"ZeroDivisionError at {IN_SETUP}: division by zero"


def test_an_extracted_bundle_names_the_notebook_cells_not_the_module_lines(notebook, tmp_path):
    extract_bundle([notebook], tmp_path / "bundle")
    [model] = load_bundle(tmp_path / "bundle")
    assert entry(model, 3)["_error_at"] == IN_SETUP
    assert entry(model, 7)["_error_at"] == IN_SCORE


def test_a_bundle_swapped_in_at_the_same_path_keeps_each_models_cells_apart(notebook, tmp_path):
    extract_bundle([notebook], tmp_path / "bundle")
    [before] = load_bundle(tmp_path / "bundle")
    shutil.rmtree(tmp_path / "bundle")
    longer = replace_cell(CELLS, "version", 'name = "tiny"\n\n\n\nversion = "1.0"\nstatus = "active"')
    extract_bundle([write_notebook(tmp_path / "longer" / "tiny.ipynb", longer)], tmp_path / "bundle")
    [after] = load_bundle(tmp_path / "bundle")
    assert entry(before, 3)["_error_at"] == entry(after, 3)["_error_at"] == IN_SETUP


@pytest.mark.slow
def test_the_papermill_engine_names_the_same_cells_as_the_in_process_engine(notebook, tmp_path):
    records = write_records(tmp_path / "leads.jsonl", 10)
    ran = {}
    for engine in ("inprocess", "papermill"):
        run_notebooks([notebook], records, out=tmp_path, run_id=engine, engine=engine, batch_size=10, workers=1)
        ran[engine] = {d["id"]: d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / engine)}
    assert ran["papermill"][3]["_error_at"] == IN_SETUP and ran["papermill"][7]["_error_at"] == IN_SCORE
    assert ran["papermill"] == ran["inprocess"]


def test_code_outside_a_notebook_is_not_given_a_cell():
    def fails(data, results):
        raise KeyError("x")

    raised = Model("plain", {"x": "int"}, "1", fails).execute({"x": 1}, {})["plain"]["1"]
    assert raised == {"_error": "'x'", "_error_kind": "score_raised", "_error_type": "KeyError"}
    assert describe_error(raised) == "KeyError: 'x'"
