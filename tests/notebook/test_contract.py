import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, TEMPLATES, replace_cell, write_notebook
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
                          "cell 7 [version]: a second `version` cell (the first is cell 1)"),
    "fields_from_call": (replace_cell(GOOD_CELLS, "fields", "fields = dict(x=int)"),
                         "cell 2 [fields]: line 1: `fields` must be a literal"),
    "status_prod": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = "1"\nstatus = "prod"'),
                    "cell 1 [version]: status 'prod' must be one of draft, active, retired"),
    "name_with_spaces": (replace_cell(GOOD_CELLS, "version", 'name = "lead score"\nversion = "1"\nstatus = "draft"'),
                         "cell 1 [version]: name 'lead score' must match [a-z][a-z0-9_]*"),
    "no_score": (replace_cell(GOOD_CELLS, "score", None), "no cell tagged `score`"),
    "no_fields": (replace_cell(GOOD_CELLS, "fields", None), "no cell tagged `fields`; a model notebook needs"),
    "unknown_type": (replace_cell(GOOD_CELLS, "fields", 'fields = {"x": "integer"}'),
                     "cell 2 [fields]: field 'x': unknown type 'integer'"),
    "bad_signature": (replace_cell(GOOD_CELLS, "score", "def score(record):\n    return {}"),
                      "cell 5 [score]: line 1: score must take exactly (data, results), not (record)"),
    "syntax_error": (replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {'a': }"),
                     "cell 5 [score]: syntax error at line 2"),
    "magic": (replace_cell(GOOD_CELLS, "setup", "%matplotlib inline"), "cell 3 [setup]: line 1: IPython magics"),
    "non_literal_version": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = str(1)\nstatus = "draft"'),
                            "cell 1 [version]: line 2: `version` must be a literal"),
    "code_in_version": (replace_cell(GOOD_CELLS, "version", 'import os\nname = "t"\nversion = "1"\nstatus = "draft"'),
                        "cell 1 [version]: line 1: only literal `name`, `version`, `status` and `artifacts` "
                        "assignments belong in the version cell (`import os`); move other code to a `setup` cell"),
    # Code where only literals belong (issue 15): every statement that is not a literal assignment.
    "call_in_fields": (replace_cell(GOOD_CELLS, "fields", 'fields = {"x": "int"}\nimport os; os.system("id")'),
                       "cell 2 [fields]: line 2: only `fields = {...}` (a literal dict) belong in the fields cell "
                       "(`import os; os.system(\"id\")`); move other code to a `setup` cell"),
    "decorator_in_fields": (replace_cell(GOOD_CELLS, "fields",
                                         'fields = {"x": "int"}\n@print\ndef f():\n    pass'),
                            "cell 2 [fields]: line 2: only `fields = {...}` (a literal dict) belong"),
    "fields_reassigned": (replace_cell(GOOD_CELLS, "fields", 'fields = {"x": "int"}\nfields = {"y": "int"}'),
                          "cell 2 [fields]: line 2: `fields` is assigned again (first at line 1); assign it once"),
    "bare_expression_in_version": (replace_cell(GOOD_CELLS, "version",
                                                'name = "tiny"\nversion = "1"\nstatus = "draft"\nprint("hi")'),
                                   "cell 1 [version]: line 4: only literal `name`, `version`, `status` and "
                                   "`artifacts` assignments belong in the version cell (`print(\"hi\")`)"),
    "walrus_in_version": (replace_cell(GOOD_CELLS, "version",
                                       'name = "tiny"\nversion = (v := "1")\nstatus = "draft"'),
                          "cell 1 [version]: line 2: `version` must be a literal"),
    "path_in_version": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = "../../x"\nstatus = "draft"'),
                        "cell 1 [version]: version '../../x' must be a string such as \"1.0.0\" "
                        "(letters, digits, and . _ + - after the first character)"),
    "nul_in_version": (replace_cell(GOOD_CELLS, "version", 'name = "tiny"\nversion = "1\\x00"\nstatus = "draft"'),
                       "cell 1 [version]: version '1\\x00' must be a string such as"),
    "get_ipython_system": (replace_cell(GOOD_CELLS, "setup", 'get_ipython().system("id")'),
                           "cell 3 [setup]: line 1: IPython (get_ipython(), magics, shell escapes) is not allowed"),
    "import_ipython": (replace_cell(GOOD_CELLS, "setup", "from IPython import get_ipython"),
                       "cell 3 [setup]: line 1: IPython (get_ipython(), magics, shell escapes) is not allowed"),
    "code_in_examples": (replace_cell(GOOD_CELLS, "examples", 'examples = []\nopen("x", "w")'),
                         "cell 6 [examples]: line 2: only `examples = [...]` (a literal list) belong"),
    # Tag typos (issue 16): the cell that carries the unknown tag, and the tag meant.
    "exmaples": ([(t if t != "examples" else "exmaples", *rest) for t, *rest in GOOD_CELLS],
                 "cell 6 [exmaples]: tag `exmaples` is not a contract tag; did you mean `examples`?"),
    "setpu": ([(t if t != "setup" else "setpu", *rest) for t, *rest in GOOD_CELLS],
              "cell 3 [setpu]: tag `setpu` is not a contract tag; did you mean `setup`?"),
    "scroe": ([(t if t != "score" else "scroe", *rest) for t, *rest in GOOD_CELLS],
              "cell 5 [scroe]: tag `scroe` is not a contract tag; did you mean `score`?"),
    "unrelated_tag": (GOOD_CELLS + [("plots", "1")],
                      "cell 7 [plots]: tag `plots` is not a contract tag; the contract's tags are version, "
                      "fields, parameters, setup, score, examples, models; rename or remove it"),
    "missing_artifact": (replace_cell(GOOD_CELLS, "version",
                                      'name = "tiny"\nversion = "1"\nstatus = "draft"\nartifacts = ["w.json"]'),
                         "cell 1 [version]: artifact `w.json` is listed in `artifacts` but {folder}/w.json does not "
                         "exist; run the cell that saves it, then commit the file beside the notebook"),
    "bad_examples": (replace_cell(GOOD_CELLS, "examples", 'examples = [{"input": {}}]'),
                     "cell 6 [examples]: examples must be a list like"),
    # `_reasons` (core.output's one definition), read as literals: from `examples`, and from what `score` returns
    "reasons_in_examples": (replace_cell(GOOD_CELLS, "examples", 'examples = [{"data": {"x": 2, "label": "ab"}, '
                                         '"expected": {"score": 4, "_reasons": [{"field": "x"}]}}]'),
                            "cell 6 [examples]: example 0: in `expected`, _reasons[0] has no 'contribution' (see "
                            "`_reasons` in docs/data-scientists.md)"),
    "reasons_not_a_list": (replace_cell(GOOD_CELLS, "examples", 'examples = [{"data": {"x": 2, "label": "ab"}, '
                                        '"expected": {"score": 4, "_reasons": "x"}}]'),
                           "cell 6 [examples]: example 0: in `expected`, _reasons is str, expected a list"),
    "reasons_returned": (replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {'score': 1,\n"
                                      "            '_reasons': [{'field': 'x', 'contribution': 1, 'why': 'big'}]}"),
                         "cell 5 [score]: line 3: score returns a bad _reasons: _reasons[0] has 'why': an item "
                         "holds only 'field' and 'contribution'"),
    "summary_bad_models": ([("version", 'name = "s"\nversion = "1"\nstatus = "draft"'),
                            ("models", 'models = [{"name": "a"}]'),
                            ("score", "def score(data, results):\n    return {}")],
                           "cell 2 [models]: models must be a non-empty list"),
}


