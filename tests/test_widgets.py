import ipywidgets as w
import pytest

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell
from mlsm_nb import Model, check, load_notebook, tryout
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.validate.pipeline import validate_notebook
from mlsm_nb.widgets import TryOut

FIELDS = {
    "size": {"type": "int", "min": 0, "max": 5000},
    "ratio": "float",
    "title": "str",
    "trial": "bool",
    "industry": {"type": "str", "allowed": ["software", "retail"]},
    "revenue": {"type": "float", "required": False, "nullable": True},
}


def score(data, results):
    return {"score": data["size"] / 5000 + (0.1 if data["trial"] else 0.0)}


@pytest.fixture
def panel():
    return TryOut(Model("demo", FIELDS, "1.0", score, "active"))


def test_one_widget_per_field_of_the_right_kind(panel):
    by_name = panel.fields
    assert list(by_name) == list(FIELDS)
    assert isinstance(by_name["size"].value, w.IntText)  # not bounded: the box never clamps
    assert "min 0; max 5000" in by_name["size"].box.children[-1].value
    assert isinstance(by_name["ratio"].value, w.FloatText)
    assert isinstance(by_name["title"].value, w.Text)
    assert isinstance(by_name["trial"].value, w.Checkbox)
    assert isinstance(by_name["industry"].value, w.Combobox)
    assert list(by_name["industry"].value.options) == ["software", "retail"]
    assert by_name["revenue"].missing is not None and by_name["revenue"].null is not None
    assert by_name["size"].missing is None


def test_out_of_range_and_not_allowed_values_reach_the_model(panel):
    fields = panel.fields
    fields["size"].value.value = 9000
    panel.score_button.click()
    assert "_error_kind: bad_value" in panel.output.value
    assert "9000" in panel.output.value and "5000" in panel.output.value
    fields["size"].value.value = 10
    fields["industry"].value.value = "mining"
    panel.score_button.click()
    assert "_error_kind: bad_value" in panel.output.value and "mining" in panel.output.value


def test_a_new_input_clears_the_old_result(panel):
    panel.score_button.click()
    assert "mlsm-ok" in panel.output.value
    panel.fields["size"].value.value = 7
    assert "mlsm-ok" not in panel.output.value and "inputs changed: press Score" in panel.output.value
    panel.score_button.click()
    panel.random_button.click()
    assert "mlsm-ok" not in panel.output.value and "press Score" in panel.output.value


def test_score_button_shows_the_result(panel):
    fields = panel.fields
    fields["size"].value.value = 2500
    fields["trial"].value.value = True
    fields["revenue"].missing.value = True
    panel.score_button.click()
    assert "0.6" in panel.output.value and "mlsm-ok" in panel.output.value
    assert panel.data().get("revenue", "absent") == "absent"


def test_score_button_shows_the_error_and_its_kind(panel):
    fields = panel.fields
    panel.model = Model("demo", {**FIELDS, "title": {"type": "str", "allowed": ["CTO"]}}, "1.0", score)
    fields["title"].value.value = "<b>intern</b>"
    panel.score_button.click()
    assert "_error_kind: bad_value" in panel.output.value
    assert "&lt;b&gt;intern&lt;/b&gt;" in panel.output.value  # escaped


def test_the_form_shows_the_reasons_as_a_list_and_a_bad_one_as_a_run_would(panel):
    def why(data, results):
        parts = {"size": data["size"] / 5000, "trial": 0.1 if data["trial"] else 0.0}
        reasons = [{"field": k, "contribution": v} for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v]
        return {"score": sum(parts.values()), "_reasons": reasons if data["title"] != "bad" else "size"}

    panel.model = Model("demo", FIELDS, "1.0", why)
    panel.fields["size"].value.value = 2500
    panel.fields["trial"].value.value = True
    panel.score_button.click()
    shown = panel.output.value
    assert "<ol class='mlsm-reasons'" in shown
    assert shown.index("<li>size +0.5</li>") < shown.index("<li>trial +0.1</li>")
    panel.fields["size"].value.value = 0
    panel.fields["trial"].value.value = False
    panel.score_button.click()
    assert "none: no input moved the score" in panel.output.value
    panel.fields["title"].value.value = "bad"
    panel.score_button.click()
    assert "_error_kind: bad_output" in panel.output.value and "_reasons is str, expected a list" in panel.output.value


def test_random_lead_fills_legal_values(panel):
    for _ in range(5):
        panel.random_button.click()
        assert panel.model.check_inputs(panel.data()) is None
        assert "_error" not in panel.score()


