import json
import shutil

import nbformat
import pymongo
import pytest
from click.testing import CliRunner

from conftest import NOTEBOOKS
from mlsm_nb.audit.approvals import ApprovalError, approve
from mlsm_nb.audit.database import AuditDatabase
from mlsm_nb.cli import main
from mlsm_nb.leads import save_leads
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.store.mongo import MongoStore

pytestmark = pytest.mark.slow  # a real MongoDB wire-protocol server

ACTIVE = [("champion", "1.0.0"), ("lead_lr", "1.0.0"), ("lead_rules", "1.0.0")]


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture
def registry(mongo_uri, tmp_path):
    """A database whose registry holds the example models (from `extract --mongo-uri`), and a copy of them."""
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("approvals_test")
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    uri = f"{mongo_uri}/approvals_test"
    result = cli("extract", notebooks, "--out", tmp_path / "bundle", "--mongo-uri", uri, "--branch", "main")
    assert result.exit_code == 0, result.output
    leads = tmp_path / "leads.jsonl"
    save_leads(leads, 20, seed=2)
    yield uri, client["approvals_test"], notebooks, leads
    client.drop_database("approvals_test")


def run(uri, notebooks, leads, out, run_id, *extra):
    return cli("run", notebooks, "--records", leads, "--out", out, "--run-id", run_id, "--engine", "inprocess",
               "--mongo-uri", uri, "--no-progress", *extra)


def test_approve_records_who_when_and_sha256(registry):
    uri, db, notebooks, _ = registry
    result = cli("approve", "lead_lr", "1.0.0", "--by", "ada", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    sha = lint_notebook(notebooks / "lead_lr.ipynb").sha256()
    entry = db.models.find_one({"name": "lead_lr", "version": "1.0.0"})
    assert entry["approval"]["by"] == "ada" and entry["approval"]["sha256"] == sha and entry["approval"]["at"]
    assert f"approved lead_lr 1.0.0 for sha256 {sha} by ada at " in result.output
    assert len(entry["approvals"]) == 1


def test_runs_refuse_unapproved_active_versions_when_required(registry, tmp_path):
    uri, db, notebooks, leads = registry
    assert run(uri, notebooks, leads, tmp_path / "runs", "before").exit_code == 0  # not required yet
    result = cli("approve", "--require", "--mongo-uri", uri)
    assert result.exit_code == 0 and "approvals are now required" in result.output
    result = run(uri, notebooks, leads, tmp_path / "runs", "refused")
    assert result.exit_code == 1
    assert result.output == (f"error: {notebooks / 'lead_lr.ipynb'}: lead_lr 1.0.0, lead_rules 1.0.0, champion 1.0.0 "
                             "are active but not approved, and the registry requires approvals: approve each (mlsm-nb "
                             "approve NAME VERSION), or set their status to draft\n")
    assert not (tmp_path / "runs" / "refused").exists()  # refused before anything was written
    assert run(uri, notebooks, leads, tmp_path / "runs", "develop", "--branch", "develop").exit_code == 0  # all draft
    for name, version in ACTIVE:
        assert cli("approve", name, version, "--mongo-uri", uri).exit_code == 0
    result = run(uri, notebooks, leads, tmp_path / "runs", "approved")
    assert result.exit_code == 0, result.output
    traced = json.loads(cli("trace", "lead-2-0000003", "--mongo-uri", uri, "--json").output)
    lr = next(m for m in traced["models"] if m["name"] == "lead_lr")
    assert lr["approval"]["sha256"] == lint_notebook(notebooks / "lead_lr.ipynb").sha256()
    # the approved notebook changes: its approval no longer covers it
    nb = nbformat.read(notebooks / "lead_lr.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "score" in c.metadata.get("tags", []))
    cell.source += "\n# tweak"
    nbformat.write(nb, notebooks / "lead_lr.ipynb")
    result = run(uri, notebooks, leads, tmp_path / "runs", "changed")
    assert result.exit_code == 1 and "lead_lr 1.0.0 was approved for sha256 " in result.output
    assert "approve this notebook again" in result.output
    assert cli("approve", "--no-require", "--mongo-uri", uri).exit_code == 0
    assert run(uri, notebooks, leads, tmp_path / "runs", "optional").exit_code == 0


def test_approve_bad_input(registry, mongo_uri):
    uri, db, notebooks, _ = registry
    result = cli("approve", "lead_lr", "9.9.9", "--mongo-uri", uri)
    assert result.exit_code == 1
    assert "model lead_lr 9.9.9 is not in the registry of MongoDB (approvals_test); extract or run it" in result.output
    result = cli("approve", "lead_lr", "1.0.0", "--notebook", notebooks / "lead_rules.ipynb", "--mongo-uri", uri)
    assert result.exit_code == 1 and "declares lead_rules 1.0.0, not lead_lr 1.0.0" in result.output
    assert "approval" not in db.models.find_one({"name": "lead_lr", "version": "1.0.0"})
    assert cli("approve", "lead_lr", "--mongo-uri", uri).exit_code == 2
    assert "pass --mongo-uri" in cli("approve", "lead_lr", "1.0.0").output
    empty = f"{mongo_uri}/approvals_none"
    result = cli("approve", "lead_lr", "1.0.0", "--mongo-uri", empty)
    assert result.exit_code == 1
    assert result.output.strip() == ("error: MongoDB (approvals_none) has no model registry (collection models); "
                                     "register the models first: mlsm-nb extract --mongo-uri ... "
                                     "or mlsm-nb run --mongo-uri ...")
    with pytest.raises(ApprovalError, match="no model registry"):
        approve(AuditDatabase(MongoStore.from_database(pymongo.MongoClient(mongo_uri)["approvals_none"])), "a", "1")
