import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, TEMPLATES, replace_cell
from mlsm_nb.cli import main
from mlsm_nb.notebook.contract import inspect_notebook


def lint(*paths):
    return CliRunner().invoke(main, ["lint", *map(str, paths)])


def test_examples_and_templates_pass_lint():
    result = lint(NOTEBOOKS, TEMPLATES)
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output


def test_good_notebook_declarations(make_notebook):
    spec, problems = inspect_notebook(make_notebook())
    assert problems == []
    assert (spec.name, spec.version, spec.status, spec.kind) == ("tiny", "1.0", "active", "model")
    assert spec.fields == {"x": {"type": "int", "min": 0}, "label": "str"}
    assert [c.tag for c in spec.cells] == ["version", "fields", "setup", "score", "examples"]
    assert "authoring only" not in spec.production_source()


BAD_CELLS = {
    "two_version_cells": (GOOD_CELLS + [("version", 'name = "x"\nversion = "2"\nstatus = "draft"')],
                          "cell 6 [version]: a second `version` cell (the first is cell 0)"),
    "fields_from_call": (replace_cell(GOOD_CELLS, "fields", "fields = dict(x=int)"),
                         "cell 1 [fields]: line 1: `fields` must be a literal"),
    "status_prod": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = "1"\nstatus = "prod"'),
                    "cell 0 [version]: status 'prod' must be one of draft, active, retired"),
    "name_with_spaces": (replace_cell(GOOD_CELLS, "version", 'name = "lead score"\nversion = "1"\nstatus = "draft"'),
                         "cell 0 [version]: name 'lead score' must match [a-z][a-z0-9_]*"),
    "no_score": (replace_cell(GOOD_CELLS, "score", None), "no cell tagged `score`"),
    "no_fields": (replace_cell(GOOD_CELLS, "fields", None), "no cell tagged `fields`; a model notebook needs"),
    "unknown_type": (replace_cell(GOOD_CELLS, "fields", 'fields = {"x": "integer"}'),
                     "cell 1 [fields]: field 'x': unknown type 'integer'"),
    "bad_signature": (replace_cell(GOOD_CELLS, "score", "def score(record):\n    return {}"),
                      "cell 4 [score]: line 1: score must take exactly (data, results), not (record)"),
    "syntax_error": (replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {'a': }"),
                     "cell 4 [score]: syntax error at line 2"),
    "magic": (replace_cell(GOOD_CELLS, "setup", "%matplotlib inline"), "cell 2 [setup]: line 1: IPython magics"),
    "non_literal_version": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = str(1)\nstatus = "draft"'),
                            "cell 0 [version]: line 2: `version` must be a literal"),
    "code_in_version": (replace_cell(GOOD_CELLS, "version", 'import os\nname = "t"\nversion = "1"\nstatus = "draft"'),
                        "cell 0 [version]: line 1: only `name`, `version`, `status` and `artifacts`"),
    "bad_examples": (replace_cell(GOOD_CELLS, "examples", 'examples = [{"input": {}}]'),
                     "cell 5 [examples]: examples must be a list like"),
    "summary_bad_models": ([("version", 'name = "s"\nversion = "1"\nstatus = "draft"'),
                            ("models", 'models = [{"name": "a"}]'),
                            ("score", "def score(data, results):\n    return {}")],
                           "cell 1 [models]: models must be a non-empty list"),
}


@pytest.mark.parametrize("name", sorted(BAD_CELLS))
def test_bad_notebooks_give_one_line_naming_file_and_cell(name, make_notebook):
    cells, message = BAD_CELLS[name]
    path = make_notebook(f"{name}.ipynb", cells)
    result = lint(path)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "problem(s)" not in line]
    assert any(line.startswith(f"{path}:") and message in line for line in lines), result.output


def test_not_a_notebook_empty_and_other_language(tmp_path, make_notebook):
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text("{not json")
    empty = make_notebook("empty.ipynb", [])
    julia = make_notebook("julia.ipynb", language="julia")
    result = lint(corrupt, empty, julia, tmp_path / "missing.ipynb")
    assert result.exit_code == 1
    assert f"{corrupt}: not a readable notebook" in result.output
    assert f"{empty}: the notebook is empty" in result.output
    assert f"{julia}: kernel language is 'julia'" in result.output
    assert "missing.ipynb: no such file" in result.output


def test_lint_of_folder_without_notebooks_fails(tmp_path):
    result = lint(tmp_path)
    assert result.exit_code == 1 and "no notebooks found" in result.output


def test_lint_never_runs_notebook_code(tmp_path, make_notebook):
    marker = tmp_path / "ran"
    cells = replace_cell(GOOD_CELLS, "setup", f"open({str(marker)!r}, 'w').close()")
    assert lint(make_notebook(cells=cells)).exit_code == 0
    assert not marker.exists()


def test_new_model_then_lint(tmp_path):
    env_cwd = tmp_path
    new = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "new", "model", "x"], cwd=env_cwd,
                         capture_output=True, text=True)
    assert new.returncode == 0, new.stderr
    path = env_cwd / "notebooks" / "x.ipynb"
    spec, problems = inspect_notebook(path)
    assert problems == [] and spec.name == "x"
    assert lint(path).exit_code == 0
    again = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "new", "model", "x"], cwd=env_cwd,
                           capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_new_summary_with_models(tmp_path):
    result = CliRunner().invoke(main, ["new", "summary", "pick", "--dir", str(tmp_path),
                                       "--models", "lead_rules:1.0.0", "--models", "lead_lr:1.0.0"])
    assert result.exit_code == 0, result.output
    spec, problems = inspect_notebook(tmp_path / "pick.ipynb")
    assert problems == []
    assert spec.kind == "summary"
    assert spec.models == [{"name": "lead_rules", "version": "1.0.0"}, {"name": "lead_lr", "version": "1.0.0"}]
    bad = CliRunner().invoke(main, ["new", "summary", "p2", "--dir", str(tmp_path), "--models", "nocolon"])
    assert bad.exit_code == 1 and "name:version" in bad.output
    bad_name = CliRunner().invoke(main, ["new", "model", "Bad Name", "--dir", str(tmp_path)])
    assert bad_name.exit_code == 1 and "must match" in bad_name.output


def test_lint_is_safe_from_several_threads():
    # validate lints notebooks in parallel threads; CPython 3.11's parser is not thread-safe on its own.
    import threading

    paths = sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(TEMPLATES.glob("*.ipynb"))
    errors = []

    def work():
        for _ in range(15):
            for path in paths:
                try:
                    assert inspect_notebook(path)[1] == []
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
