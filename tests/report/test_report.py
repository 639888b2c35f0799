import json
import random
import shutil

import nbformat
import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell
from mlsm_nb.cli import main
from mlsm_nb.core.stats import psi, score_stats
from mlsm_nb.leads import save_leads
from mlsm_nb.report.data import build_run_report, compare_runs
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


def test_the_report_and_the_executed_notebook_give_one_std_pandas_std():
    from mlsm_nb.run.overview import describe

    assert score_stats([1.0, 3.0])["std"] == pytest.approx(2 ** 0.5) and describe([1.0, 3.0])["std"] == 1.4142
    assert score_stats([1.0])["std"] is None  # undefined for one score, as pandas' NaN


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


def _page_text(path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(), "html.parser")


def test_report_tells_the_truth_about_errors(tmp_path, two_models):
    records = write_records(tmp_path / "in.jsonl", tiny_rows(30))
    manifest = run_notebooks(two_models, records, out=tmp_path, run_id="a", engine="inprocess", batch_size=10)
    # Every execution ran; one record failed in two models (manifests before run verdicts say "succeeded").
    assert manifest.status in ("succeeded", "succeeded with errors")
    index = write_report(tmp_path / "a")
    page = _page_text(index)
    assert page.select_one("#run-status").text == "succeeded with errors"
    assert page.select_one("#count-records").text == "31"
    assert page.select_one("#count-scored").text == "30" and page.select_one("#count-errors").text == "1"
    verdict = page.select_one("#verdict").text
    assert "1 of 31 records have an error" in verdict and "1 bad_type" in verdict and "1 missing_dependency" in verdict
    pick = _page_text(tmp_path / "a" / "report" / "models" / "pick_1.html")
    rows = [[td.text for td in tr.select("td")] for tr in pick.select(".categories tr")[1:]]
    assert rows[-1][:2] == ["error", "1"]
    assert sum(int(n) for _, n, _ in rows) == 31
    assert abs(sum(float(share.rstrip(" %")) for _, _, share in rows) - 100) < 0.2
    for html in (tmp_path / "a" / "report").rglob("*.html"):
        assert str(tmp_path) not in html.read_text(), html


def test_a_model_failing_every_record_scores_nothing(tmp_path, make_notebook):
    failing = replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    raise ValueError('no')")
    records = write_records(tmp_path / "in.jsonl", tiny_rows(20))
    run_notebooks([make_notebook("tiny.ipynb", failing)], records, out=tmp_path, run_id="a", engine="inprocess")
    page = _page_text(write_report(tmp_path / "a"))
    assert page.select_one("#count-scored").text == "0" and page.select_one("#count-errors").text == "21"
    assert page.select_one("#run-status").text != "succeeded"
    assert page.select_one("#run-status")["class"] != ["ok"]


def test_an_interrupted_run_shows_the_batches_it_got_to(tmp_path, two_models):
    records = write_records(tmp_path / "in.jsonl", tiny_rows(30))
    run_notebooks(two_models, records, out=tmp_path, run_id="a", engine="inprocess", batch_size=10)
    manifest_path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert _page_text(write_report(tmp_path / "a")).select_one("#count-batches").text == "4"
    # As a run interrupted while reading its input leaves it: no input counts, the batches it got to.
    manifest["input"] = {k: v for k, v in manifest["input"].items() if k in ("path", "sha256")}
    manifest["status"] = "interrupted"
    manifest["batch_states"] = {"0": "stored", "1": "stored"}
    for batches in manifest["executions"].values():
        for batch in ("2", "3"):
            batches.pop(batch, None)
    manifest_path.write_text(json.dumps(manifest))
    card = _page_text(write_report(tmp_path / "a")).select_one("#count-batches").parent
    assert card.select_one("#count-batches").text == "2"
    assert "input not read to the end" in card.text


