"""POST /outcomes on a real `mlsm-nb serve`: per-record refusals, the token, the live figures on /api/live,
/metrics and the live page (chromium, strict CSP), MongoDB down and back (SecantusDB), several workers."""

from __future__ import annotations

import time

import httpx
import pymongo
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serve_mongo import storage, wait_stored
from test_serve_outcomes_parts import pairs_auc

from conftest import write_notebook
from mlsm_nb.audit.database import open_database
from mlsm_nb.audit.outcomes import OutcomeError, attach_outcomes
from mlsm_nb.notebook.extract import extract_bundle
from servers import SecantusServer, ServeServer, open_live_page

pytestmark = pytest.mark.slow

CELLS = [("version", 'name = "tiny"\nversion = "1.0"\nstatus = "active"'), ("fields", 'fields = {"x": int}'),
         ("score", "def score(data, results):\n    return {'score': data['x'] / 100}")]
TOKEN = {"Authorization": "Bearer outcome-token"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("outcomes")
    extract_bundle([write_notebook(root / "nb" / "tiny.ipynb", CELLS)], root / "bundle")
    return root / "bundle"


@pytest.fixture(scope="module")
def server(bundle):
    server = ServeServer(bundle, env={"MLSM_SERVE_TOKEN": "outcome-token"}).start()
    yield server
    server.stop()


def post(server, path, body, headers=TOKEN, timeout=30):
    return httpx.post(server.url + path, json=body, headers=headers, timeout=timeout)


def score(server, ids, x=lambda i: i, headers=TOKEN):
    response = post(server, "/score", [{"id": i, "data": {"x": x(i)}} for i in ids], headers)
    assert response.status_code == 200, response.text


def gauges(server) -> dict:
    text = httpx.get(server.url + "/metrics", headers=TOKEN).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_each_bad_outcome_is_refused_with_its_reason_and_the_others_are_kept_and_measured(server):
    score(server, [f"L{i}" for i in range(20)], x=lambda i: int(i[1:]))
    labels = {f"L{i}": int(i in (4, 9, 11, 15, 16, 19) or i == 2) for i in range(20)}
    records = [{"id": i, "converted": y} for i, y in labels.items()]
    records[3:3] = [{"id": "L2", "converted": 2}, {"converted": 1}, {"id": "L1", "converted": "true"},
                    {"id": "L5", "converted": 1, "observed_at": "yesterday"}, ["not", "an", "object"],
                    {"id": "never-scored", "converted": 1}]
    response = post(server, "/outcomes?label=converted", records)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["position"], r["id"], r["field"]) for r in body["refused"]] == [
        (3, "L2", "converted"), (4, None, "id"), (5, "L1", "id"), (6, "L5", "observed_at"), (7, None, None)]
    assert "earlier in this request" in body["refused"][2]["reason"]
    assert body["accepted"] == 21 and body["unscored"] == ["never-scored"] and body["stored"] == "memory"
    labelled = httpx.get(server.url + "/api/live", headers=TOKEN).json()["labelled"]["tiny@1.0"]["converted"]
    scores, ys = [int(i[1:]) / 100 for i in labels], list(labels.values())
    assert labelled["records"] == 20 and labelled["converted"] == sum(ys) and labelled["conversion"] == sum(ys) / 20
    assert labelled["auc"] == pytest.approx(pairs_auc(scores, ys))
    found = gauges(server)
    key = (("label", "converted"), ("model", "tiny"), ("version", "1.0"))
    assert found["mlsm_serve_outcome_auc", key] == pytest.approx(labelled["auc"])
    assert found["mlsm_serve_outcome_conversion", key] == pytest.approx(labelled["conversion"])
    assert found["mlsm_serve_outcome_window_records", key] == 20
    assert found["mlsm_serve_outcomes_total", (("result", "refused"),)] >= 5
    health = httpx.get(server.url + "/health").json()["outcomes"]
    assert health["kept"] == "memory" and health["held"] >= 21 and health["limit"] == 100_000


def test_a_single_bad_outcome_a_second_outcome_no_label_and_no_token_are_refused(server):
    score(server, ["S1"])
    assert post(server, "/outcomes?label=converted", {"id": "S1", "converted": 1}).status_code == 200
    again = post(server, "/outcomes?label=converted", {"id": "S1", "converted": 0})
    assert again.status_code == 400 and "S1" in again.json()["error"] and "posted before" in again.json()["error"]
    bad = post(server, "/outcomes?label=converted", {"id": "S2", "converted": 0.5})
    assert bad.status_code == 400 and "label converted is 0.5" in bad.json()["error"]
    assert post(server, "/outcomes", {"id": "S1", "converted": 1}).status_code == 400
    assert post(server, "/outcomes?label=converted", {"id": "S3", "converted": 1}, headers={}).status_code == 401
    assert post(server, "/outcomes?label=converted", 42).status_code == 400


