"""`mlsm-nb compare`: the example notebooks' real runs with outcomes, the evidence kept, and the
approval policy that demands it (against the real MongoDB wire server)."""

import json
import random
import shutil

import nbformat
import numpy as np
import pymongo
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from conftest import NOTEBOOKS
from mlsm_nb.audit.evidence import EVIDENCE_FILE, SEED, Thresholds, calibration_error
from mlsm_nb.audit.metrics import calibration, deciles
from mlsm_nb.audit.outcomes import attach_outcomes
from mlsm_nb.cli import main
from mlsm_nb.files import read_jsonl
from mlsm_nb.leads import converted, generate_leads
from mlsm_nb.notebook import contract
from mlsm_nb.notebook.contract import lint_notebook, without_status
from mlsm_nb.run.orchestrate import run_notebooks

CHAMPION, CHALLENGER = "lead_rules@1.0.0", "lead_rules@2.0.0"


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def outcomes_file(path, records, seed=3):
    rng = random.Random(seed)
    path.write_text("".join(json.dumps({"id": r["id"], "converted": int(converted(r["data"], rng))}) + "\n"
                            for r in records))
    return path


def scored_run(tmp_path, count, run_id="r", labelled=None):
    """A real run of the example notebooks over `count` leads, with outcomes for the first `labelled`."""
    records = list(generate_leads(count, seed=11))
    path = tmp_path / f"leads-{run_id}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_notebooks([NOTEBOOKS], path, out=tmp_path / "runs", run_id=run_id, batch_size=250, engine="inprocess")
    run_dir = tmp_path / "runs" / run_id
    attach_outcomes(outcomes_file(tmp_path / f"o-{run_id}.jsonl", records[:labelled or count]), "converted",
                    run=run_dir)
    return run_dir


@pytest.fixture(scope="module")
def run_1000(tmp_path_factory):
    return scored_run(tmp_path_factory.mktemp("compare"), 1000)


def shared_arrays(run_dir):
    outcome = {o["id"]: o["value"] for o in read_jsonl(run_dir / "outcomes.jsonl")}
    documents = [d for p in sorted((run_dir / "results").iterdir()) for d in read_jsonl(p)]
    y = np.array([outcome[d["id"]] for d in documents])
    a = np.array([d["results"]["lead_rules"]["1.0.0"]["score"] for d in documents], float)
    b = np.array([d["results"]["lead_rules"]["2.0.0"]["score"] for d in documents], float)
    return a, b, y


def test_compare_a_run_directory_writes_evidence_beside_it(run_1000):
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000, "--by", "ada")
    assert result.exit_code == 0, result.output
    kept = list(read_jsonl(run_1000 / EVIDENCE_FILE))
    evidence = kept[-1]
    a, b, y = shared_arrays(run_1000)
    assert evidence["records"] == 1000 and evidence["positives"] == y.sum() and evidence["by"] == "ada"
    assert evidence["auc"]["champion"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert evidence["auc"]["challenger"] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert evidence["auc"]["difference"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a), abs=1e-12)
    assert evidence["top_decile_lift"]["challenger"] == pytest.approx(deciles(b, y)[0]["lift"])
    assert evidence["calibration_error"]["champion"] == pytest.approx(
        sum(c["records"] * abs(c["mean_score"] - c["observed_rate"]) for c in calibration(a, y)) / len(y))
    for figure in ("auc", "top_decile_lift", "calibration_error"):
        for side in ("champion", "challenger", "difference"):
            low, high = evidence[figure][f"{side}_ci"]
            assert low <= evidence[figure][side] <= high, (figure, side)
    assert [d["challenger_lift"] for d in evidence["deciles"]] == pytest.approx([d["lift"] for d in deciles(b, y)])
    assert [d["champion_lift"] for d in evidence["deciles"]][:9] == pytest.approx([d["lift"] for d in deciles(a, y)])
    assert evidence["challenger"] == {"name": "lead_rules", "version": "2.0.0", "sha256_without_status":
                                      lint_notebook(NOTEBOOKS / "lead_rules_v2.ipynb").sha256_without_status()}
    assert evidence["method"] == {"intervals": "paired bootstrap (percentile)", "resamples": 1000, "seed": SEED,
                                  "confidence": 0.95}
    assert evidence["passed"] and [c["check"] for c in evidence["checks"]] == [
        "records", "absolute improvement", "relative improvement", "not chance"]
    assert evidence["auc"]["difference_ci"][0] > 0
    lines = result.output.splitlines()
    assert lines[0] == (f"{CHALLENGER} against {CHAMPION} on 1000 shared labelled records ({y.sum()} positive) in "
                        f"run {run_1000.name}")
    assert lines[-1] == f"passed: evidence {evidence['id']} written to {run_1000 / EVIDENCE_FILE}"
    again = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000)  # a fixed seed: the same intervals
    second = list(read_jsonl(run_1000 / EVIDENCE_FILE))[-1]
    assert again.exit_code == 0 and second["id"] != evidence["id"]
    assert second["auc"] == evidence["auc"] and second["calibration_error"] == evidence["calibration_error"]


