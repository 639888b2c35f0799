import json
import random

import pytest

from conftest import GOOD_CELLS, replace_cell
from mlsm_nb.report.data import build_run_report, compare_runs, psi, score_stats
from mlsm_nb.report.site import write_report
from mlsm_nb.run.orchestrate import run_notebooks

EVIL_ID = "<script>window.__pwned = 1</script>"


def write_records(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_rows(n, seed=0, shift=0):
    rng = random.Random(seed)
    rows = [{"id": f"r{i}", "data": {"x": rng.randint(0, 20) + shift, "label": "ab"}} for i in range(n)]
    rows.append({"id": EVIL_ID, "data": {"x": "not a number", "label": "<b>bold</b>"}})
    rows.append({"id": "r0", "data": {"x": 1, "label": ""}})  # duplicate id: rejected
    return rows


@pytest.fixture
def two_models(make_notebook):
    second = replace_cell(GOOD_CELLS, "version", 'name = "pick"\nversion = "1"\nstatus = "draft"')
    second = [("models", 'models = [{"name": "tiny", "version": "1.0"}]') if tag == "fields" else (tag, src, *rest)
              for tag, src, *rest in second if tag != "examples"]
    second = replace_cell(second, "score", (
        "def score(data, results):\n    s = results['tiny']['1.0']['score']\n"
        "    return {'score': s / 40, 'champion': 'tiny@1.0' if s > 10 else 'none'}"))
    return [make_notebook("tiny.ipynb"), make_notebook("pick.ipynb", second)]


def test_report_data_counts_errors_categories(tmp_path, two_models):
    records = write_records(tmp_path / "in.jsonl", tiny_rows(30))
    run_notebooks(two_models, records, out=tmp_path, run_id="a", engine="inprocess", batch_size=10)
    report = build_run_report(tmp_path / "a")
    tiny, pick = report.models["tiny@1.0"], report.models["pick@1"]
    assert tiny.records == 31 and len(tiny.scores) == 30
    assert tiny.errors == {"bad_type": 1} and tiny.error_examples[0]["id"] == EVIL_ID
    assert pick.errors == {"missing_dependency": 1}
    assert sum(pick.categories["champion"].values()) == 30
    assert report.rejected_count == 1 and "duplicate id" in report.rejected[0]["reason"]
    stats = tiny.stats()
    assert stats["count"] == 30 and stats["min"] <= stats["p50"] <= stats["max"]


def test_psi_is_zero_for_the_same_scores_and_flags_a_shift():
    rng = random.Random(1)
    base = [rng.random() for _ in range(5000)]
    same = [rng.random() for _ in range(5000)]
    shifted = [min(1.0, v + 0.3) for v in same]
    assert psi(base, same) < 0.02
    assert psi(base, shifted) > 0.5
    assert psi([], same) is None
    assert score_stats([1.0, 2.0, 3.0])["p50"] == 2.0


def test_compare_flags_drift(tmp_path, two_models):
    a = write_records(tmp_path / "a.jsonl", tiny_rows(300, seed=1))
    b = write_records(tmp_path / "b.jsonl", tiny_rows(300, seed=2, shift=15))
    run_notebooks(two_models, a, out=tmp_path, run_id="a", engine="inprocess")
    run_notebooks(two_models, b, out=tmp_path, run_id="b", engine="inprocess")
    rows = {r["model"]: r for r in compare_runs(build_run_report(tmp_path / "a"), build_run_report(tmp_path / "b"))}
    assert rows["tiny@1.0"]["drift"] and rows["tiny@1.0"]["psi"] > 0.2
    assert rows["tiny@1.0"]["other"]["mean"] > rows["tiny@1.0"]["base"]["mean"]
    index = write_report(tmp_path / "b", compare=tmp_path / "a")
    page = index.read_text()
    assert 'class="drift"' in page and "Compared with run" in page


def test_every_value_is_escaped(tmp_path, two_models):
    records = write_records(tmp_path / "in.jsonl", tiny_rows(5))
    run_notebooks(two_models, records, out=tmp_path, run_id="a", engine="inprocess")
    write_report(tmp_path / "a")
    site = "".join(p.read_text() for p in (tmp_path / "a" / "report").rglob("*.html"))
    assert EVIL_ID not in site
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in site


@pytest.mark.slow
def test_report_in_a_real_browser(tmp_path, two_models):
    from playwright.sync_api import sync_playwright

    broken = replace_cell(GOOD_CELLS, "version", 'name = "broken"\nversion = "1"\nstatus = "draft"')
    broken = replace_cell(broken, "setup", "raise RuntimeError('weights file is missing')")
    notebooks = [*two_models, two_models[0].parent / "broken.ipynb"]
    from conftest import write_notebook

    write_notebook(notebooks[-1], broken)
    records = write_records(tmp_path / "in.jsonl", tiny_rows(40))
    manifest = run_notebooks(notebooks, records, out=tmp_path, run_id="web", batch_size=20)
    assert manifest["status"] == "failed"
    index = write_report(tmp_path / "web")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(index.as_uri())
        assert page.text_content("#count-records") == "41"
        assert page.text_content("#count-rejected") == "1"
        assert page.text_content("#count-failed") == "3"  # broken@1 in each of 3 batches
        assert page.text_content("#run-status") == "failed"

        page.click("#models >> text=tiny")
        assert page.text_content("#model-records") == "41"
        assert page.eval_on_selector("#score-plot", "img => img.complete && img.naturalWidth") > 0
        assert EVIL_ID in page.text_content("#error-examples")
        assert page.evaluate("typeof window.__pwned") == "undefined"

        page.go_back()
        page.click("#executions >> tr:has-text('tiny@1.0') >> a")
        assert "tiny 1.0: 20 records" in page.text_content("body")
        page.go_back()
        page.click("#executions >> tr:has-text('broken@1') >> a")
        banner = page.text_content("body")
        assert "This execution failed" in banner and "weights file is missing" in banner
        assert banner.index("This execution failed") < banner.index("RuntimeError")
        page.go_back()
        page.screenshot(path=str(tmp_path / "run-page.png"))
        browser.close()
    assert errors == []
