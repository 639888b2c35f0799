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
    """A notebook as people write one: a markdown heading before each code cell (code cell k is cell 2k + 1)."""
    return write_notebook(path, cells, headings=True)


def retag(cells, old, new):
    return [(new if tag == old else tag, *rest) for tag, *rest in cells]


def with_version(artifacts):
    return [("version", f'name = "tiny"\nversion = "1.0"\nstatus = "draft"\nartifacts = {artifacts!r}'),
            *GOOD_CELLS[1:]]


# name -> (cells, check that fails, the exact message; {path} and {folder} filled in)
MISTAKES = {
    "typo_examples": (retag(GOOD_CELLS, "examples", "exmaples"), "lint",
                      "{path}:cell 11 [exmaples]: tag `exmaples` is not a contract tag; did you mean `examples`?"),
    "typo_setup": (retag(GOOD_CELLS, "setup", "setpu"), "lint",
                   "{path}:cell 5 [setpu]: tag `setpu` is not a contract tag; did you mean `setup`?"),
    "typo_score": (retag(GOOD_CELLS, "score", "scroe"), "lint",
                   "{path}:cell 9 [scroe]: tag `scroe` is not a contract tag; did you mean `score`?; "
                   "{path}: no cell tagged `score`; a model notebook needs exactly one"),
    "artifact_not_saved": ([*with_version(["weights.json"])[:2], (None, TRAIN), ("setup", LOAD),
                            *GOOD_CELLS[4:]], "lint",
                           "{path}:cell 1 [version]: artifact `weights.json` is listed in `artifacts` but "
                           "{folder}/weights.json does not exist; run the cell that saves it, then commit the file "
                           "beside the notebook; the notebook's untagged cells create weights.json when run "
                           "(validate ran them in a scratch copy; your folder is unchanged): run them, then commit "
                           "the file(s) beside the notebook"),
    "setup_raises": ([*GOOD_CELLS[:2], ("setup", "FACTOR = 2\nLOG = math.log(FACTOR)"), *GOOD_CELLS[3:]], "nbval",
                     "cell 5 [setup] raised at line 2: NameError: name 'math' is not defined"),
    "stale_output": ([*GOOD_CELLS, (None, "print(1 + 1)", "3\n")], "nbval",
                     "cell 13 (untagged): the output differs from the saved one: expected '3', got '2'; re-run "
                     "all cells and save, or mark an unstable output with # NBVAL_IGNORE_OUTPUT"),
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
    assert (f"error: {path}: nbval: cell 5 [setup] did not finish within 3 s; make it faster or give it longer "
            "with --timeout") in lines, result.output
    assert (f"error: {path}: robustness: extraction failed: {path}:cell 5 [setup]: did not finish within 3 s "
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