def test_compare_thresholds_decide_and_the_evidence_says_why(run_1000):
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000, "--min-improvement", "0.2")
    assert result.exit_code == 1, result.output
    evidence = list(read_jsonl(run_1000 / EVIDENCE_FILE))[-1]
    assert not evidence["passed"] and evidence["thresholds"]["min_absolute"] == 0.2
    failed = [c for c in evidence["checks"] if not c["passed"]]
    assert [c["check"] for c in failed] == ["absolute improvement"]
    assert f"FAIL absolute improvement: AUC {evidence['auc']['difference']:+.4f} (at least +0.2000)" in result.output
    assert result.output.splitlines()[-1].startswith("did not pass: evidence ")
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000, "--min-relative-improvement", "0.1")
    assert result.exit_code == 1 and "FAIL relative improvement" in result.output
    # the challenger worse than the champion: no improvement, and its interval is not above 0
    result = cli("compare", CHALLENGER, CHAMPION, "--run", run_1000)
    assert result.exit_code == 1 and "FAIL not chance" in result.output and "FAIL absolute improvement" in result.output


def test_compare_bad_input(run_1000, tmp_path):
    before = len(list(read_jsonl(run_1000 / EVIDENCE_FILE))) if (run_1000 / EVIDENCE_FILE).exists() else 0
    result = cli("compare", CHAMPION, CHAMPION, "--run", run_1000)
    assert result.exit_code == 2
    assert result.output == f"error: the champion and the challenger are both {CHAMPION}: compare two versions\n"
    result = cli("compare", CHAMPION, "lead_rules", "--run", run_1000)
    assert result.exit_code == 2 and "'lead_rules' must name a model version as NAME@VERSION" in result.output
    result = cli("compare", CHAMPION, "lead_rules@9.9.9", "--run", run_1000)
    assert result.exit_code == 1
    assert result.output == (f"error: lead_rules@9.9.9: no scores with outcomes in run {run_1000.name}; models with "
                             "outcomes there: champion@1.0.0, lead_lr@1.0.0, lead_rules@1.0.0, lead_rules@2.0.0\n")
    # thresholds no challenger can meet: said before anything is written
    a, _, y = shared_arrays(run_1000)
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000, "--min-improvement", "0.3")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: the thresholds cannot be met: the champion's AUC is "
                                    f"{roc_auc_score(y, a):.4f}, so the challenger would need an AUC of "
                                    f"{roc_auc_score(y, a) + 0.3:.4f} or more")
    for option, value, says in (("--min-records", 100, "a comparison needs at least 200 shared labelled records"),
                                ("--confidence", 1.5, "--confidence 1.5 must be at least 0.5 and below 1"),
                                ("--min-improvement", -0.1, "--min-improvement -0.1 must be at least 0"),
                                ("--min-relative-improvement", -1, "must be at least 0")):
        result = cli("compare", CHAMPION, CHALLENGER, "--run", run_1000, option, value)
        assert result.exit_code == 2 and says in result.output, (option, result.output)
    result = cli("compare", CHAMPION, CHALLENGER)
    assert result.exit_code == 2 and "--run RUN_DIR or --mongo-uri URI" in result.output
    after = len(list(read_jsonl(run_1000 / EVIDENCE_FILE))) if (run_1000 / EVIDENCE_FILE).exists() else 0
    assert after == before  # bad input writes no evidence


def test_too_few_shared_labelled_records_is_said_and_does_not_pass(tmp_path):
    run_dir = scored_run(tmp_path, 400, "few", labelled=150)
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_dir)
    assert result.exit_code == 1
    assert "FAIL records: 150 shared labelled record(s); a comparison needs at least 200" in result.output
    evidence = list(read_jsonl(run_dir / EVIDENCE_FILE))[-1]
    assert not evidence["passed"] and evidence["records"] == 150 and "auc" not in evidence


