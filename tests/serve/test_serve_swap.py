"""Hot swap over HTTP against the real server: watched symlink, /admin/reload, bad bundles, swaps under load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import write_notebook
from mlsm_nb.notebook.extract import extract_bundle
from servers import ServeServer, wait_for

pytestmark = pytest.mark.slow
MLSM_NB = str(Path(sys.executable).with_name("mlsm-nb"))


def tiny_cells(version: str, factor: int, setup: str = "pass"):
    return [("version", f'name = "tiny"\nversion = "{version}"\nstatus = "active"'),
            ("fields", 'fields = {"x": int}'),
            ("setup", f"FACTOR = {factor}\n{setup}"),
            ("score", "def score(data, results):\n    return {'score': data['x'] * FACTOR}")]


def make_bundle(root: Path, label: str, version: str, factor: int, setup: str = "pass") -> Path:
    notebook = write_notebook(root / f"nb-{label}" / "tiny.ipynb", tiny_cells(version, factor, setup))
    extract_bundle([notebook], root / label)
    return root / label


def point(link: Path, target: Path) -> None:
    """Switch the symlink `link` to `target` atomically, as a deploy script would."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def health(server):
    return httpx.get(server.url + "/health", timeout=10).json()


def score(server, records):
    return httpx.post(server.url + "/score", json=records, timeout=30)


@pytest.fixture
def served(tmp_path):
    one = make_bundle(tmp_path, "b1", "1.0", 1)
    link = tmp_path / "current"
    link.symlink_to(one)
    server = ServeServer(link, "--poll", "0.2").start()
    yield server, link, tmp_path
    server.stop()


def test_a_new_bundle_in_the_watched_place_is_swapped_in(served):
    server, link, root = served
    first = health(server)["bundle"]["sha256"]
    assert score(server, {"id": 1, "data": {"x": 5}}).json()["documents"][0]["results"]["tiny"] == \
        {"1.0": {"score": 5, "_status": "active"}}
    point(link, make_bundle(root, "b2", "2.0", 3))
    second = wait_for(lambda: (h := health(server)["bundle"]["sha256"]) != first and h)
    response = score(server, {"id": 1, "data": {"x": 5}})
    assert response.headers["x-mlsm-bundle"] == second
    assert response.json()["documents"][0]["results"]["tiny"] == {"2.0": {"score": 15, "_status": "active"}}
    assert health(server)["swaps"] == 1


def test_a_bundle_replaced_in_place_by_extract_is_swapped_in(tmp_path):
    place = make_bundle(tmp_path, "place", "1.0", 1)
    server = ServeServer(place, "--poll", "0.2").start()
    try:
        import shutil

        shutil.rmtree(place)
        notebook = write_notebook(tmp_path / "nb2" / "tiny.ipynb", tiny_cells("2.0", 2))
        assert subprocess.run([MLSM_NB, "extract", str(notebook), "--out", str(place)],
                              capture_output=True).returncode == 0
        wait_for(lambda: health(server)["bundle"]["models"] == ["tiny@2.0"])
        assert score(server, {"id": 1, "data": {"x": 4}}).json()["documents"][0]["results"]["tiny"]["2.0"]["score"] == 8
        assert health(server)["refused"] is None
    finally:
        server.stop()


def test_admin_reload_swaps_now_and_says_what_happened(tmp_path):
    one = make_bundle(tmp_path, "b1", "1.0", 1)
    link = tmp_path / "current"
    link.symlink_to(one)
    server = ServeServer(link, "--poll", "3600").start()  # the watcher will not look: only the reload
    try:
        reload = httpx.post(server.url + "/admin/reload", timeout=30)
        assert reload.json()["outcome"] == "unchanged"
        point(link, make_bundle(tmp_path, "b2", "2.0", 2))
        reload = httpx.post(server.url + "/admin/reload", timeout=30)
        assert reload.status_code == 200
        body = reload.json()
        assert body["outcome"] == "swapped" and body["bundle"] == health(server)["bundle"]["sha256"]
        assert body["previous"] != body["bundle"]
    finally:
        server.stop()


