"""The report as Jenkins serves it: over HTTP with Jenkins' default Content-Security-Policy,
copied away from its run directory, in chromium."""

import contextlib
import http.server
import os
import shutil
import sys
import threading
from functools import partial
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from test_report import EVIL_ID, tiny_rows, write_records

from conftest import GOOD_CELLS, replace_cell
from labelled_runs import outcomes_file, score_run
from mlsm_nb.audit.outcomes import attach_outcomes
from mlsm_nb.cli import main
from mlsm_nb.report.site import write_report
from mlsm_nb.run.orchestrate import run_notebooks

JENKINS_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'self';"
HOSTILE_HTML = ("from IPython.display import HTML, Markdown, display\n"
                "display(HTML('<script>window.__pwned = 1</script><b style=\"color:red\" onclick=\"x()\">bold</b>"
                "<img src=\"data:image/png;base64,iVBORw0KGgo=\"><a href=\"https://example.com/\">away</a>'))\n"
                "display(Markdown('![remote](https://example.com/x.png) [away](../../../etc/passwd)'))\n"
                "FACTOR = 2")


class _JenkinsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Content-Security-Policy", JENKINS_CSP)
        super().end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def jenkins_like(tmp_path):
    """An HTTP server on loopback that serves tmp_path/served with Jenkins' CSP header."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_JenkinsHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def page_under_csp(base: str, path: str):
    """Chromium showing `path` of the Jenkins-like server at `base` (its CSP header checked); yields the page
    and the console's errors and warnings, the browser closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            console = []
            page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
            response = page.goto(urljoin(base, path))
            assert response.headers["content-security-policy"] == JENKINS_CSP
            yield page, console
        finally:
            browser.close()


