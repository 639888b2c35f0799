"""The live page in chromium: recent scores per model, error counts, the bundle, a strict CSP, escaping."""

from __future__ import annotations

import httpx
import pytest

from conftest import NOTEBOOKS
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.extract import extract_bundle
from servers import ServeServer, open_live_page

pytestmark = pytest.mark.slow
HOSTILE = '<img src=x onerror="window.pwned=1">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "bundle"
    extract_bundle([NOTEBOOKS], out, provenance={"branch": HOSTILE})
    server = ServeServer(out, env={"MLSM_SERVE_TOKEN": "page-token"}).start()
    yield server
    server.stop()


def test_live_page_shows_scores_errors_and_bundle_and_updates(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    auth = {"Authorization": "Bearer page-token"}
    leads = list(generate_leads(30, seed=4))
    leads[0]["data"]["site_visits"] = -3
    assert httpx.post(server.url + "/score", json=leads, headers=auth).status_code == 200
    page_response = httpx.get(server.url + "/")
    assert "script-src 'self'" in page_response.headers["content-security-policy"]
    assert "<script>" not in page_response.text and " on" not in page_response.text.split("<body>")[1].lower()

    with sync_playwright() as p:
        browser, page, problems = open_live_page(p, server.url, "page-token")
        page.wait_for_selector("article.model[data-model='lead_lr@1.0.0'] polyline")
        card = page.locator("article.model[data-model='lead_lr@1.0.0']")
        assert "30 records scored" in card.inner_text()
        assert "1 error: 1 bad_value" in card.inner_text()
        assert page.locator("article.model[data-model='lead_rules@2.0.0'] h3 .draft").inner_text() == "draft"
        assert page.locator("article.model[data-model='lead_rules@1.0.0'] h3 .draft").count() == 0
        bundle_text = page.locator("#bundle").inner_text()
        sha = httpx.get(server.url + "/health").json()["bundle"]["sha256"]
        assert sha in bundle_text and HOSTILE in bundle_text  # shown as text, never run as HTML
        assert page.evaluate("window.pwned") is None
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

        more = list(generate_leads(20, seed=5))
        assert httpx.post(server.url + "/score", json=more, headers=auth).status_code == 200
        expect(card).to_contain_text("50 records scored", timeout=15000)
        points = page.locator("article.model[data-model='lead_lr@1.0.0'] polyline").get_attribute("points")
        assert len(points.split()) == 49  # 50 scores, one bad record
        page.screenshot(path=str(tmp_path / "live-updated.png"), full_page=True)
        browser.close()
    # the first /api/live is refused until the token is given (and there is no favicon); nothing else may fail,
    # and no script, style or connection may be blocked by the Content-Security-Policy
    assert [p for p in problems if not p.startswith("Failed to load resource")] == []
