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
    (_, inputs), = panel.inputs
    by_name = {fi.spec.name: fi for fi in inputs}
    assert list(by_name) == list(FIELDS)
    assert isinstance(by_name["size"].value, w.BoundedIntText)
    assert (by_name["size"].value.min, by_name["size"].value.max) == (0, 5000)
    assert isinstance(by_name["ratio"].value, w.FloatText)
    assert isinstance(by_name["title"].value, w.Text)
    assert isinstance(by_name["trial"].value, w.Checkbox)
    assert isinstance(by_name["industry"].value, w.Dropdown)
    assert list(by_name["industry"].value.options) == ["software", "retail"]
    assert by_name["revenue"].missing is not None and by_name["revenue"].null is not None
    assert by_name["size"].missing is None


def test_score_button_shows_the_result(panel):
    fields = {fi.spec.name: fi for fi in panel.inputs[0][1]}
    fields["size"].value.value = 2500
    fields["trial"].value.value = True
    fields["revenue"].missing.value = True
    panel.score_button.click()
    assert "0.6" in panel.output.value and "mlsm-ok" in panel.output.value
    assert panel.data().get("revenue", "absent") == "absent"


def test_score_button_shows_the_error_and_its_kind(panel):
    fields = {fi.spec.name: fi for fi in panel.inputs[0][1]}
    panel.model = Model("demo", {**FIELDS, "title": {"type": "str", "allowed": ["CTO"]}}, "1.0", score)
    fields["title"].value.value = "<b>intern</b>"
    panel.score_button.click()
    assert "_error_kind: bad_value" in panel.output.value
    assert "&lt;b&gt;intern&lt;/b&gt;" in panel.output.value  # escaped


def test_random_lead_fills_legal_values(panel):
    for _ in range(5):
        panel.random_button.click()
        assert panel.model.check_inputs(panel.data()) is None
        assert "_error" not in panel.score()


def test_summary_panel_has_the_inputs_of_the_models_it_needs():
    panel = tryout(NOTEBOOKS / "champion.ipynb")
    names = [m.name for m, _ in panel.inputs]
    assert names == ["lead_rules", "lead_lr", "champion"]
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


def test_check_without_a_session_says_what_to_do(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(ConfigError, match="pass its path"):
        check()
    assert load_notebook(NOTEBOOKS / "lead_rules.ipynb")