def test_verdict_names_the_models_over_the_threshold(tmp_path, two_models):
    records = write_records(tmp_path / "in.jsonl", tiny_rows(10))
    run_notebooks(two_models, records, out=tmp_path, run_id="a", engine="inprocess")
    manifest_path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(status="failed", verdict={"max_error_rate": 0.05, "models_over": ["tiny@1.0"],
                                              "rejected_over": True, "no_records": False})
    manifest_path.write_text(json.dumps(manifest))
    page = _page_text(write_report(tmp_path / "a"))
    assert page.select_one("#run-status").text == "failed"
    verdict = page.select_one("#verdict")
    assert "over the error-rate threshold of 5 %" in verdict.text and "tiny@1.0 (1 of 11 records)" in verdict.text
    assert verdict.a["href"] == "models/tiny_1.0.html"
    assert "1 input lines were rejected, more than 5 %" in " ".join(page.select_one("#verdict-input").text.split())


def test_only_the_runners_svg_reaches_the_report_as_an_image_file(tmp_path):
    import nbformat

    from mlsm_nb.histogram import score_histogram
    from mlsm_nb.notebook.contract import RUNNER_TAG
    from mlsm_nb.report.notebook_html import render_notebook

    evil = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
    author = nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
        "display_data", data={"image/svg+xml": evil, "text/plain": "<a figure>"})])
    runner = nbformat.v4.new_code_cell("mlsm_overview.show()", metadata={"tags": [RUNNER_TAG]}, outputs=[
        nbformat.v4.new_output("display_data", data={"image/svg+xml": score_histogram([0.1, 0.5])},
                               metadata={"image/svg+xml": {"alt": "histogram of the batch's scores"}})])
    source = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[author, runner]), source)
    body = render_notebook(source, tmp_path / "site" / "page.html")
    files = list((tmp_path / "site" / "page_files").iterdir())
    assert len(files) == 1 and files[0].suffix == ".svg" and "alert" not in files[0].read_text()
    assert f'<img alt="histogram of the batch\'s scores" src="page_files/{files[0].name}"' in body
    assert "alert" not in body and "&lt;a figure&gt;" in body  # the author's figure falls back to its text


@pytest.mark.slow
def test_an_executions_page_shows_its_kernels_log_escaped(tmp_path, make_notebook):
    noisy = make_notebook("noisy.ipynb", replace_cell(GOOD_CELLS, "setup", (
        "import logging\n"
        "logging.getLogger('IPKernelApp').error('<script>window.__pwned = 1</script> from the kernel')\n"
        "FACTOR = 2")))
    records = write_records(tmp_path / "in.jsonl", [{"id": "r1", "data": {"x": 1, "label": "a"}}])
    manifest = run_notebooks([noisy], records, out=tmp_path, run_id="k")
    assert manifest.executions["tiny@1.0"][0].kernel_log == "executed/tiny@1.0/batch-00000.kernel.log"
    write_report(tmp_path / "k")
    page = _page_text(tmp_path / "k" / "report" / "executed" / "tiny_1.0" / "batch-00000.html")
    # the first line: a busy machine can make the kernel log more as it stops
    log = page.find(id="kernel-log").text
    assert log.splitlines()[0] == "[IPKernelApp] ERROR | <script>window.__pwned = 1</script> from the kernel"
    assert page.find("script") is None


def _here_first():
    """The environment for a command started in another folder: this checkout's mlsm_nb first."""
    import os

    from conftest import ROOT

    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _started(tmp_path, make_notebook):
    """`mlsm-nb run` started in its own session, once it has scored a batch: (process, command)."""
    import subprocess
    import sys
    import time

    slow = replace_cell(GOOD_CELLS, "score", "import time\n\ndef score(data, results):\n    time.sleep(0.002)\n"
                                             "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}")
    notebook = make_notebook("slow.ipynb", slow)
    records = write_records(tmp_path / "in.jsonl", [{"id": i, "data": {"x": i, "label": "a"}} for i in range(3000)])
    # relative paths, as Jenkins gives them: a report shows no absolute path of the machine (report.paths)
    command = [sys.executable, "-m", "mlsm_nb.cli", "run", notebook.name, "--records", records.name, "--out",
               "runs", "--run-id", "k", "--engine", "inprocess", "--batch-size", "100", "--workers", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=tmp_path, env=_here_first())
    deadline = time.time() + 60
    while not (tmp_path / "runs" / "k" / "results" / "batch-00000.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.05)
    resume = ("mlsm-nb run slow.ipynb --records in.jsonl --out runs --run-id k --resume --batch-size 100 "
              "--engine inprocess")
    return process, resume


def _reported(run_dir):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "report", "runs/k"], capture_output=True,
                          text=True, timeout=120, cwd=run_dir.parent.parent, env=_here_first())
    assert done.returncode == 0, done.stderr
    return _page_text(run_dir / "report" / "index.html")