def test_the_live_page_shows_conversion_and_auc_as_outcomes_arrive(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    score(server, [f"P{i}" for i in range(10)], x=lambda i: int(i[1:]))
    assert post(server, "/outcomes?label=paid", [{"id": f"P{i}", "paid": int(i >= 6)} for i in range(8)]).is_success
    with sync_playwright() as p:
        browser, page, problems = open_live_page(p, server.url, "outcome-token")
        line = page.locator("article.model[data-model='tiny@1.0'] .outcome[data-label='paid']")
        expect(line).to_contain_text("over the last 8 labelled scores (2 converted)", timeout=15000)
        assert line.locator(".conversion").inner_text() == "25.0 %"
        assert line.locator(".auc").inner_text() == "1.000"
        page.screenshot(path=str(tmp_path / "live-outcomes.png"), full_page=True)
        assert post(server, "/outcomes?label=paid", [{"id": "P8", "paid": 0}, {"id": "P9", "paid": 0}]).is_success
        expect(line).to_contain_text("over the last 10 labelled scores", timeout=15000)
        assert line.locator(".conversion").inner_text() == "20.0 %"
        assert line.locator(".auc").inner_text() == f"{pairs_auc(range(10), [0] * 6 + [1, 1, 0, 0]):.3f}"
        browser.close()
    assert [p for p in problems if not p.startswith("Failed to load resource")] == []


def outcomes_state(server) -> dict:
    return storage(server, "outcomes")


def wait_outcomes_stored(server, count) -> dict:
    return wait_stored(server, count, timeout=60, part="outcomes")


def test_outcomes_are_stored_beside_the_scores_and_kept_while_mongodb_is_down(bundle, tmp_path):
    database = SecantusServer(tmp_path / "db")  # nothing listens on its port yet
    served = ServeServer(bundle, "--mongo-uri", database.uri + "/served", log_dir=tmp_path).start()
    try:
        score(served, range(10), headers={})
        answer = post(served, "/outcomes?label=converted",
                      [{"id": i, "converted": i % 2, "observed_at": "2026-12-01T10:00:00"} for i in range(11)], {})
        assert answer.json()["stored"] == "queued" and answer.json()["unscored"] == [10]
        deadline = time.time() + 30
        while not outcomes_state(served)["error"] and time.time() < deadline:
            time.sleep(0.2)
        assert outcomes_state(served)["pending"] == 11
        assert httpx.get(served.url + "/health").json()["status"] == "degraded"
        database.start()
        wait_outcomes_stored(served, 11)
        database.stop()  # down mid-traffic
        assert post(served, "/outcomes?label=converted", [{"id": i, "converted": 1} for i in range(20, 25)],
                    {}).is_success
        database.start()
        state = wait_outcomes_stored(served, 16)
        assert state["error"] is None and state["kept"] == "mongodb"
    finally:
        served.stop()
    collection = pymongo.MongoClient(database.uri)["served"]["outcomes"]
    stored = collection.find_one({"id": 3}, {"_id": 0})
    assert stored == {"id": 3, "label": "converted", "value": 1, "observed_at": "2026-12-01T10:00:00+00:00",
                      "source": "POST /outcomes"}
    assert collection.count_documents({}) == 16
    # a new server process forgets what was posted; the unique (id, label) index keeps the first
    again = ServeServer(bundle, "--mongo-uri", database.uri + "/served", log_dir=tmp_path).start()
    try:
        assert post(again, "/outcomes?label=converted", [{"id": 3, "converted": 0}], {}).json()["accepted"] == 1
        assert wait_outcomes_stored(again, 0)["already_stored"] == 1
    finally:
        again.stop()
        assert collection.find_one({"id": 3})["value"] == 1
    # the file command sees them as its own: one more for id 3 is refused, nothing attached
    (tmp_path / "more.jsonl").write_text('{"id": 3, "converted": 0}\n')
    with pytest.raises(OutcomeError, match="already have a converted outcome"):
        attach_outcomes(tmp_path / "more.jsonl", "converted", database=open_database(database.uri, "served"))
    database.stop()


def test_with_several_workers_every_outcome_counts_whichever_worker_scored_or_received_it(bundle, tmp_path):
    served = ServeServer(bundle, "--workers", "2", log_dir=tmp_path).start()
    try:
        for start in range(0, 40, 4):  # a new connection each time: the workers share them out
            score(served, range(start, start + 4), headers={})
        for i in range(40):
            assert post(served, "/outcomes?label=converted", {"id": i, "converted": int(i >= 30)}, {}).is_success
        deadline, figures = time.time() + 20, {}
        while time.time() < deadline:
            figures = httpx.get(served.url + "/api/live").json()["labelled"].get("tiny@1.0", {}).get("converted", {})
            if figures.get("records") == 40:
                break
            time.sleep(0.3)
        assert figures == {"records": 40, "converted": 10, "conversion": 0.25, "auc": 1.0}
        found = gauges(served)
        assert found["mlsm_serve_outcomes_total", (("result", "accepted"),)] == 40
        assert found["mlsm_serve_outcome_window_records",
                     (("label", "converted"), ("model", "tiny"), ("version", "1.0"))] == 40
    finally:
        served.stop()