def _break_module(bundle: Path, new_text: str) -> None:
    """Rewrite a bundle's module and its recorded hash: a bundle that is intact but whose code is bad."""
    from mlsm_nb.files import file_sha256

    manifest = json.loads((bundle / "manifest.json").read_text())
    module = bundle / manifest["models"][0]["module"]
    module.write_text(new_text)
    manifest["models"][0]["module_sha256"] = file_sha256(module)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("problem, module_text, expected", [
    ("syntax error", "def score(data, results):\n    return {'score': \n", "SyntaxError"),
    ("raises on load", "raise RuntimeError('cannot reach the feature store')\n", "cannot reach the feature store"),
])
def test_a_bad_bundle_is_refused_the_old_one_stays_and_health_says_so(served, problem, module_text, expected):
    server, link, root = served
    before = health(server)
    bad = make_bundle(root, "bad", "2.0", 2)
    _break_module(bad, module_text)
    point(link, bad)
    refused = wait_for(lambda: health(server)["refused"])
    assert expected in refused["error"]
    state = health(server)
    assert state["status"] == "degraded" and state["bundle"]["sha256"] == before["bundle"]["sha256"]
    response = score(server, {"id": 1, "data": {"x": 2}})
    assert response.status_code == 200
    assert response.json()["documents"][0]["results"]["tiny"] == {"1.0": {"score": 2, "_status": "active"}}
    reload = httpx.post(server.url + "/admin/reload", timeout=30)
    assert reload.status_code == 422 and expected in reload.json()["error"]
    point(link, make_bundle(root, "good", "3.0", 3))
    wait_for(lambda: health(server)["bundle"]["models"] == ["tiny@3.0"])
    assert health(server)["refused"] is None and health(server)["status"] == "ok"
    assert expected in server.output()  # logged for the operator