@pytest.mark.slow
def test_report_under_jenkins_csp(tmp_path, make_notebook, jenkins_like):
    from playwright.sync_api import sync_playwright

    tiny = make_notebook("tiny.ipynb", replace_cell(GOOD_CELLS, "setup", HOSTILE_HTML))
    authored = nbformat.read(tiny, as_version=4)  # a training cell whose saved outputs are hostile too
    training = next(c for c in authored.cells if c.cell_type == "code" and not c.metadata.get("tags"))
    training.outputs.append(nbformat.v4.new_output("display_data", data={
        "text/html": '<script>window.__pwned = 1</script><b style="color:red" onclick="x()">fitted</b>',
        "text/plain": "fitted"}))
    nbformat.write(authored, tiny)
    pick = [("models", 'models = [{"name": "tiny", "version": "1.0"}]') if tag == "fields" else (tag, src, *rest)
            for tag, src, *rest in GOOD_CELLS if tag != "examples"]
    pick = replace_cell(pick, "version", 'name = "pick"\nversion = "1"\nstatus = "draft"')
    pick = replace_cell(pick, "score", "def score(data, results):\n    s = results['tiny']['1.0']['score']\n"
                                       "    return {'score': s / 40, 'champion': 'tiny@1.0' if s > 10 else 'none'}")
    broken = replace_cell(GOOD_CELLS, "version", 'name = "broken"\nversion = "1"\nstatus = "draft"')
    broken = replace_cell(broken, "setup", "raise RuntimeError('weights file is missing')")
    notebooks = [tiny, make_notebook("pick.ipynb", pick), make_notebook("broken.ipynb", broken)]
    records = write_records(tmp_path / "in.jsonl", tiny_rows(40))
    manifest = run_notebooks(notebooks, records, out=tmp_path / "runs", run_id="web", batch_size=20)
    assert manifest.status == "failed"
    write_report(tmp_path / "runs" / "web")
    served, base = jenkins_like
    shutil.copytree(tmp_path / "runs" / "web" / "report", served / "report")  # published away from the run
    shutil.rmtree(tmp_path / "runs")

    for html in (served / "report").rglob("*.html"):  # markup Jenkins' CSP would block, or that leaves the report
        soup = BeautifulSoup(html.read_text(), "html.parser")
        assert not soup.find_all(["script", "style", "iframe", "object", "embed"]), html
        assert not soup.find_all(style=True) and not soup.find_all(onclick=True), html
        links = [e.get("href") or e.get("src") for e in soup.find_all(href=True) + soup.find_all(src=True)]
        assert not [link for link in links if ":" in link or link.startswith("/")], (html, links)
        machine = (str(tmp_path), "/tmp/", sys.prefix, os.path.realpath(sys.prefix), str(Path.home()) + "/")
        assert not [path for path in machine if path in html.read_text()], html

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        console, failed_requests = [], []
        page.on("console", lambda m: console.append(f"{page.url}: {m.text}") if m.type in ("error",
                                                                                           "warning") else None)
        page.on("requestfailed", lambda r: failed_requests.append(r.url))
        start = urljoin(base, "report/index.html")
        todo, seen, outside = [start], set(), []
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            response = page.goto(url)
            assert response.status == 200, url
            assert response.headers["content-security-policy"] == JENKINS_CSP
            # The stylesheet applies (the header's background comes from report.css only).
            assert page.eval_on_selector("header", "h => getComputedStyle(h).backgroundColor") == "rgb(36, 70, 107)"
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
            assert all(width > 0 for _, width in sizes), (url, sizes)
            for href in page.eval_on_selector_all("a[href], link[href]",
                                                  "els => els.map(e => e.getAttribute('href'))") \
                    + [src for src, _ in sizes]:
                target = urljoin(url, href).split("#")[0]
                if not urlparse(target).path.startswith("/report/") or not target.startswith(base):
                    outside.append((url, href))
                elif target.endswith(".html"):
                    todo.append(target)
                else:
                    assert page.request.get(target).status == 200, (url, href)
            if url == start:
                assert page.text_content("#run-status") == "failed"
                assert page.text_content("#count-records") == "41"
                assert page.text_content("#count-failed") == "3"  # broken@1 in each of 3 batches
                page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
        pages = {urlparse(u).path for u in seen}
        assert {"/report/index.html", "/report/models/tiny_1.0.html", "/report/notebooks/tiny_1.0.html",
                "/report/notebooks/tiny_1.0.training.html",
                "/report/executed/tiny_1.0/batch-00000.html", "/report/executed/broken_1/batch-00002.html"} <= pages

        page.goto(urljoin(base, "report/executed/tiny_1.0/batch-00001.html"))
        assert page.text_content("#notebook-title") == "tiny 1.0 · batch 1"
        assert page.get_attribute("#back", "href") == "../../index.html"
        assert "r20" in page.text_content("#sample")  # batch 1 starts with record r20
        assert "bold" in page.text_content(".notebook") and page.evaluate("typeof window.__pwned") == "undefined"
        page.screenshot(path=str(tmp_path / "executed-page.png"), full_page=True)
        page.goto(urljoin(base, "report/models/tiny_1.0.html"))
        page.click("#training-link")
        assert page.text_content("#notebook-title") == "tiny 1.0 · training cells"
        assert "authoring only" in page.text_content(".notebook") and "fitted" in page.text_content(".notebook")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.eval_on_selector(".celltag_mlsm-production-cell",  # production cells named, muted by report.css
                                     "c => getComputedStyle(c).color") == "rgb(101, 109, 118)"
        assert "Cell 3 [setup]: a production cell" in page.text_content(".notebook")
        page.screenshot(path=str(tmp_path / "training-page.png"), full_page=True)
        page.goto(urljoin(base, "report/executed/broken_1/batch-00000.html"))
        banner = page.text_content("#failure")
        assert "This execution failed" in banner and "weights file is missing" in banner
        assert page.text_content("#failing-cell") == "Failing cell: cell 3 [setup] of the notebook"  # as JupyterLab
        page.goto(urljoin(base, "report/models/pick_1.html"))
        shares = page.eval_on_selector_all(".categories td:last-child",
                                           "tds => tds.map(t => parseFloat(t.textContent))")
        assert abs(sum(shares) - 100) < 0.5 and page.text_content(".categories tr.error-row td") == "error"
        assert EVIL_ID in page.text_content("#error-examples") or "bad_type" not in page.text_content("#errors")
        page.screenshot(path=str(tmp_path / "model-page.png"), full_page=True)
        browser.close()
    assert outside == []
    assert failed_requests == []
    assert console == []