@pytest.mark.parametrize("name", sorted(BAD_CELLS))
def test_bad_notebooks_give_one_line_naming_file_and_cell(name, make_notebook):
    cells, message = BAD_CELLS[name]
    path = make_notebook(f"{name}.ipynb", cells)
    result = lint(path)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "problem(s)" not in line]
    message = message.replace("{folder}", str(path.parent))
    assert any(line.startswith(f"{path}:") and message in line for line in lines), result.output


def test_reasons_computed_at_run_time_are_left_to_the_run_and_good_literals_pass(make_notebook):
    score = ("def score(data, results):\n    parts = {'x': data['x']}\n"
             "    return {'score': 1, '_reasons': [{'field': k, 'contribution': v} for k, v in parts.items()]}")
    examples = ('examples = [{"data": {"x": 2, "label": "ab"}, "expected": {"score": 1, '
                '"_reasons": [{"field": "x", "contribution": 2}]}}]')
    spec, problems = inspect_notebook(make_notebook(cells=replace_cell(replace_cell(GOOD_CELLS, "score", score),
                                                                       "examples", examples)))
    assert problems == [] and spec.examples[0]["expected"]["_reasons"] == [{"field": "x", "contribution": 2}]


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
    assert "3 notebook(s) checked, 4 problem(s)" in result.output


