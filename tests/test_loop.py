"""The loop of issue 37 walked once, end to end, over real HTTP and a real MongoDB wire server.

The example notebooks are extracted and registered, the logistic model lead_lr 1.0.0 as a draft: the
challenger, scored beside the champion lead_rules 1.0.0. The versions in production are approved
(waived: nothing to compare them with) and evidence is required from then on. A batch run scores the
reference period and its outcomes are attached; `mlsm-nb serve` scores new leads over HTTP and stores them
in MongoDB, and their outcomes arrive over HTTP (POST /outcomes): the live page shows the AUC they give
(chromium). The challenger is made active: its bundle is refused by serve's
swap and by extract, and its approval is refused, while no comparison vouches for it; `compare` writes the
evidence, `approve` then accepts and cites it, and serve swaps the challenger in. Last, a later run whose
outcomes went the other way (a decayed world) makes `monitor` exit 1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pandas as pd
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import NOTEBOOKS
from labelled_runs import outcomes_file
from mlsm_nb.audit.metrics import auc
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.contract import lint_notebook
from servers import ServeServer, open_live_page, wait_for

pytestmark = pytest.mark.slow
MLSM_NB = str(Path(sys.executable).with_name("mlsm-nb"))
CHAMPION, CHALLENGER = "lead_rules@1.0.0", "lead_lr@1.0.0"
TOKEN = "loop-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def mlsm(*args) -> subprocess.CompletedProcess:
    return subprocess.run([MLSM_NB, *map(str, args)], capture_output=True, text=True, timeout=300)


def ok(*args) -> str:
    result = mlsm(*args)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def write_leads(path: Path, count: int, seed: int) -> list[dict]:
    records = list(generate_leads(count, seed=seed))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def set_status(notebook: Path, old: str, new: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "version" in c.metadata.get("tags", []))
    assert f'status = "{old}"' in cell.source
    cell.source = cell.source.replace(f'status = "{old}"', f'status = "{new}"')
    nbformat.write(nb, notebook)


def test_score_labels_compare_approve_swap_and_alert(mongo_uri, mongo_db, tmp_path):
    uri, db, notebooks = f"{mongo_uri}/{mongo_db.name}", mongo_db, tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # -- the models in production, approved; from now on approvals must cite evidence --------------------
    challenger = notebooks / "lead_lr.ipynb"
    set_status(challenger, "active", "draft")
    ok("extract", notebooks, "--out", tmp_path / "b1", "--mongo-uri", uri, "--branch", "main")
    for name, version in (("lead_rules", "1.0.0"), ("champion", "1.0.0")):
        ok("approve", name, version, "--mongo-uri", uri, "--by", "ada", "--waive-evidence", "first version")
    ok("approve", "--require-evidence", "--mongo-uri", uri)

    # -- the reference period: a batch run and its outcomes ----------------------------------------------
    reference = write_leads(tmp_path / "reference.jsonl", 1000, seed=1)
    ok("run", notebooks, "--records", tmp_path / "reference.jsonl", "--out", tmp_path / "runs", "--run-id",
       "reference", "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    ok("outcomes", outcomes_file(tmp_path, "reference-outcomes", reference), "--label", "converted",
       "--mongo-uri", uri)

    # -- serve scores new leads over HTTP, stored in MongoDB; their outcomes arrive -----------------------
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "b1")
    server = ServeServer(link, "--poll", "3600", "--mongo-uri", uri, env={"MLSM_SERVE_TOKEN": TOKEN}).start()
    try:
        served = write_leads(tmp_path / "served.jsonl", 1000, seed=2)
        scores = {}
        for start in range(0, len(served), 100):
            response = httpx.post(server.url + "/score", json=served[start:start + 100], headers=AUTH, timeout=60)
            assert response.status_code == 200, response.text
            for document in response.json()["documents"]:
                entry = document["results"]["lead_lr"]["1.0.0"]
                assert entry["_status"] == "draft"
                scores[document["id"]] = entry["score"]
        health = lambda: httpx.get(server.url + "/health", timeout=10).json()  # noqa: E731
        wait_for(lambda: health()["storage"]["stored"] == 1000)
        assert db.results.count_documents({"run_id": health()["storage"]["run_id"]}) == 1000
        arrived = pd.read_csv(outcomes_file(tmp_path, "served-outcomes", served)).to_dict("records")
        for start in range(0, len(arrived), 250):  # as they arrive, over HTTP
            answer = httpx.post(server.url + "/outcomes", params={"label": "converted"},
                                json=arrived[start:start + 250], headers=AUTH, timeout=60).json()
            assert answer["accepted"] == 250 and answer["refused"] == [] and answer["unscored"] == []
        wait_for(lambda: db.outcomes.count_documents({}) == 2000)
        with sync_playwright() as p:  # the live page: AUC of the labelled scores, as they arrived
            browser, page, problems = open_live_page(p, server.url, TOKEN)
            line = page.locator(f"article.model[data-model='{CHALLENGER}'] .outcome[data-label='converted']")
            expect(line).to_contain_text("over the last 1000 labelled scores", timeout=15000)
            expected = auc([scores[o["id"]] for o in arrived], [o["converted"] for o in arrived])
            assert line.locator(".auc").inner_text() == f"{expected:.3f}"
            page.screenshot(path=str(tmp_path / "live-page.png"), full_page=True)
            browser.close()
        assert [p for p in problems if not p.startswith("Failed to load resource")] == []

        # -- the challenger made active: refused while no comparison vouches for it ----------------------
        set_status(challenger, "draft", "active")
        refused = mlsm("extract", notebooks, "--out", tmp_path / "b2", "--mongo-uri", uri, "--branch", "main")
        assert refused.returncode == 1 and not (tmp_path / "b2").exists()
        assert refused.stderr.startswith(f"error: {challenger}: lead_lr 1.0.0 is active but not approved, and the "
                                         "registry requires approvals citing evidence")
        ok("extract", notebooks, "--out", tmp_path / "b2", "--branch", "main")  # built without the registry
        (tmp_path / "current.new").symlink_to(tmp_path / "b2")
        (tmp_path / "current.new").replace(link)
        reload = httpx.post(server.url + "/admin/reload", headers=AUTH, timeout=60)
        assert reload.status_code == 422 and "lead_lr 1.0.0 is active but not approved" in reload.json()["error"]
        code = lint_notebook(challenger).sha256_without_status()
        refused = mlsm("approve", "lead_lr", "1.0.0", "--mongo-uri", uri, "--notebook", challenger)
        assert refused.returncode == 1
        assert f"no passing comparison of its code (sha256 without status {code[:12]}…)" in refused.stderr
        assert "approval" not in db.models.find_one({"name": "lead_lr", "version": "1.0.0"})

        # -- compare writes the evidence; approve accepts and cites it -----------------------------------
        compared = ok("compare", CHAMPION, CHALLENGER, "--mongo-uri", uri, "--by", "ada")
        evidence = db.evidence.find_one()
        assert evidence["passed"] and evidence["records"] == 2000 and evidence["challenger"][
            "sha256_without_status"] == code  # compared as a draft, approved as active: one code
        assert f"passed: evidence {evidence['_id']} written to the model registry of MongoDB ({db.name}.evidence)" \
            in compared
        approved = ok("approve", "lead_lr", "1.0.0", "--mongo-uri", uri, "--notebook", challenger, "--by", "bob")
        assert f"  evidence   {evidence['_id']} (against {CHAMPION}, AUC " in approved
        assert db.models.find_one({"name": "lead_lr", "version": "1.0.0"})["approval"]["evidence"]["id"] == \
            evidence["_id"]

        # -- serve swaps the challenger in ---------------------------------------------------------------
        reload = httpx.post(server.url + "/admin/reload", params={"force": "1"}, headers=AUTH, timeout=60)
        assert reload.status_code == 200 and reload.json()["outcome"] == "swapped", reload.text
        response = httpx.post(server.url + "/score", json=served[0], headers=AUTH, timeout=60)
        assert response.json()["documents"][0]["results"]["lead_lr"]["1.0.0"]["_status"] == "active"
        assert health()["refused"] is None
    finally:
        server.stop()

    # -- a later period whose outcomes went the other way: monitor alerts ----------------------------------
    decayed = write_leads(tmp_path / "decayed.jsonl", 1000, seed=3)
    ok("run", notebooks, "--records", tmp_path / "decayed.jsonl", "--out", tmp_path / "runs", "--run-id", "decayed",
       "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    ok("outcomes", outcomes_file(tmp_path, "decayed-outcomes", decayed, flip=True), "--label", "converted",
       "--mongo-uri", uri)
    alert = mlsm("monitor", "--mongo-uri", uri, "--reference", "reference", "--label", "converted")
    assert alert.returncode == 1, (alert.stdout, alert.stderr)
    assert "breach: lead_lr@1.0.0 auc " in alert.stdout and "breach: lead_rules@1.0.0 auc " in alert.stdout