def test_a_bad_bundle_at_start_is_one_line_and_exit_1(tmp_path):
    bad = make_bundle(tmp_path, "bad", "1.0", 1)
    _break_module(bad, "raise RuntimeError('no')\n")
    result = subprocess.run([MLSM_NB, "serve", str(bad), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {bad / 'tiny-1.0' / 'model.py'}: raised RuntimeError: no"]


def test_a_reload_during_a_load_waits_and_no_half_loaded_bundle_is_served(served):
    server, link, root = served
    first = health(server)["bundle"]["sha256"]
    slow = make_bundle(root, "slow", "2.0", 2, setup="import time\ntime.sleep(3)")
    point(link, slow)
    outcomes, answers = [], []

    def reload():
        outcomes.append(httpx.post(server.url + "/admin/reload", timeout=60).json())

    threads = [threading.Thread(target=reload) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    deadline = time.time() + 2
    while time.time() < deadline:  # scoring goes on, on the old bundle, during the load
        response = score(server, {"id": 1, "data": {"x": 1}})
        answers.append((response.headers["x-mlsm-bundle"], response.json()["documents"][0]["results"]["tiny"]))
    for thread in threads:
        thread.join()
    second = health(server)["bundle"]["sha256"]
    assert second != first and health(server)["swaps"] == 1
    assert sorted(o["outcome"] for o in outcomes) in (["swapped", "unchanged", "unchanged"],
                                                      ["unchanged", "unchanged", "unchanged"])
    assert all(o["bundle"] == second for o in outcomes)
    for bundle, results in answers:
        assert (bundle, results) in ((first, {"1.0": {"score": 1, "_status": "active"}}),
                                     (second, {"2.0": {"score": 2, "_status": "active"}}))
    assert any(bundle == first for bundle, _ in answers)


def test_ten_swaps_under_load_fail_nothing_and_mix_nothing(served):
    server, link, root = served
    bundles = [make_bundle(root, f"v{i}", f"{i}.0", i) for i in range(2, 12)]
    expected = {health(server)["bundle"]["sha256"]: ("1.0", 1)}
    failures, mixed, seen = [], [], set()
    stop = threading.Event()

    def client(offset: int):
        with httpx.Client(timeout=30) as http:
            n = 0
            while not stop.is_set():
                records = [{"id": f"{offset}-{n}-{i}", "data": {"x": i}} for i in range(50)]
                n += 1
                try:
                    response = http.post(server.url + "/score", json=records)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                body = response.json()
                versions = {v for d in body["documents"] for v in d["results"]["tiny"]}
                factors = {d["results"]["tiny"][v]["score"] // max(1, i) for i, d in enumerate(body["documents"])
                           for v in d["results"]["tiny"] if i}
                seen.add(body["bundle"])
                if len(versions) != 1 or len(factors) != 1 or response.headers["x-mlsm-bundle"] != body["bundle"]:
                    mixed.append(body["bundle"])
                else:
                    body_versions[body["bundle"]] = (versions.pop(), factors.pop())

    body_versions: dict = {}
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for i, bundle in enumerate(bundles, start=2):
        point(link, bundle)
        sha = wait_for(lambda i=i: (h := health(server)["bundle"])["models"] == [f"tiny@{i}.0"] and h["sha256"])
        expected[sha] = (f"{i}.0", i)
        time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == [] and mixed == []
    assert health(server)["swaps"] == 10
    for sha, answer in body_versions.items():
        assert expected[sha] == answer  # every response's bundle hash names the models that scored it
    assert len(seen) >= 8


def _tamper(bundle: Path) -> None:
    """Change a module after extraction without its recorded hash, as a tampered or half-copied bundle is."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    module = bundle / manifest["models"][0]["module"]
    module.write_text(module.read_text() + "\nFACTOR = 1000\n")


@pytest.mark.parametrize("back_to", ["the bundle in service", "another good bundle"])
def test_a_switch_back_after_a_refusal_clears_it(served, back_to):
    server, link, root = served
    in_service = link.resolve()
    tampered = make_bundle(root, "tampered", "2.0", 2)
    _tamper(tampered)
    point(link, tampered)
    refused = wait_for(lambda: health(server)["refused"])
    assert "changed since extraction" in refused["error"] and health(server)["status"] == "degraded"
    point(link, in_service if back_to == "the bundle in service" else make_bundle(root, "good", "3.0", 3))
    state = wait_for(lambda: (h := health(server))["refused"] is None and h)
    assert state["status"] == "ok"
    assert state["bundle"]["models"] == (["tiny@1.0"] if back_to == "the bundle in service" else ["tiny@3.0"])
    reload = httpx.post(server.url + "/admin/reload", timeout=30)
    assert reload.status_code == 200 and reload.json()["outcome"] == "unchanged"
    assert health(server)["status"] == "ok"
    assert "refusal cleared" in server.output()


def test_a_reload_after_switching_back_clears_the_refusal_without_the_watcher(tmp_path):
    one = make_bundle(tmp_path, "b1", "1.0", 1)
    link = tmp_path / "current"
    link.symlink_to(one)
    server = ServeServer(link, "--poll", "3600").start()  # only /admin/reload looks
    try:
        tampered = make_bundle(tmp_path, "tampered", "2.0", 2)
        _tamper(tampered)
        point(link, tampered)
        assert httpx.post(server.url + "/admin/reload", timeout=30).status_code == 422
        assert health(server)["status"] == "degraded"
        point(link, one)
        reload = httpx.post(server.url + "/admin/reload", timeout=30)
        assert reload.status_code == 200 and reload.json()["outcome"] == "unchanged"
        assert health(server)["status"] == "ok" and health(server)["refused"] is None
    finally:
        server.stop()


def test_the_live_page_banner_clears_when_the_bundle_in_service_is_back(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    server, link, root = served
    in_service = link.resolve()
    tampered = make_bundle(root, "tampered", "2.0", 2)
    _tamper(tampered)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(server.url + "/")
            banner = page.locator("#refused")
            page.wait_for_selector("#bundle dd")
            expect(banner).to_be_hidden()
            expect(page.locator("#bundle dd").first).to_have_text("ok")
            point(link, tampered)
            expect(banner).to_be_visible(timeout=15000)
            expect(banner).to_contain_text("changed since extraction")
            status = page.locator("#bundle dd").first
            expect(status).to_have_text("degraded")
            page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
            point(link, in_service)
            expect(banner).to_be_hidden(timeout=15000)
            expect(status).to_have_text("ok")
            page.screenshot(path=str(tmp_path / "cleared.png"), full_page=True)
        finally:
            browser.close()
