import shutil

import pytest
from click.testing import CliRunner
from junitparser import Failure, JUnitXml, Skipped

from conftest import GOOD_CELLS, NOTEBOOKS, TEMPLATES, replace_cell
from mlsm_nb.cli import main

pytestmark = pytest.mark.slow


def validate(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def cases_by_key(xml_path):
    xml = JUnitXml.fromfile(str(xml_path))
    return {(case.classname, case.name): case for suite in xml for case in suite}


def test_examples_and_templates_validate_and_junit_parses(tmp_path):
    report = tmp_path / "build" / "validate.xml"
    result = validate(NOTEBOOKS, TEMPLATES, "--junit", report)
    assert result.exit_code == 0, result.output
    assert "6 notebook(s), 30 checks, 0 failed" in result.output
    cases = cases_by_key(report)
    assert len(cases) == 30
    assert {name for _, name in cases} == {"lint", "nbval", "robustness", "examples", "parity"}
    assert all(case.is_passed for case in cases.values())


def lead_cells(score_source, examples_source=None):
    cells = [
        ("version", 'name = "fragile"\nversion = "1"\nstatus = "draft"'),
        ("fields", 'fields = {"company_size": {"type": "int", "min": 0}, "job_title": "str"}'),
        ("score", score_source),
    ]
    if examples_source:
        cells.append(("examples", examples_source))
    return cells


BAD = {
    "stale_output": (GOOD_CELLS + [(None, "print(1 + 1)", "3\n")], "nbval", "untagged cell 7 (`print(1 + 1)`)"),
    "zero_company_size": (lead_cells("def score(data, results):\n    return {'score': 100 / data['company_size']}"),
                          "robustness",
                          "score_raised: ZeroDivisionError at cell 3 [score], line 2: division by zero on input"),
    "empty_job_title": (lead_cells("def score(data, results):\n"
                                   "    return {'score': float(data['job_title'][0] == 'V')}"),
                        "robustness", "IndexError at cell 3 [score], line 2: string index out of range on input "
                        "{'company_size': 10, 'job_title': ''}"),
    "wrong_example": (replace_cell(GOOD_CELLS, "examples",
                                   'examples = [{"data": {"x": 2, "label": "ab"}, "expected": {"score": 5, "n": 2}}]'),
                      "examples", "example 0: expected {'score': 5}, got {'score': 4}"),
    "frame_disagrees": (replace_cell(GOOD_CELLS, "score", (
        "def score(data, results):\n    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}\n\n"
        "def score_frame(frame):\n    import pandas as pd\n"
        "    return pd.DataFrame({'score': frame['x'] * 3, 'n': frame['label'].str.len()}, index=frame.index)")),
        "parity", "score_frame gives"),
    "missing_model_version": ([("version", 'name = "pick"\nversion = "1"\nstatus = "draft"'),
                               ("models", 'models = [{"name": "tiny", "version": "9.9"}]'),
                               ("score", "def score(data, results):\n    return {}")],
                              "robustness",
                              "cell 2 [models]: summary names tiny 9.9, not found among the notebooks given "
                              "or in its folder (there: tiny 1.0)"),
    "loops_forever": (GOOD_CELLS + [(None, "while True:\n    pass")], "nbval", "untagged cell 7 (`while True:`)"),
}


def test_each_bad_notebook_fails_its_check_and_the_others_still_validate(tmp_path, make_notebook):
    paths = [make_notebook(f"{name}.ipynb", cells) for name, (cells, _, _) in BAD.items()]
    shutil.copy(NOTEBOOKS / "lead_rules.ipynb", tmp_path / "lead_rules.ipynb")
    report = tmp_path / "v.xml"
    result = validate(tmp_path, "--junit", report, "--timeout", 5)
    assert result.exit_code == 1
    cases = cases_by_key(report)
    for path, (name, (_, check, words)) in zip(paths, BAD.items(), strict=True):
        case = cases[str(path), check]
        failures = [r for r in case.result if isinstance(r, Failure)]
        assert failures, f"{name}: {check} did not fail"
        assert words in failures[0].message, f"{name}: {failures[0].message}"
        assert f"error: {path}: {check}: " in result.output
    good = str(tmp_path / "lead_rules.ipynb")
    assert all(cases[good, check].is_passed for check in ("lint", "nbval", "robustness", "examples", "parity"))


def test_lint_failure_skips_the_other_checks(tmp_path, make_notebook):
    path = make_notebook("bad.ipynb", replace_cell(GOOD_CELLS, "fields", "fields = dict(x=int)"))
    report = tmp_path / "v.xml"
    result = validate(path, "--junit", report)
    assert result.exit_code == 1
    cases = cases_by_key(report)
    assert any(isinstance(r, Failure) for r in cases[str(path), "lint"].result)
    assert all(isinstance(cases[str(path), c].result[0], Skipped) for c in ("nbval", "robustness", "parity"))


def test_lax_mode_ignores_output_differences(tmp_path, make_notebook):
    path = make_notebook("stale.ipynb", GOOD_CELLS + [(None, "print(1 + 1)", "3\n")])
    assert validate(path, "--lax").exit_code == 0


SLEEPS_ON_ZERO = lead_cells("import time\n\ndef score(data, results):\n    if data['company_size'] == 0:\n"
                            "        time.sleep(120)\n    return {'score': 1.0}")


def test_an_input_over_the_record_timeout_fails_robustness_naming_the_input(make_notebook):
    result = validate(make_notebook("dozy.ipynb", SLEEPS_ON_ZERO), "--record-timeout", 1)
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("  FAIL robustness")]
    assert failed and failed[0].split("s  ", 2)[2] == ("timeout: score ran over the per-record time limit of 1 s "
                                                       "(--record-timeout) on input {'company_size': 0, "
                                                       "'job_title': 'example'}")
    assert "  ok   nbval" in result.output  # the slow input is the model checks', not the notebook's


def test_the_model_checks_time_limit_names_the_timeout_given(make_notebook):
    result = validate(make_notebook("dozy.ipynb", SLEEPS_ON_ZERO), "--timeout", 1, "--record-timeout", 0)
    assert result.exit_code == 1
    assert ("robustness: the model checks did not finish within 33 s, the time --timeout 1 allows them "
            "(3 x 1 s + 30 s)") in result.output