def test_outcomes_of_several_labels_need_one_named(tmp_path):
    run_dir = scored_run(tmp_path, 300, "two")
    records = list(generate_leads(300, seed=11))
    paid = tmp_path / "paid.jsonl"
    paid.write_text("".join(json.dumps({"id": r["id"], "paid": i % 2}) + "\n" for i, r in enumerate(records)))
    attach_outcomes(paid, "paid", run=run_dir)
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_dir)
    assert result.exit_code == 2
    assert result.output == ("error: the outcomes in run two give several labels (converted, paid): say which to "
                             "compare on with --label\n")
    result = cli("compare", CHAMPION, CHALLENGER, "--run", run_dir, "--label", "converted")
    assert result.exit_code in (0, 1) and list(read_jsonl(run_dir / EVIDENCE_FILE))[-1]["label"] == "converted"
    assert list(read_jsonl(run_dir / EVIDENCE_FILE))[-1]["positives"] == sum(
        o["value"] for o in read_jsonl(run_dir / "outcomes.jsonl") if o["label"] == "converted")


def test_the_hash_without_status_is_the_same_for_the_draft_and_the_active_notebook(tmp_path):
    shutil.copytree(NOTEBOOKS, tmp_path / "nb")
    path = tmp_path / "nb" / "lead_rules_v2.ipynb"
    draft = lint_notebook(path)
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "version" in c.metadata.get("tags", []))
    cell.source = cell.source.replace('status = "draft"', 'status = (\n    "active"\n)')
    nbformat.write(nb, path)
    active = lint_notebook(path)
    assert active.status == "active" and active.sha256() != draft.sha256()
    assert active.sha256_without_status() == draft.sha256_without_status()
    cell.source = cell.source.replace('version = "2.0.0"', 'version = "2.0.1"')
    nbformat.write(nb, path)
    assert lint_notebook(path).sha256_without_status() != draft.sha256_without_status()
    assert without_status('name = "x"\nstatus = "draft"\nversion = "1"') == 'name = "x"\nversion = "1"'


def test_calibration_error_is_none_for_scores_that_are_not_probabilities():
    assert calibration_error([1.0, 2.0], [0, 1]) is None
    assert calibration_error([0.2, 0.8], [0, 1]) == pytest.approx(0.2)
    assert Thresholds(min_absolute=0.05).reachable(0.96) and Thresholds().reachable(0.5) is None


# -- MongoDB: evidence in the registry, the policy that demands it -----------------------------------------

