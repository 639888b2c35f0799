"""Authoring end to end: a real JupyterLab in Debian's chromium, driven by Playwright."""

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path):
    """`jupyter lab` on a loopback port with a token, rooted in a temporary folder; stopped after."""
    for args in (["model", "trial_model"], ["model", "other_model"],
                 ["summary", "trial_pick", "--models", "trial_model:0.1.0", "--models", "other_model:0.1.0"]):
        new = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "new", *args], cwd=tmp_path,
                             capture_output=True, text=True)
        assert new.returncode == 0, new.stderr
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).parent / "jupyter"
    server = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--allow-root", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "wb"), cwd=tmp_path,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter")})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError(
                        f"jupyter lab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield base, token, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def open_and_run_all(page, base, token, notebook):
    """Open a notebook in JupyterLab, start its kernel, Run All; wait for check()'s verdict."""
    from playwright.sync_api import expect

    page.goto(f"{base}/lab/tree/notebooks/{notebook}?token={token}")
    expect(page.locator(".jp-Notebook").first).to_be_visible(timeout=120_000)
    select = page.get_by_role("button", name="Select Kernel")
    try:  # JupyterLab may ask which kernel to start; the notebook's own (python3) is preselected
        select.click(timeout=10_000)
    except Exception:  # noqa: BLE001 - no dialog this time
        pass
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # Run All ends with check(), which validates the notebook (a few seconds of kernel time);
    # the form's callbacks run once the kernel is free again.
    verdict = page.locator(".mlsm-check")
    expect(verdict).to_contain_text(f"{notebook} passes", timeout=240_000)
    expect(verdict).to_contain_text("(the version saved at ")
    form = page.locator(".mlsm-tryout")
    expect(form).to_be_visible(timeout=60_000)
    return form


def launch(p):
    return p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def test_tryout_form_scores_a_lead_in_jupyterlab(lab):
    from playwright.sync_api import expect, sync_playwright

    base, token, root = lab
    started = time.time()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        form = open_and_run_all(page, base, token, "trial_model.ipynb")
        clicks = form.locator(".mlsm-field-email_clicks input")
        clicks.fill("5")
        clicks.press("Enter")
        title = form.locator(".mlsm-field-job_title input")
        title.fill("VP Sales")
        title.press("Enter")
        form.get_by_role("button", name="Score").click()
        result = form.locator(".mlsm-result")
        expect(result).to_contain_text("0.514775", timeout=60_000)  # 0.8 * (1 - e^-0.5) + 0.2 for a VP
        reasons = result.locator("ol.mlsm-reasons li")  # the template says why: clicks' part, then the title's
        expect(reasons).to_have_text(["email_clicks +0.315", "job_title +0.2"])

        form.locator(".mlsm-none-site_visits input").check()
        form.get_by_role("button", name="Score").click()
        expect(result).to_contain_text("_error_kind: bad_value", timeout=60_000)
        expect(result).to_contain_text("field 'site_visits' is None but not nullable")

        form.scroll_into_view_if_needed()
        page.screenshot(path=str(root / "tryout.png"))
        browser.close()
    print(f"browser test took {time.time() - started:.1f} s")


def test_summary_form_asks_shared_fields_once_and_shows_an_out_of_range_error(lab):
    from playwright.sync_api import expect, sync_playwright

    base, token, root = lab
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        form = open_and_run_all(page, base, token, "trial_pick.ipynb")
        # trial_model and other_model both read email_clicks, site_visits and job_title: asked once each
        for field in ("email_clicks", "site_visits", "job_title"):
            expect(form.locator(f".mlsm-field-{field}")).to_have_count(1)
        expect(form.locator(".mlsm-hint-email_clicks")).to_contain_text("min 0 · read by trial_model, other_model")

        form.get_by_role("button", name="Random lead").click()
        result = form.locator(".mlsm-result")
        expect(result).to_contain_text("a random lead: press Score")
        form.get_by_role("button", name="Score").click()
        expect(result).to_contain_text("champion", timeout=60_000)

        clicks = form.locator(".mlsm-field-email_clicks input")
        clicks.fill("-3")  # below min 0: the box keeps it, the model refuses it as production would
        clicks.press("Enter")
        expect(result).to_contain_text("inputs changed: press Score")
        expect(clicks).to_have_value("-3")
        form.get_by_role("button", name="Score").click()
        expect(result).to_contain_text("_error_kind: missing_dependency", timeout=60_000)
        expect(result).to_contain_text("trial_model 0.1.0 failed on this record: field 'email_clicks': -3 is below "
                                       "the minimum 0")
        form.scroll_into_view_if_needed()
        page.screenshot(path=str(root / "summary.png"))
        browser.close()