def test_lint_of_folder_without_notebooks_fails(tmp_path):
    result = lint(tmp_path)
    assert result.exit_code == 1 and "no notebooks found" in result.output


def test_lint_never_runs_notebook_code(tmp_path, make_notebook):
    marker = tmp_path / "ran"
    cells = replace_cell(GOOD_CELLS, "setup", f"FACTOR = 2\nopen({str(marker)!r}, 'w').close()")
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


def test_tool_tags_are_not_problems(make_notebook):
    cells = GOOD_CELLS + [("nbval-skip", "1"), ("raises-exception", "1 / 0")]
    assert inspect_notebook(make_notebook(cells=cells))[1] == []


def _edit(path, change):
    import json

    nb = json.loads(path.read_text())
    change(nb)
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda nb: nb["cells"][2]["metadata"].update(tags=None),
     "cell 3: metadata.tags must be a list of strings, got None; set the tags again in the property inspector"),
    (lambda nb: nb["cells"][2]["metadata"].update(tags="setup"), "cell 3: metadata.tags must be a list of strings"),
    (lambda nb: nb["metadata"].update(kernelspec="python3"), "no kernelspec in the notebook's metadata"),
    (lambda nb: nb["metadata"].pop("kernelspec"),
     "no kernelspec in the notebook's metadata (papermill cannot run it); open it in JupyterLab, "
     "choose the Python 3 kernel and save"),
    (lambda nb: nb.update(metadata=[]), "not a readable notebook"),
], ids=["tags_null", "tags_string", "kernelspec_string", "no_kernelspec", "metadata_list"])
def test_malformed_metadata_is_a_problem_not_a_crash(make_notebook, change, message):
    path = _edit(make_notebook(), change)
    result = lint(path)
    assert result.exit_code == 1, result.output
    assert f"{path}:{message}" in result.output or f"{path}: {message}" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_nbformat_v3_notebook_without_kernelspec_fails_lint(tmp_path):
    import json

    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"},
                                "worksheets": [{"cells": [{"cell_type": "code", "input": "x = 1", "outputs": [],
                                                           "language": "python", "metadata": {}}]}]}))
    result = lint(path)
    assert result.exit_code == 1 and f"{path}: no kernelspec" in result.output, result.output


def test_lint_prints_problems_and_summary_on_stdout(make_notebook):
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "score", None))
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "lint", str(path)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.splitlines() == [
        f"{path}: no cell tagged `score`; a model notebook needs exactly one",
        "1 notebook(s) checked, 1 problem(s)"]


def test_untracked_artifact_in_a_repository(tmp_path, make_notebook):
    cells = replace_cell(GOOD_CELLS, "version",
                         'name = "tiny"\nversion = "1"\nstatus = "draft"\nartifacts = ["w.json"]')
    path = make_notebook(cells=cells)
    (tmp_path / "w.json").write_text("{}")
    assert lint(path).exit_code == 0  # not a repository: nothing to say
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = lint(path)
    assert result.exit_code == 1
    assert (f"{path}:cell 1 [version]: artifact `w.json` is not tracked by git, so Jenkins and everyone else "
            f"lack it; `git add {tmp_path / 'w.json'}` and commit") in result.output
    subprocess.run(["git", "add", "w.json"], cwd=tmp_path, check=True)
    assert lint(path).exit_code == 0


