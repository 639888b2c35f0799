"""serve --mongo-uri applies the registry's policies (approvals, evidence) to the bundles it puts in service:
at start, and on every swap (real server, real MongoDB wire server)."""

from __future__ import annotations

import subprocess

import httpx
import pymongo
import pytest
from test_serve_swap import MLSM_NB, health, point, tiny_cells

from conftest import write_notebook
from servers import ServeServer, wait_for

pytestmark = pytest.mark.slow


def mlsm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLSM_NB, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def registry(mongo_uri, tmp_path):
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("serve_policy")
    yield f"{mongo_uri}/serve_policy"
    client.drop_database("serve_policy")


def test_a_swap_to_a_version_whose_approval_cites_no_evidence_is_refused(registry, tmp_path):
    one = write_notebook(tmp_path / "nb1" / "tiny.ipynb", tiny_cells("1.0", 1))
    two = write_notebook(tmp_path / "nb2" / "tiny.ipynb", tiny_cells("2.0", 2))
    assert mlsm("extract", one, "--out", tmp_path / "b1", "--mongo-uri", registry).returncode == 0
    assert mlsm("approve", "tiny", "1.0", "--mongo-uri", registry, "--waive-evidence", "first version").returncode == 0
    assert mlsm("approve", "--require-evidence", "--mongo-uri", registry).returncode == 0
    refused = mlsm("extract", two, "--out", tmp_path / "b2", "--mongo-uri", registry)  # registers it, writes none
    assert refused.returncode == 1 and not (tmp_path / "b2").exists()
    assert mlsm("extract", two, "--out", tmp_path / "b2").returncode == 0  # a bundle made without the registry

    result = mlsm("serve", tmp_path / "b2", "--port", "0", "--mongo-uri", registry)
    assert result.returncode == 1  # at start: before anything binds
    assert result.stderr.strip() == (f"error: {two}: tiny 2.0 is active but not approved, and the registry requires "
                                     "approvals citing evidence: mlsm-nb approve tiny 2.0, or set its status to draft")

    link = tmp_path / "current"
    link.symlink_to(tmp_path / "b1")
    server = ServeServer(link, "--poll", "3600", "--mongo-uri", registry).start()
    try:
        before = health(server)["bundle"]["sha256"]
        point(link, tmp_path / "b2")
        reload = httpx.post(server.url + "/admin/reload", timeout=60)
        assert reload.status_code == 422
        assert reload.json()["error"] == (f"{two}: tiny 2.0 is active but not approved, and the registry requires "
                                          "approvals citing evidence: mlsm-nb approve tiny 2.0, or set its status to "
                                          "draft")
        state = health(server)
        assert state["status"] == "degraded" and state["bundle"]["sha256"] == before
        # approved without evidence while evidence was optional: still refused once it is required again
        assert mlsm("approve", "--no-require-evidence", "--mongo-uri", registry).returncode == 0
        assert mlsm("approve", "tiny", "2.0", "--mongo-uri", registry).returncode == 0
        assert mlsm("approve", "--require-evidence", "--mongo-uri", registry).returncode == 0
        reload = httpx.post(server.url + "/admin/reload", params={"force": "1"}, timeout=60)
        assert reload.status_code == 422 and "its approval by " in reload.json()["error"]
        assert "cites no comparison, and the registry requires evidence" in reload.json()["error"]
        waived = mlsm("approve", "tiny", "2.0", "--mongo-uri", registry, "--waive-evidence", "a rename only")
        assert waived.returncode == 0 and "  evidence   waived: a rename only" in waived.stdout
        reload = httpx.post(server.url + "/admin/reload", params={"force": "1"}, timeout=60)
        assert reload.status_code == 200 and reload.json()["outcome"] == "swapped", reload.text
        wait_for(lambda: health(server)["bundle"]["models"] == ["tiny@2.0"])
        assert health(server)["refused"] is None
    finally:
        server.stop()
