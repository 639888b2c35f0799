import json
import shutil
from pathlib import Path

import nbformat
import pymongo
import pytest
from click.testing import CliRunner
from test_replay import edit_score_cell

from conftest import NOTEBOOKS, git
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


@pytest.fixture
def empty_database(mongo_uri):
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("approvals_review")
    yield f"{mongo_uri}/approvals_review", client["approvals_review"]
    client.drop_database("approvals_review")


def test_approve_names_what_it_approves_and_refuses_a_hash_another_branch_registered(empty_database, tmp_path,
                                                                                      monkeypatch):
    uri, db = empty_database
    repo = tmp_path / "models"
    shutil.copytree(NOTEBOOKS, repo / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "models")
    approved_commit = git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    notebook = Path("notebooks") / "lead_rules.ipynb"
    result = cli("extract", "notebooks", "--out", tmp_path / "bundle", "--mongo-uri", uri, "--branch", "main")
    assert result.exit_code == 0, result.output
    approved_sha = lint_notebook(notebook).sha256()
    result = cli("approve", "lead_rules", "1.0.0", "--by", "ada", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:5] == [
        f"lead_rules 1.0.0  sha256 {approved_sha}", f"  notebook   {notebook}", "  branch     main",
        f"  commit     {approved_commit}", result.output.splitlines()[4]]
    registered = result.output.splitlines()[4]
    assert registered.startswith("  registered 20") and registered.endswith(" by mlsm-nb extract")
    assert "first approval of this version" in result.output
    assert cli("approve", "lead_lr", "1.0.0", "--by", "ada", "--mongo-uri", uri).exit_code == 0
    assert cli("approve", "--require", "--mongo-uri", uri).exit_code == 0

    # on develop, a data scientist changes the score; a develop run (all draft) registers the new hash
    git(repo, "checkout", "--quiet", "-b", "develop")
    edit_score_cell(notebook, "points += 25", "points += 40")
    coef = repo / "notebooks" / "lead_lr.coef.json"  # lead_lr retrained: only its artifact changes
    coef.write_text(json.dumps({**json.loads(coef.read_text()), "intercept": -1.5}))
    git(repo, "commit", "--quiet", "-am", "trial signups count more; lead_lr retrained")
    changed_commit = git(repo, "rev-parse", "HEAD")
    changed_sha = lint_notebook(notebook).sha256()
    leads = tmp_path / "leads.jsonl"
    save_leads(leads, 20, seed=2)
    assert run(uri, "notebooks", leads, tmp_path / "runs", "dev", "--branch", "develop").exit_code == 0
    assert db.models.find_one({"name": "lead_rules", "version": "1.0.0"})["sha256"] == changed_sha

    result = cli("approve", "lead_rules", "1.0.0", "--by", "bob", "--mongo-uri", uri)
    assert result.exit_code == 1
    out = result.output.splitlines()
    assert out[:5] == [f"lead_rules 1.0.0  sha256 {changed_sha}", f"  notebook   {notebook}",
                       "  branch     develop", f"  commit     {changed_commit}", out[4]]
    assert out[4].startswith("  registered 20") and out[4].endswith(" by run dev")
    assert out[5].startswith(f"  approved   sha256 {approved_sha} by ada at ")
    assert out[5].endswith(f"(branch main, commit {approved_commit[:12]})")
    assert out[6] == "  changes since the last approval:"
    assert out[7:9] == [f"    --- approved   git commit {approved_commit[:12]}:notebooks/lead_rules.ipynb",
                        f"    +++ registered {notebook}"]
    assert out[9].startswith("    @@ -") and out[9].endswith(" @@ cell 5 [score]")  # the cell, from 1
    assert "    -        points += 25" in out and "    +        points += 40" in out
    assert out[-1] == (f"error: lead_rules 1.0.0: the registered sha256 {changed_sha[:12]}… (branch develop) is not "
                       f"the one approved by ada ({approved_sha[:12]}…); after reviewing its changes, approve it "
                       f"with: mlsm-nb approve lead_rules 1.0.0 --sha256 {changed_sha} (or --notebook PATH)")
    assert db.models.find_one({"name": "lead_rules", "version": "1.0.0"})["approval"]["sha256"] == approved_sha

    result = cli("approve", "lead_lr", "1.0.0", "--mongo-uri", uri)  # registered from the commit checked out
    assert result.exit_code == 1 and f"  commit     {changed_commit}" in result.output.splitlines()
    assert [line for line in result.output.splitlines() if "artifact" in line][0].startswith(
        "    artifact lead_lr.coef.json changed (sha256 ")

    result = cli("approve", "lead_rules", "1.0.0", "--sha256", approved_sha, "--mongo-uri", uri)
    assert result.exit_code == 1
    assert f"--sha256 {approved_sha} is not the registered sha256 of lead_rules 1.0.0 ({changed_sha})" in result.output
    result = cli("approve", "lead_rules", "1.0.0", "--by", "bob", "--sha256", changed_sha[:12], "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    assert "    +        points += 40" in result.output.splitlines()
    assert result.output.splitlines()[-1].startswith(f"approved lead_rules 1.0.0 for sha256 {changed_sha} by bob at ")
    approval = db.models.find_one({"name": "lead_rules", "version": "1.0.0"})["approval"]
    assert approval["sha256"] == changed_sha and approval["registration"]["branch"] == "develop"
    assert approval["registration"]["git_commit"] == changed_commit


def test_approve_says_when_the_approved_cells_cannot_be_found_and_reads_run_directories(empty_database, tmp_path,
                                                                                         monkeypatch):
    uri, db = empty_database
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.chdir(tmp_path)  # not a git repository
    notebook = Path("notebooks") / "lead_rules.ipynb"
    leads = tmp_path / "leads.jsonl"
    save_leads(leads, 20, seed=2)
    assert run(uri, "notebooks", leads, "runs", "first").exit_code == 0  # the run directory keeps the notebooks
    approved_sha = lint_notebook(notebook).sha256()
    assert cli("approve", "lead_rules", "1.0.0", "--by", "ada", "--mongo-uri", uri).exit_code == 0
    edit_score_cell(notebook, "points += 25", "points += 40")
    changed_sha = lint_notebook(notebook).sha256()
    assert cli("extract", "notebooks", "--out", "bundle", "--mongo-uri", uri).exit_code == 0

    result = cli("approve", "lead_rules", "1.0.0", "--mongo-uri", uri)
    assert result.exit_code == 1
    assert "  branch     not recorded (registered without --branch)" in result.output
    assert "  commit     none (not in git when registered)" in result.output
    assert (f"    the production cells of the approved sha256 {approved_sha[:12]}… cannot be found: "
            f"{notebook} hashes to {changed_sha[:12]}… now; {notebook} was registered outside git (no commit); "
            "no run directory to look in (pass --run RUN_DIR)") in result.output.splitlines()

    result = cli("approve", "lead_rules", "1.0.0", "--run", "runs", "--mongo-uri", uri)
    assert result.exit_code == 1 and "--sha256" in result.output
    out = result.output.splitlines()
    assert "    --- approved   run directory runs/first (lead_rules@1.0.0.authored.ipynb)" in out
    assert "    -        points += 25" in out and "    +        points += 40" in out
    result = cli("approve", "lead_rules", "1.0.0", "--notebook", notebook, "--run", "runs", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    assert db.models.find_one({"name": "lead_rules", "version": "1.0.0"})["approval"]["sha256"] == changed_sha