@pytest.mark.parametrize("how", ["sigkill", "ctrl-c"])
def test_a_killed_run_is_stopped_not_running_and_its_report_says_how_to_finish_it(tmp_path, make_notebook, how):
    import os
    import signal

    process, resume = _started(tmp_path, make_notebook)
    if how == "sigkill":
        os.killpg(process.pid, signal.SIGKILL)  # the runner and its workers: no one left to say so
    else:
        process.send_signal(signal.SIGINT)
    process.wait(60)
    run_dir = tmp_path / "runs" / "k"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == (
        "running" if how == "sigkill" else "interrupted")
    page = _reported(run_dir)
    assert page.select_one("#run-status").text == ("stopped" if how == "sigkill" else "interrupted")
    assert page.select_one("#run-status")["class"] == ["failed"]
    assert page.select_one("#resume").text == f"Finish it with: {resume}"
    if how == "sigkill":
        assert "no process is running it" in page.select_one("#verdict-stopped").text


def test_a_running_run_is_reported_running_without_a_resume_command(tmp_path, make_notebook):
    import os
    import signal

    process, _ = _started(tmp_path, make_notebook)
    try:
        page = _reported(tmp_path / "runs" / "k")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
    assert page.select_one("#run-status").text == "running" and page.select_one("#resume") is None


def test_the_model_page_links_the_training_cells_as_the_author_saved_them(tmp_path, monkeypatch):
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.chdir(tmp_path)
    save_leads(tmp_path / "leads.jsonl", 30, seed=3)
    cli = CliRunner()
    result = cli.invoke(main, ["run", "notebooks", "--records", "leads.jsonl", "--out", "runs", "--run-id", "r",
                               "--engine", "inprocess", "--no-progress"])
    assert result.exit_code == 0, result.output
    notebook = tmp_path / "notebooks" / "lead_lr.ipynb"  # edited after the run: the report shows what the run saw
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[5].source = "# <script>window.__pwned = 1</script> retrained later"
    nbformat.write(nb, notebook)
    assert cli.invoke(main, ["report", "runs/r"]).exit_code == 0

    site = tmp_path / "runs" / "r" / "report"
    model = _page_text(site / "models" / "lead_lr_1.0.0.html")
    link = model.select_one("#training-link")
    assert link["href"] == "../notebooks/lead_lr_1.0.0.training.html"
    assert "2 code cells, as the author saved them" in model.select_one("#training").text
    page = _page_text(site / "notebooks" / "lead_lr_1.0.0.training.html")
    text = page.select_one(".notebook").text
    assert page.select_one("h1").text == "lead_lr 1.0.0 · training cells"
    assert "Newton-Raphson" in text and "trained on 5000 leads, conversion rate 0.358" in text  # cell 6, its output
    assert 'json.dump(coef, f, indent=2, sort_keys=True)' in text  # cell 7
    assert "retrained later" not in text
    marks = [" ".join(p.text.split()) for p in page.select(".celltag_mlsm-production-cell")]
    assert marks == [f"Cell {n} [{tag}]: a production cell, not shown here." for n, tag in
                     [(2, "version"), (3, "fields"), (4, "setup"), (9, "setup"), (10, "score"), (11, "examples")]]
    assert "def score(data, results)" not in text and "Train (workspace" in text  # the author's Markdown stays
    assert not page.select("script, textarea, [contenteditable]")  # read-only, nothing runs


