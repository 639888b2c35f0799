"""What changed in a notebook's production cells and artifacts, named as people find them."""

from conftest import GOOD_CELLS, replace_cell, write_notebook
from mlsm_nb.notebook.changes import cell_parts, changed_artifacts, changed_cells, parts
from mlsm_nb.notebook.contract import lint_notebook


def cells(*items):
    return cell_parts(items)


def test_changed_added_and_removed_cells_are_named_by_number_and_tag():
    before = cells((1, "version", "v"), (3, "setup", "a = 1"), (5, "score", "def score(...)"))
    after = cells((1, "version", "v"), (3, "setup", "a = 2"), (5, "score", "def score(...)"), (6, "examples", "e"))
    assert changed_cells(before, after) == ["cell 4 [setup] changed", "cell 7 [examples] added"]
    assert changed_cells(after, before) == ["cell 4 [setup] changed", "cell 7 [examples] removed"]
    assert changed_cells(before, before) == []


def test_cells_moved_up_are_said_once_with_why():
    before = cells((2, "version", "v"), (4, "fields", "f"), (6, "score", "s"))
    after = cells((1, "version", "v"), (3, "fields", "f"), (5, "score", "s"))
    assert changed_cells(before, after) == [
        "cell 2 [version] to cell 6 [score] moved 1 up (a cell added or removed above it; the hash covers where "
        "each cell is)"]


def test_artifacts_by_name():
    assert changed_artifacts({"a.json": "1", "b.json": "2"}, {"a.json": "1", "b.json": "3", "c.json": None}) == {
        "b.json": "artifact b.json changed", "c.json": "artifact c.json added"}
    assert changed_artifacts({"a.json": "1"}, {"a.json": None}) == {"a.json": "artifact a.json missing"}
    assert changed_artifacts({"a.json": "1"}, {}) == {"a.json": "artifact a.json no longer listed"}


def test_parts_hash_what_sha256_covers(tmp_path):
    source = replace_cell(GOOD_CELLS, "version",
                          'name = "tiny"\nversion = "1.0"\nstatus = "draft"\nartifacts = ["w.json"]')
    (tmp_path / "w.json").write_text("{}")
    spec = lint_notebook(write_notebook(tmp_path / "tiny.ipynb", source))
    recorded = parts(spec)
    assert [(c["index"], c["tag"]) for c in recorded["cells"]] == [(0, "version"), (1, "fields"), (2, "setup"),
                                                                   (4, "score"), (5, "examples")]
    (tmp_path / "w.json").write_text('{"x": 1}')
    assert changed_artifacts(recorded["artifact_sha256"], parts(spec)["artifact_sha256"]) == {
        "w.json": "artifact w.json changed"}