def test_ipython_display_is_allowed_in_production_cells(tmp_path):
    path = write_notebook(tmp_path / "shows.ipynb",
                          replace_cell(GOOD_CELLS, "setup", "from IPython.display import display\nFACTOR = 2"))
    assert inspect_notebook(path)[1] == []


def test_lint_reports_every_fields_problem_at_once_with_the_type_meant(make_notebook):
    fields = 'fields = {"x": "integer", "y": {"type": "flaot", "min": 0}, "z": {"type": "str", "nulable": True}}'
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "fields", fields))
    result = lint(path)
    assert result.exit_code == 1
    assert result.output.splitlines()[:3] == [
        f"{path}:cell 2 [fields]: field 'x': unknown type 'integer' (did you mean `int`?); "
        "use one of int, float, str, bool",
        f"{path}:cell 2 [fields]: field 'y': unknown type 'flaot' (did you mean `float`?); "
        "use one of int, float, str, bool",
        f"{path}:cell 2 [fields]: field 'z': unknown spec key(s) ['nulable'] (did you mean `nullable`?); "
        "known: ['allowed', 'max', 'min', 'nullable', 'required', 'type']"]


UNTAGGED_MODEL = "from statistics import mean\nmodel = {'weight': mean([1, 3])}"
HINT = ("production runs only the tagged cells: define it in a tagged cell, or save it beside the notebook and "
        "load it in `setup`")


@pytest.mark.parametrize("cells, message", [
    # score uses what a training cell fitted: Run All works, production fails every record
    ([*GOOD_CELLS[:4], (None, UNTAGGED_MODEL),
      ("score", "def score(data, results):\n    return {'score': data['x'] * model['weight'] * FACTOR}"),
      GOOD_CELLS[5]],
     f"cell 6 [score]: line 2: `model` is defined only in untagged cell 5 (`from statistics import mean`); {HINT}"),
    # setup reads what training made (module level: extraction fails)
    ([*GOOD_CELLS[:2], (None, "%matplotlib inline\nsample = [1, 2]\n!echo trained"),
      ("setup", "FACTOR = 2\nTOP = max(sample)"), *GOOD_CELLS[4:]],
     f"cell 4 [setup]: line 2: `sample` is defined only in untagged cell 3 (`%matplotlib inline`); {HINT}"),
    # a name no cell defines, and the one meant
    (replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {'score': data['x'] * FACTR}"),
     f"cell 5 [score]: line 2: `FACTR` is not defined in any cell (did you mean `FACTOR`?); {HINT}"),
    # a production cell that uses what a later production cell defines, at module level
    ([*GOOD_CELLS[:2], ("setup", "DOUBLE = FACTOR * 2"), ("setup", "FACTOR = 2"), *GOOD_CELLS[4:]],
     "cell 3 [setup]: line 1: `FACTOR` is used before cell 4 [setup] defines it; production runs the tagged "
     "cells in order: move the definition up"),
])
def test_lint_finds_names_production_cannot_see(make_notebook, cells, message):
    path = make_notebook(cells=cells)
    result = lint(path)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{path}:{message}"


def test_lint_knows_ipython_builtins_later_definitions_in_functions_and_star_imports(make_notebook):
    cells = [*GOOD_CELLS[:2], ("setup", "display('loading')\nFACTOR = 2"),
             ("score", "def score(data, results):\n    return {'score': data['x'] * FACTOR * helper()}"),
             ("setup", "from math import *\n\ndef helper():\n    return floor(pi) - 2"), GOOD_CELLS[5]]
    assert lint(make_notebook(cells=cells)).exit_code == 0