@pytest.mark.slow
def test_the_model_page_shows_why_the_highest_scores_are_high_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    from mlsm_nb.files import read_jsonl

    save_leads(tmp_path / "leads.jsonl", 80, seed=9)
    run_notebooks([NOTEBOOKS], tmp_path / "leads.jsonl", out=tmp_path / "runs", run_id="w", engine="inprocess",
                  batch_size=40)
    write_report(tmp_path / "runs" / "w")
    documents = [d for path in sorted((tmp_path / "runs" / "w" / "results").iterdir()) for d in read_jsonl(path)]
    entries = [(d["id"], d["results"]["lead_lr"]["1.0.0"]) for d in documents]
    counted = {}
    for _, entry in entries:
        for reason in entry["_reasons"]:
            counted[reason["field"]] = counted.get(reason["field"], 0) + 1
    top_id, top = max(entries, key=lambda pair: pair[1]["score"])
    site = tmp_path / "runs" / "w" / "report" / "models"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto((site / "lead_lr_1.0.0.html").as_uri())
        rows = page.eval_on_selector_all("#reasons tr", "trs => trs.slice(1).map(tr => "
                                         "[...tr.cells].map(td => td.innerText))")
        assert {row[0]: int(row[1]) for row in rows} == counted  # every field given as a reason, how often
        assert [int(row[1]) for row in rows] == sorted(counted.values(), reverse=True)
        assert page.is_visible("#reasons") and page.is_visible("#reason-examples")
        first = page.eval_on_selector("#reason-examples tr:nth-child(2)", "tr => [...tr.cells].map(td => td.innerText)")
        words = ", ".join(f"{r['field']} {r['contribution']:+.3g}" for r in top["_reasons"])
        assert first == [top_id, f"{top['score']:.4f}", words]  # the highest score, and why
        assert page.locator("#reason-examples tr").count() == 6  # the five highest, under a header row
        page.goto((site / "lead_rules_1.0.0.html").as_uri())
        assert page.locator("#reasons").count() == 0  # a model that gives no reasons has no such section
        page.goto((site / "champion_1.0.0.html").as_uri())
        assert page.locator("#reasons tr").count() > 1  # the summary passed its winners' reasons on
        browser.close()


def test_reason_fields_are_escaped_on_the_model_page(tmp_path, make_notebook):
    score = ("def score(data, results):\n"
             "    why = [{'field': '<script>x()</script>', 'contribution': 1}]\n"
             "    return {'score': data['x'] * FACTOR, '_reasons': why}")
    notebook = make_notebook(cells=replace_cell(GOOD_CELLS, "score", score))
    records = write_records(tmp_path / "in.jsonl", [{"id": f"r{i}", "data": {"x": i, "label": ""}} for i in range(3)])
    run_notebooks([notebook], records, out=tmp_path, run_id="e", engine="inprocess")
    write_report(tmp_path / "e")
    page = _page_text(tmp_path / "e" / "report" / "models" / "tiny_1.0.html")
    assert not page.select("script")
    assert [td.text for td in page.select("#reasons td")][:2] == ["<script>x()</script>", "3"]
    assert page.select_one("#reason-examples td.mono").text == "r2"


def test_an_executed_notebooks_sample_reads_the_reasons_as_one_line(tmp_path):
    from mlsm_nb.files import read_jsonl
    from mlsm_nb.report.data import batch_sample

    save_leads(tmp_path / "leads.jsonl", 8, seed=2)
    run_notebooks([NOTEBOOKS], tmp_path / "leads.jsonl", out=tmp_path, run_id="s", engine="inprocess")
    document = next(read_jsonl(tmp_path / "s" / "results" / "batch-00000.jsonl"))
    reasons = document["results"]["lead_lr"]["1.0.0"]["_reasons"]
    rows = batch_sample(tmp_path / "s", "lead_lr", "1.0.0", 0)
    assert rows[0]["_reasons"] == ", ".join(f"{r['field']} {r['contribution']:+.3g}" for r in reasons)
    assert len(rows) == 5 and "_reasons" not in batch_sample(tmp_path / "s", "lead_rules", "1.0.0", 0)[0]