def test_summary_panel_asks_each_shared_field_once():
    panel = tryout(NOTEBOOKS / "champion.ipynb")
    assert [m.name for m in panel.models] == ["lead_rules", "lead_lr", "champion"]
    every = [spec.name for m in panel.models for spec in m.specs]
    assert every.count("company_size") == 2  # read by both models ...
    assert list(panel.fields) == list(dict.fromkeys(every))  # ... asked once
    hint = panel.fields["company_size"].box.children[-1].value
    assert "read by lead_rules, lead_lr" in hint
    panel.random_button.click()
    entry = panel.score()
    assert entry["champion"] in ("lead_rules@1.0.0", "lead_lr@1.0.0")


def test_tryout_of_a_path_and_without_a_kernel():
    assert tryout(NOTEBOOKS / "lead_rules.ipynb").model.key == ("lead_rules", "1.0.0")
    with pytest.raises(ConfigError, match="run the notebook's cells first"):
        tryout()


@pytest.mark.slow
@pytest.mark.parametrize("cells", [GOOD_CELLS, replace_cell(GOOD_CELLS, "examples",
                         'examples = [{"data": {"x": 1, "label": ""}, "expected": {"score": 3, "n": 0}}]')],
                         ids=["good", "bad_example"])
def test_check_gives_the_same_verdict_as_validate(make_notebook, cells):
    path = make_notebook(cells=cells)
    report = check(path)
    validated = {r.check: r.status for r in validate_notebook(path)}
    checked = {r.check: r.status for r in report.results}
    assert checked["nbval"] == "skipped"
    assert {k: v for k, v in checked.items() if k != "nbval"} == {k: v for k, v in validated.items() if k != "nbval"}
    assert report.passed == all(v != "failed" for v in validated.values())
    html = report._repr_html_()
    assert ("would fail in Jenkins" in html) == (not report.passed)
    assert check(path, full=True).results[1].status == validated["nbval"]


def test_check_names_the_saved_version_and_warns_about_unsaved_edits(make_notebook):
    import os

    from IPython.core.interactiveshell import InteractiveShell

    from mlsm_nb.widgets import CheckReport, saved_at, unsaved_cells

    path = make_notebook()
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert saved_at(path) == "2023-11-14 22:13:20 UTC"
    report = CheckReport(path, [], saved_at(path), ["cell 5 [score]"])
    assert "(the version saved at 2023-11-14 22:13:20 UTC)" in report._repr_html_()
    assert ("this kernel has not run the saved version of cell 5 [score]: the checks are of the saved file; "
            "re-run cell 5 [score] (Shift+Enter; save too if you changed it since), then run check() again"
            ) in report._repr_html_()
    shell = InteractiveShell.instance()
    try:
        for _, source, *_ in GOOD_CELLS:
            shell.run_cell(source, store_history=True)
        assert unsaved_cells(path) == []
        shell.run_cell("def score(data, results):\n    return {'score': 0}", store_history=True)  # not saved
        replaced = [c for c in GOOD_CELLS if c[0] != "score"]
        make_notebook(cells=replaced + [("score", "def score(data, results):\n    return {'score': 1}")])
        assert unsaved_cells(path) == ["cell 6 [score]"]
    finally:
        InteractiveShell.clear_instance()


def test_the_notebook_is_found_in_vs_code_too(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from mlsm_nb.widgets import notebook_path

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = InteractiveShell.instance()
    try:
        shell.user_ns["__vsc_ipynb_file__"] = str(NOTEBOOKS / "lead_rules.ipynb")  # what VS Code's Jupyter sets
        assert notebook_path() == NOTEBOOKS / "lead_rules.ipynb"
    finally:
        InteractiveShell.clear_instance()


def test_check_without_a_session_says_what_to_do(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(ConfigError, match="pass its path"):
        check()
    model = load_notebook(NOTEBOOKS / "lead_rules.ipynb")  # the notebook itself still loads
    assert (type(model).__name__, model.name, model.version) == ("Model", "lead_rules", "1.0.0")


def test_in_a_kernel_with_no_notebook_session_check_and_tryout_say_one_line_and_do_nothing(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from mlsm_nb.widgets import ForJupyterLab

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = InteractiveShell.instance()
    try:
        for _, source, *_ in GOOD_CELLS:
            shell.run_cell(source)
        checked, tried = check(), tryout()
        assert isinstance(checked, ForJupyterLab) and isinstance(tried, ForJupyterLab)
        assert repr(checked) == ("check() is for JupyterLab: this kernel runs no notebook session (papermill, "
                                 "nbconvert), so it does nothing here; `mlsm-nb validate` checks notebooks headless")
        assert repr(tried) == ("tryout() is for JupyterLab: this kernel runs no notebook session (papermill, "
                               "nbconvert), so it does nothing here")
        assert tryout(NOTEBOOKS / "lead_rules.ipynb").model.name == "lead_rules"  # a path still works
    finally:
        InteractiveShell.clear_instance()


def test_the_form_is_one_line_where_widgets_do_not_show():
    bundle = tryout(NOTEBOOKS / "lead_rules.ipynb")._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == "tryout(): a form to score lead_rules 1.0.0 by hand; it shows in JupyterLab"
