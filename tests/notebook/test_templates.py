"""The shipped templates stay clean and in the order the docs describe."""

import json

import pytest
from click.testing import CliRunner

from conftest import TEMPLATES
from mlsm_nb.cli import main
from mlsm_nb.notebook.contract import inspect_notebook


def clean_problems(path):
    """Saved state a template must not ship: outputs, execution counts, widget state, run metadata."""
    nb = json.loads(path.read_text())
    problems = [f"notebook metadata {key}" for key in nb["metadata"] if key not in ("kernelspec", "language_info")]
    for index, cell in enumerate(nb["cells"]):
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has an execution count")
        problems += [f"cell {index} metadata {key}" for key in cell["metadata"] if key != "tags"]
    return problems


@pytest.mark.parametrize("kind", ["model", "summary"])
def test_templates_and_new_notebooks_are_clean(tmp_path, kind):
    assert clean_problems(TEMPLATES / f"{kind}.ipynb") == []
    result = CliRunner().invoke(main, ["new", kind, "fresh", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert clean_problems(tmp_path / "fresh.ipynb") == []


def test_model_template_trains_before_setup_loads():
    # The loop the docs describe: train in untagged cells, save beside the notebook, load in `setup`;
    # Run All must reach the training cells before `setup` reads what they save.
    spec, problems = inspect_notebook(TEMPLATES / "model.ipynb")
    assert problems == []
    cells = json.loads((TEMPLATES / "model.ipynb").read_text())["cells"]
    tags = [(cell["metadata"].get("tags") or [None])[0] for cell in cells if cell["cell_type"] == "code"]
    assert tags[:7] == ["version", "fields", "parameters", None, "setup", "score", "examples"]


@pytest.mark.slow
def test_fresh_template_notebooks_run_to_the_end_headless_with_papermill(tmp_path):
    """Run All outside JupyterLab (papermill, as nbconvert would): the Try it cells say one line and do nothing."""
    import papermill

    folder = tmp_path / "notebooks"
    for args in (["new", "model", "my_model", "--dir", str(folder)],
                 ["new", "summary", "my_summary", "--dir", str(folder), "--models", "my_model:0.1.0"]):
        assert CliRunner().invoke(main, args).exit_code == 0
    for name in ("my_model", "my_summary"):
        done = papermill.execute_notebook(str(folder / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                                          cwd=str(folder), progress_bar=False, kernel_name="python3")
        shown = {"".join(c.source).splitlines()[-1]: "".join(o.get("data", {}).get("text/plain", "")
                                                             for o in c.outputs)
                 for c in done.cells if c.cell_type == "code" and c.outputs}
        assert shown["check()"] == ("check() is for JupyterLab: this kernel runs no notebook session (papermill, "
                                    "nbconvert), so it does nothing here; `mlsm-nb validate` checks notebooks "
                                    "headless")
        assert shown["tryout()"] == ("tryout() is for JupyterLab: this kernel runs no notebook session "
                                     "(papermill, nbconvert), so it does nothing here")
        assert not any(o.output_type == "error" for c in done.cells for o in c.get("outputs", []))
