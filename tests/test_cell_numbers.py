"""Every message names a notebook cell as JupyterLab counts it: every cell, markdown too, from 1 (its status bar
says "Cell 10/12"), with the tag, and an untagged cell's first line; the data keeps the cell's index."""

import json

import nbformat
from click.testing import CliRunner

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records
from mlsm_nb.cli import main
from mlsm_nb.exceptions import cell_ref

RAISES_ON_3 = replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    if data['x'] == 3:\n"
                                               "        raise ValueError('no score for 3')\n"
                                               "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}")


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def cell_numbered(path, number):
    """The cell a person reaches in JupyterLab at "Cell `number`" (the status bar counts from 1)."""
    return nbformat.read(path, as_version=4).cells[number - 1]


def test_a_cell_is_named_by_its_number_from_1_its_tag_and_an_untagged_ones_first_line():
    assert cell_ref(0) == "cell 1"
    assert cell_ref(13, "score") == "cell 14 [score]"
    assert cell_ref(8, "", "\n  \nmodel = fit(X, y)\nsave(model)") == "untagged cell 9 (`model = fit(X, y)`)"
    assert cell_ref(8, "", "weights = {name: fit(column) for name, column in training.items()}") == (
        "untagged cell 9 (`weights = {name: fit(column) for name,…`)")


def test_lint_names_the_cell_jupyterlab_shows(tmp_path):
    cells = replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {'score': data['x'] * FACTR}")
    path = write_notebook(tmp_path / "tiny.ipynb", cells, headings=True)  # a markdown heading above each code cell
    result = cli("lint", path)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{path}:cell 10 [score]: line 2: `FACTR` is not defined")
    assert cell_numbered(path, 10).metadata.tags == ["score"]


def test_lint_names_an_untagged_cell_by_its_number_and_first_line(tmp_path):
    cells = [*GOOD_CELLS[:4], (None, "# training\nfrom statistics import mean\nmodel = {'weight': mean([1, 3])}"),
             ("score", "def score(data, results):\n    return {'score': data['x'] * model['weight']}"), GOOD_CELLS[5]]
    path = write_notebook(tmp_path / "tiny.ipynb", cells, headings=True)
    result = cli("lint", path)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(
        f"{path}:cell 12 [score]: line 2: `model` is defined only in untagged cell 10 (`# training`); ")
    assert cell_numbered(path, 10).source.startswith("# training")


def test_a_run_names_the_cell_a_score_raised_in_as_jupyterlab_counts_and_keeps_indices_in_its_data(tmp_path):
    path = write_notebook(tmp_path / "notebooks" / "tiny.ipynb", RAISES_ON_3, headings=True)
    records = write_records(tmp_path / "records.jsonl", 5)
    result = cli("run", path.parent, "--records", records, "--out", tmp_path / "runs", "--run-id", "r",
                 "--engine", "inprocess", "--max-error-rate", "0.5")
    assert result.exit_code == 0, result.output
    assert "id 3: score_raised: ValueError at cell 10 [score], line 3: no score for 3" in result.output
    run_dir = tmp_path / "runs" / "r"
    [document] = [json.loads(line) for line in (run_dir / "results" / "batch-00000.jsonl").read_text().splitlines()
                  if json.loads(line)["id"] == 3]
    assert document["results"]["tiny"]["1.0"]["_error_at"] == "cell 10 [score], line 3"
    assert cell_numbered(path, 10).metadata.tags == ["score"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["cells_counted_from"] == 1  # what replay reads to compare a run kept before this counting
    assert [(c["index"], c["tag"]) for c in manifest["notebooks"][0]["cells"]][-2:] == [(9, "score"), (11, "examples")]


def test_an_extracted_bundle_keeps_indices_in_its_cell_markers(tmp_path):
    path = write_notebook(tmp_path / "notebooks" / "tiny.ipynb", RAISES_ON_3, headings=True)
    assert cli("extract", path, "--out", tmp_path / "bundle").exit_code == 0
    module = (tmp_path / "bundle" / "tiny-1.0" / "model.py").read_text()
    assert "# --- cell 9 [score] ---" in module