@pytest.mark.slow
def test_monitor_section_under_jenkins_csp(tmp_path, jenkins_like):
    """What `mlsm-nb monitor` found, on the run page as Jenkins publishes it: breaches marked by report.css."""
    first, first_records = score_run(tmp_path, "r1", seed=1)
    attach_outcomes(outcomes_file(tmp_path, "o1", first_records), "converted", run=first)
    second, second_records = score_run(tmp_path, "r2", seed=2)
    attach_outcomes(outcomes_file(tmp_path, "o2", second_records, flip=True), "converted", run=second)
    assert CliRunner().invoke(main, ["monitor", str(second)]).exit_code == 1
    write_report(second)
    served, base = jenkins_like
    shutil.copytree(second / "report", served / "report")
    with page_under_csp(base, "report/index.html") as (page, console):
        assert page.text_content("#monitor-verdict").split()[:2] == ["6", "breach(es),"]
        breached = page.eval_on_selector_all(
            "#monitor-checks tr.drift",
            "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent,"
            " getComputedStyle(r).backgroundColor])")
        assert ["lead_lr@1.0.0", "auc", "rgb(255, 235, 233)"] in breached and len(breached) == 6
        border = page.eval_on_selector("#monitor-verdict", "v => getComputedStyle(v).borderTopColor")
        assert border == "rgb(207, 34, 46)"  # report.css's .verdict.failed
        page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
    assert console == []


@pytest.mark.slow
def test_the_approval_beside_its_evidence_under_jenkins_csp(tmp_path, jenkins_like, mongo_uri):
    """A model page of a run measured in MongoDB: the registry's approval, the comparison it cites, the figures."""
    import json

    import pymongo

    from conftest import NOTEBOOKS
    from mlsm_nb.leads import generate_leads, save_leads

    def cli(*args):
        result = CliRunner().invoke(main, [*map(str, args)])
        assert result.exit_code == 0, result.output
        return result.output

    pymongo.MongoClient(mongo_uri).drop_database("report_evidence")
    uri = f"{mongo_uri}/report_evidence"
    save_leads(tmp_path / "leads.jsonl", 1000, seed=11)
    cli("run", NOTEBOOKS, "--records", tmp_path / "leads.jsonl", "--out", tmp_path / "runs", "--run-id", "r",
        "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    import random

    from mlsm_nb.leads import converted
    rng = random.Random(3)
    (tmp_path / "o.jsonl").write_text("".join(json.dumps({"id": r["id"], "converted": int(converted(r["data"], rng))})
                                              + "\n" for r in generate_leads(1000, seed=11)))
    cli("outcomes", tmp_path / "o.jsonl", "--label", "converted", "--mongo-uri", uri)
    cli("compare", "lead_rules@1.0.0", "lead_rules@2.0.0", "--mongo-uri", uri, "--by", "ada")
    cli("approve", "lead_rules", "2.0.0", "--mongo-uri", uri, "--by", "bob")
    cli("approve", "--require-evidence", "--mongo-uri", uri)
    cli("report", tmp_path / "runs" / "r", "--mongo-uri", uri)
    evidence = pymongo.MongoClient(mongo_uri)["report_evidence"].evidence.find_one()
    served, base = jenkins_like
    shutil.copytree(tmp_path / "runs" / "r" / "report", served / "report")
    with page_under_csp(base, "report/models/lead_rules_2.0.0.html") as (page, console):
        approval = page.text_content("#approval-table")
        assert "by bob at " in approval and "(the notebook that ran)" in approval
        assert f"{evidence['_id']}: against lead_rules@1.0.0, AUC {evidence['auc']['difference']:+.4f} on 1000 " \
               "records, passed" in page.text_content("#cited")
        assert "approvals optional; evidence required" in approval
        figures = page.text_content("#evidence-figures")
        low, high = evidence["auc"]["difference_ci"]
        assert f"{evidence['auc']['difference']:+.4f} [{low:.4f}, {high:.4f}]" in figures
        assert page.text_content("#evidence-checks").count("ok") == 4
        assert page.eval_on_selector("#cited .ok", "e => getComputedStyle(e).color") == "rgb(26, 127, 55)"  # report.css
        page.screenshot(path=str(tmp_path / "evidence-page.png"), full_page=True)
    assert console == []
    pymongo.MongoClient(mongo_uri).drop_database("report_evidence")
