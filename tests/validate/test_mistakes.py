"""A data scientist's ordinary mistakes, and the exact line each tool shows for them (lint, validate, JUnit)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from junitparser import Failure, JUnitXml

from conftest import GOOD_CELLS, write_notebook
from mlsm_nb.cli import main

TRAIN = 'import json\nwith open("weights.json", "w") as f:\n    json.dump({"factor": 2}, f)'
LOAD = 'import json\nwith open("weights.json") as f:\n    FACTOR = json.load(f)["factor"]'


def authored(path: Path, cells) -> Path:
    """A notebook as people write one: a markdown heading before each code cell (code cell k, from 0, is cell
    2k + 2 as JupyterLab counts)."""
    return write_notebook(path, cells, headings=True)


def retag(cells, old, new):
    return [(new if tag == old else tag, *rest) for tag, *rest in cells]


def with_version(artifacts):
    return [("version", f'name = "tiny"\nversion = "1.0"\nstatus = "draft"\nartifacts = {artifacts!r}'),
            *GOOD_CELLS[1:]]


# name -> (cells, check that fails, the exact message; {path} and {folder} filled in)
MISTAKES = {
    "typo_examples": (retag(GOOD_CELLS, "examples", "exmaples"), "lint",
                      "{path}:cell 12 [exmaples]: tag `exmaples` is not a contract tag; did you mean `examples`?"),
    "typo_setup": (retag(GOOD_CELLS, "setup", "setpu"), "lint",
                   "{path}:cell 6 [setpu]: tag `setpu` is not a contract tag; did you mean `setup`?; "
                   "{path}:cell 10 [score]: line 2: `FACTOR` is defined only in untagged cell 6 (`FACTOR = 2`); "
                   "production runs only the tagged cells: define it in a tagged cell, or save it beside the "
                   "notebook and load it in `setup`"),
    "typo_score": (retag(GOOD_CELLS, "score", "scroe"), "lint",
                   "{path}:cell 10 [scroe]: tag `scroe` is not a contract tag; did you mean `score`?; "
                   "{path}: no cell tagged `score`; a model notebook needs exactly one"),
    "artifact_not_saved": ([*with_version(["weights.json"])[:2], (None, TRAIN), ("setup", LOAD),
                            *GOOD_CELLS[4:]], "lint",
                           "{path}:cell 2 [version]: artifact `weights.json` is listed in `artifacts` but "
                           "{folder}/weights.json does not exist; run the cell that saves it, then commit the file "
                           "beside the notebook; the notebook's untagged cells create weights.json when run "
                           "(validate ran them in a scratch copy; your folder is unchanged): run them, then commit "
                           "the file(s) beside the notebook"),
    "setup_raises": ([*GOOD_CELLS[:2], ("setup", "import math\nFACTOR = 2\nLOG = math.log(FACTOR - 2)"),
                      *GOOD_CELLS[3:]], "nbval", "cell 6 [setup] raised at line 3: ValueError: math domain error"),
    "stale_output": ([*GOOD_CELLS, (None, "print(1 + 1)", "3\n")], "nbval",
                     "untagged cell 14 (`print(1 + 1)`): the output differs from the saved one: expected '3', "
                     "got '2'; re-run all cells and save, or mark an unstable output with # NBVAL_IGNORE_OUTPUT"),
}


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_each_mistake_gives_one_plain_line_in_validate_and_junit_and_the_folder_is_untouched(tmp_path):
    folder, work = tmp_path / "models", tmp_path / "work"
    work.mkdir()
    paths = {name: authored(folder / f"{name}.ipynb", cells) for name, (cells, _, _) in MISTAKES.items()}
    before = tree_digest(folder)
    report = tmp_path / "validate.xml"
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "validate", str(folder), "--junit", str(report),
                           "--timeout", "60"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert tree_digest(folder) == before  # nothing written, nothing changed beside the notebooks
    assert not (folder / "weights.json").exists()
    assert list(work.iterdir()) == []  # no .hypothesis/ or anything else where validate was started
    assert "\x1b" not in done.stdout + done.stderr + report.read_text()
    cases = {(case.classname, case.name): case for suite in JUnitXml.fromfile(str(report)) for case in suite}
    for name, (_, check, message) in MISTAKES.items():
        path = paths[name]
        expected = message.format(path=path, folder=folder)
        assert f"error: {path}: {check}: {expected}" in done.stderr.splitlines(), (name, done.stderr)
        failures = [r for r in cases[str(path), check].result if isinstance(r, Failure)]
        assert failures and failures[0].message == expected, (name, failures)
        assert any(line.startswith(f"  FAIL {check}") and line.endswith(expected) for line in done.stdout.splitlines())


def test_lint_names_the_cell_of_each_tag_typo(tmp_path):
    for name in ("typo_examples", "typo_setup", "typo_score"):
        cells, _, message = MISTAKES[name]
        path = authored(tmp_path / f"{name}.ipynb", cells)
        result = CliRunner().invoke(main, ["lint", str(path)])
        assert result.exit_code == 1
        assert result.output.splitlines()[0] == message.format(path=path).split(f"; {path}")[0]


def test_parity_over_nothing_is_a_failure(tmp_path):
    from mlsm_nb.notebook.contract import lint_notebook
    from mlsm_nb.notebook.execute import load_notebook
    from mlsm_nb.validate.checks import check_parity

    cells = [*GOOD_CELLS[:4], ("score", "def score(data, results):\n    return None")]
    path = authored(tmp_path / "broken.ipynb", cells)
    result = check_parity(lint_notebook(path), load_notebook(path))
    assert result.status == "failed"
    assert result.message == ("nothing to compare: every example and generated input gave an error (see "
                              "robustness and examples), so the notebook and the extracted model could not be "
                              "compared")


@pytest.mark.slow
def test_validate_honours_timeout_in_nbval_and_in_the_model_checks(tmp_path):
    import time

    cells = [*GOOD_CELLS[:2], ("setup", "FACTOR = 2\nwhile True:\n    pass"), *GOOD_CELLS[3:]]
    path = authored(tmp_path / "hangs.ipynb", cells)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["validate", str(path), "--timeout", "3"])
    assert time.monotonic() - started < 180  # two kernels' start-up on a busy machine, not hours
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (f"error: {path}: nbval: cell 6 [setup] did not finish within 3 s; make it faster or give it longer "
            "with --timeout") in lines, result.output
    assert (f"error: {path}: robustness: extraction failed: {path}:cell 6 [setup]: did not finish within 3 s "
            "(a loop that never ends? a slow download?); give it longer with --timeout") in lines, result.output


def test_scratch_copy_holds_the_folder_without_hidden_folders(tmp_path):
    from mlsm_nb.validate.pipeline import scratch_copy

    path = authored(tmp_path / "m.ipynb", GOOD_CELLS)
    (tmp_path / "weights.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a\n")
    for hidden in (".venv", ".git", ".ipynb_checkpoints"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "f").write_text("")
    with scratch_copy(path) as copy:
        assert copy.name == "m.ipynb" and copy.parent != tmp_path
        assert sorted(p.name for p in copy.parent.iterdir()) == ["data", "m.ipynb", "weights.json"]
        (copy.parent / "new.txt").write_text("")
    assert not (tmp_path / "new.txt").exists()


# Mistakes that once passed validate and then failed records in `mlsm-nb run` (issue 34): each now fails
# validate at the check named, and a run of the notebook shows the records validate stood for.
TRAIN_MODEL = "from statistics import mean\nmodel = {'weight': mean([1, 3])}"
RUN_MISTAKES = {
    "nan_when_zero": ([*GOOD_CELLS[:4], ("score", "def score(data, results):\n"
                                                  "    return {'score': FACTOR * data['x'] / data['x'] "
                                                  "if data['x'] else float('nan')}"), GOOD_CELLS[5]],
                      "robustness", "bad_output: score returned a number JSON cannot hold: output['score'] is nan "
                                    "on input {'x': 0, 'label': 'example'}"),
    "inf_when_large": ([*GOOD_CELLS[:4], ("score", "def score(data, results):\n"
                                                   "    return {'score': float('inf') if data['x'] > 5 else "
                                                   "data['x'] * FACTOR, 'n': len(data['label'])}"), GOOD_CELLS[5]],
                       "robustness", "bad_output: score returned a number JSON cannot hold: output['score'] is inf "
                                     "on input {'x': 10, 'label': 'example'}"),
    "decimal_output": ([*GOOD_CELLS[:2], ("setup", "from decimal import Decimal\nFACTOR = 2"),
                        GOOD_CELLS[3], ("score", "def score(data, results):\n"
                                                 "    return {'score': Decimal(data['x'] * FACTOR), "
                                                 "'n': len(data['label'])}"), GOOD_CELLS[5]],
                       "robustness", "bad_output: score returned a value JSON cannot hold: Type is not JSON "
                                     "serializable: decimal.Decimal on input {'x': 10, 'label': 'example'}"),
    "score_uses_training_model": ([*GOOD_CELLS[:4], (None, TRAIN_MODEL),
                                   ("score", "def score(data, results):\n    return {'score': data['x'] * "
                                             "model['weight'] * FACTOR, 'n': len(data['label'])}"), GOOD_CELLS[5]],
                                  "lint", "{path}:cell 12 [score]: line 2: `model` is defined only in untagged "
                                          "cell 10 (`from statistics import mean`); production runs only the "
                                          "tagged cells: define it in a tagged cell, or save it beside the "
                                          "notebook and load it in `setup`"),
    "misspelt_name": ([*GOOD_CELLS[:4], ("score", "def score(data, results):\n    return {'score': data['x'] * "
                                                  "FACTR, 'n': len(data['label'])}"), GOOD_CELLS[5]],
                      "lint", "{path}:cell 10 [score]: line 2: `FACTR` is not defined in any cell (did you mean "
                              "`FACTOR`?); production runs only the tagged cells: define it in a tagged cell, or "
                              "save it beside the notebook and load it in `setup`"),
}


def _run_errors(tmp_path, path: Path, records: Path) -> list[dict]:
    """The error entries of an in-process run of one notebook over `records`."""
    from mlsm_nb import read_results

    out = tmp_path / f"runs-{path.stem}"
    subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", str(path), "--records", str(records), "--out",
                    str(out), "--run-id", "r", "--engine", "inprocess"], capture_output=True, text=True)
    return [e for doc in read_results(out / "r") for versions in doc["results"].values() for e in versions.values()
            if "_error" in e]


@pytest.mark.slow
def test_what_validate_fails_is_what_a_run_would_fail(tmp_path):
    from conftest import write_records

    records = write_records(tmp_path / "records.jsonl", 12)  # x = 0 .. 11
    folder = tmp_path / "models"
    paths = {name: authored(folder / f"{name}.ipynb", cells) for name, (cells, _, _) in RUN_MISTAKES.items()}
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "validate", str(folder), "--timeout", "60"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    for name, (_, check, message) in RUN_MISTAKES.items():
        path = paths[name]
        expected = message.replace("{path}", str(path))
        assert f"error: {path}: {check}: {expected}" in done.stderr.splitlines(), (name, done.stderr)
        assert _run_errors(tmp_path, path, records), name  # a run fails records for the same reason


@pytest.mark.slow
def test_a_score_that_is_a_string_is_a_warning_in_validate(tmp_path):
    cells = [*GOOD_CELLS[:4], ("score", "def score(data, results):\n    return {'score': 'high' if data['x'] > 3 "
                                        "else data['x'] * FACTOR, 'n': len(data['label'])}"), GOOD_CELLS[5]]
    path = authored(tmp_path / "string_score.ipynb", cells)
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "validate", str(path), "--timeout", "60"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith("  warn robustness") and line.endswith(
        "warning: `score` is 'high' (str), not a number: runs store it, but run counts, summaries and reports leave "
        "it out; return a float (on input {'x': 10, 'label': 'example'})") for line in done.stdout.splitlines())
    assert done.stdout.splitlines()[-1] == "1 notebook(s), 5 checks, 0 failed, 1 warning(s)"


@pytest.mark.slow
def test_notebooks_that_validate_fail_no_record_of_a_sample_run(tmp_path):
    """The example notebooks and fresh templates pass validate (test_validate.py); a run of them over the
    sample records made from their fields fails no record."""
    from conftest import NOTEBOOKS

    folder = tmp_path / "notebooks"
    for args in (["new", "model", "my_model", "--dir", str(folder)],
                 ["new", "summary", "my_summary", "--dir", str(folder), "--models", "my_model:0.1.0"]):
        assert subprocess.run([sys.executable, "-m", "mlsm_nb.cli", *args], capture_output=True).returncode == 0
    for source in (NOTEBOOKS, folder):
        records = tmp_path / f"{source.name}-sample.jsonl"
        subprocess.run([sys.executable, "-m", "mlsm_nb.validate.samples", "200", str(source), "--out",
                        str(records)], check=True)
        out = tmp_path / f"runs-{source.parent.name}"
        done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", str(source), "--records", str(records),
                               "--out", str(out), "--run-id", "r", "--engine", "inprocess"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        from mlsm_nb import read_results

        entries = [e for doc in read_results(out / "r") for v in doc["results"].values() for e in v.values()]
        assert len(entries) >= 400 and not [e for e in entries if "_error" in e], source