@pytest.fixture
def database(mongo_uri, tmp_path):
    """The example notebooks with lead_rules 2.0.0 a draft, registered by a real run into MongoDB over 1000
    leads with outcomes attached there."""
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("evidence_test")
    uri = f"{mongo_uri}/evidence_test"
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    records = list(generate_leads(1000, seed=11))
    leads = tmp_path / "leads.jsonl"
    leads.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = cli("run", notebooks, "--records", leads, "--out", tmp_path / "runs", "--run-id", "scored",
                 "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    assert result.exit_code == 0, result.output
    result = cli("outcomes", outcomes_file(tmp_path / "o.jsonl", records), "--label", "converted", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    yield uri, client["evidence_test"], notebooks, leads
    client.drop_database("evidence_test")


def make_active(notebooks, name="lead_rules_v2.ipynb"):
    path = notebooks / name
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "version" in c.metadata.get("tags", []))
    cell.source = cell.source.replace('status = "draft"', 'status = "active"')
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_evidence_in_the_registry_and_approvals_that_must_cite_it(database, tmp_path, monkeypatch):
    uri, db, notebooks, leads = database
    for name, version in (("champion", "1.0.0"), ("lead_lr", "1.0.0"), ("lead_rules", "1.0.0")):
        assert cli("approve", name, version, "--mongo-uri", uri, "--waive-evidence", "first version").exit_code == 0
    result = cli("approve", "--require-evidence", "--mongo-uri", uri)
    assert result.exit_code == 0 and result.output.startswith("evidence is now required")
    v2 = make_active(notebooks)
    code = lint_notebook(v2).sha256_without_status()
    result = cli("extract", notebooks, "--out", tmp_path / "bundle", "--mongo-uri", uri)  # registers, then refuses
    assert result.exit_code == 1
    assert result.output == (f"error: {v2}: lead_rules 2.0.0 is active but not approved, and the registry requires "
                             "approvals citing evidence: mlsm-nb approve lead_rules 2.0.0, or set its status to draft "
                             f"(the models are registered; no bundle was written to {tmp_path / 'bundle'})\n")
    assert not (tmp_path / "bundle").exists()
    result = cli("approve", "lead_rules", "2.0.0", "--mongo-uri", uri, "--notebook", v2)  # no comparison yet
    assert result.exit_code == 1
    assert f"error: lead_rules 2.0.0: no passing comparison of its code (sha256 without status {code[:12]}…), " \
           "and the registry requires evidence: compare it first (mlsm-nb compare CHAMPION lead_rules@2.0.0 " \
           "--mongo-uri ...), or approve it with --waive-evidence REASON" in result.output
    assert "approval" not in db.models.find_one({"name": "lead_rules", "version": "2.0.0"})

    result = cli("compare", CHAMPION, CHALLENGER, "--mongo-uri", uri, "--by", "ada")
    assert result.exit_code == 0, result.output
    evidence = db.evidence.find_one({"challenger.name": "lead_rules"})
    assert evidence["passed"] and evidence["challenger"]["sha256_without_status"] == code  # the draft's = active's
    assert (f"passed: evidence {evidence['_id']} written to the model registry of MongoDB (evidence_test.evidence)"
            in result.output)
    read, hashed = [], []  # the notebook and its artifacts are read once: what is checked is what its evidence
    artifact_bytes = contract.NotebookSpec.artifact_bytes  # is looked up by
    monkeypatch.setattr(contract, "lint_notebook", lambda path, *a: read.append(path) or lint_notebook(path, *a))
    monkeypatch.setattr(contract.NotebookSpec, "artifact_bytes", lambda spec: hashed.append(1) or artifact_bytes(spec))
    result = cli("approve", "lead_rules", "2.0.0", "--mongo-uri", uri, "--notebook", v2, "--by", "bob")
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    assert read == [str(v2)] and len(hashed) == 1
    cited = db.models.find_one({"name": "lead_rules", "version": "2.0.0"})["approval"]["evidence"]
    assert cited["id"] == evidence["_id"] and cited["passed"] and cited["sha256_without_status"] == code
    assert f"  evidence   {evidence['_id']} (against {CHAMPION}, AUC {evidence['auc']['difference']:+.4f} on " \
           "1000 records, passed)" in result.output
    result = cli("extract", notebooks, "--out", tmp_path / "bundle", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    result = cli("run", notebooks, "--records", leads, "--out", tmp_path / "runs", "--run-id", "promoted",
                 "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    assert result.exit_code == 0, result.output

    # an approval recorded without evidence (evidence optional then) is refused once evidence is required
    assert cli("approve", "--no-require-evidence", "--mongo-uri", uri).exit_code == 0
    db.evidence.delete_many({})
    assert cli("approve", "lead_rules", "2.0.0", "--mongo-uri", uri, "--notebook", v2).exit_code == 0
    assert "evidence" not in db.models.find_one({"name": "lead_rules", "version": "2.0.0"})["approval"]
    assert cli("approve", "--require-evidence", "--mongo-uri", uri).exit_code == 0
    result = cli("run", notebooks, "--records", leads, "--out", tmp_path / "runs", "--run-id", "refused",
                 "--engine", "inprocess", "--mongo-uri", uri, "--no-progress")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {v2}: lead_rules 2.0.0: its approval by ")
    assert "cites no comparison, and the registry requires evidence (an approval citing a passing comparison): " \
           "compare it with its champion (mlsm-nb compare CHAMPION lead_rules@2.0.0 --mongo-uri ...)" in result.output
    assert not (tmp_path / "runs" / "refused").exists()


@pytest.mark.slow
def test_report_shows_the_evidence_beside_the_approval(database, tmp_path):
    uri, db, notebooks, _ = database
    assert cli("compare", CHAMPION, CHALLENGER, "--mongo-uri", uri).exit_code == 0
    v2 = make_active(notebooks)
    assert cli("extract", notebooks, "--out", tmp_path / "bundle", "--mongo-uri", uri).exit_code == 0
    assert cli("approve", "lead_rules", "2.0.0", "--mongo-uri", uri, "--notebook", v2, "--by", "bob").exit_code == 0
    assert cli("report", tmp_path / "runs" / "scored", "--mongo-uri", uri).exit_code == 0
    page = (tmp_path / "runs" / "scored" / "report" / "models" / "lead_rules_2.0.0.html").read_text()
    evidence = db.evidence.find_one()
    assert evidence["_id"] in page and "by bob at" in page and "passed" in page
    assert f"{evidence['auc']['difference']:+.4f}" in page
