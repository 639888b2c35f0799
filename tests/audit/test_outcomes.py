import json
import random
from itertools import pairwise

import numpy as np
import pandas as pd
import pymongo
import pytest
from click.testing import CliRunner
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from conftest import NOTEBOOKS
from mlsm_nb.audit.database import AuditDatabase
from mlsm_nb.audit.metrics import champion_vs_challengers, drift
from mlsm_nb.audit.outcomes import OutcomeError, attach_outcomes, outcome_models
from mlsm_nb.cli import main
from mlsm_nb.core.stats import psi
from mlsm_nb.files import file_sha256, read_jsonl
from mlsm_nb.leads import converted, generate_leads
from mlsm_nb.report.site import write_report
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.mongo import MongoStore

COUNT = 300


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def leads(count=COUNT, seed=11):
    return list(generate_leads(count, seed=seed))


def write_outcomes_csv(path, records, label="converted", value=None):
    rng = random.Random(3)
    rows = [{"id": r["id"], label: value if value is not None else str(converted(r["data"], rng)).lower(),
             "observed_at": "2026-12-01T09:30:00+00:00"} for r in records]
    frame = pd.DataFrame(rows)
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


@pytest.fixture
def scored(tmp_path):
    records = leads()
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_notebooks([NOTEBOOKS], path, out=tmp_path / "runs", run_id="r", batch_size=100, engine="inprocess")
    return tmp_path / "runs" / "r", records


def result_hashes(run_dir):
    return {p.name: file_sha256(p) for p in (run_dir / "results").iterdir()}


def test_outcomes_attach_to_a_run_without_touching_scores(scored, tmp_path):
    run_dir, records = scored
    before = result_hashes(run_dir)
    csv = write_outcomes_csv(tmp_path / "outcomes.csv", records)
    result = cli("outcomes", csv, "--label", "converted", "--run", run_dir)
    assert result.exit_code == 0, result.output
    stored = list(read_jsonl(run_dir / "outcomes.jsonl"))
    positives = sum(o["value"] for o in stored)
    assert result.output == (f"attached {COUNT} converted outcome(s) ({positives} positive) "
                             f"to {run_dir / 'outcomes.jsonl'}\n")
    assert stored[0] == {"id": records[0]["id"], "label": "converted", "value": stored[0]["value"],
                         "observed_at": "2026-12-01T09:30:00+00:00", "source": "outcomes.csv"}
    assert result_hashes(run_dir) == before


def test_metrics_match_scikit_learn_and_pandas(scored, tmp_path):
    run_dir, records = scored
    attach_outcomes(write_outcomes_csv(tmp_path / "o.csv", records), "converted", run=run_dir)
    models = outcome_models(run_dir)
    assert set(models) == {"lead_rules@1.0.0", "lead_rules@2.0.0", "lead_lr@1.0.0", "champion@1.0.0"}
    outcome = {o["id"]: o["value"] for o in read_jsonl(run_dir / "outcomes.jsonl")}
    documents = [d for p in sorted((run_dir / "results").iterdir()) for d in read_jsonl(p)]
    for key, model in models.items():
        name, version = key.split("@")
        y = np.array([outcome[d["id"]] for d in documents])
        s = np.array([d["results"][name][version]["score"] for d in documents], float)
        metrics = model.metrics()
        assert metrics["records"] == COUNT and metrics["converted"] == y.sum()
        assert metrics["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        frame = pd.DataFrame({"s": s, "y": y})
        rows = metrics["deciles"]
        if frame["s"].is_unique:  # without ties, the equal deciles
            frame["decile"] = pd.qcut(frame["s"].rank(method="first", ascending=False), 10, labels=False) + 1
            expected = frame.groupby("decile")["y"].mean()
            assert [d["rate"] for d in rows] == pytest.approx(expected.tolist())
            assert [d["lift"] for d in rows] == pytest.approx((expected / y.mean()).tolist())
        assert all(a["score_min"] > b["score_max"] for a, b in pairwise(rows))  # no score in two deciles
        for d in rows:
            inside = frame[(frame["s"] >= d["score_min"]) & (frame["s"] <= d["score_max"])]
            assert d["records"] == len(inside) and d["rate"] == pytest.approx(inside["y"].mean())
        prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
        assert [c["observed_rate"] for c in metrics["calibration"]] == pytest.approx(prob_true.tolist())
        assert [c["mean_score"] for c in metrics["calibration"]] == pytest.approx(prob_pred.tolist())
    rows = champion_vs_challengers(models)
    assert {r["champion"] for r in rows} == {"champion@1.0.0"} and len(rows) == 3
    lr = next(r for r in rows if r["challenger"] == "lead_lr@1.0.0")
    assert lr["auc_difference"] == pytest.approx(lr["challenger_auc"] - lr["champion_auc"])
    assert lr["challenger_auc"] == pytest.approx(models["lead_lr@1.0.0"].metrics()["auc"])


def test_report_gets_an_outcomes_page(scored, tmp_path):
    run_dir, records = scored
    index = write_report(run_dir, tmp_path / "site")
    assert not (tmp_path / "site" / "outcomes.html").exists() and 'id="outcomes-link"' not in index.read_text()
    attach_outcomes(write_outcomes_csv(tmp_path / "o.csv", records), "converted", run=run_dir)
    index = write_report(run_dir, tmp_path / "site2")
    assert 'href="outcomes.html"' in index.read_text()
    page = (tmp_path / "site2" / "outcomes.html").read_text()
    auc = outcome_models(run_dir)["lead_lr@1.0.0"].metrics()["auc"]
    assert f"{auc:.4f}" in page and "Champion against challengers" in page and 'class="calibration"' in page


def test_the_outcomes_page_never_splits_a_score_across_deciles_and_heads_calibration(scored, tmp_path):
    from bs4 import BeautifulSoup

    run_dir, records = scored
    csv = write_outcomes_csv(tmp_path / "o.csv", records)
    assert cli("outcomes", csv, "--label", "converted", "--run", run_dir).exit_code == 0
    result = cli("report", run_dir, "--out", tmp_path / "site")
    assert result.exit_code == 0, result.output
    page = BeautifulSoup((tmp_path / "site" / "outcomes.html").read_text(), "html.parser")
    for key in ("lead_rules_1.0.0", "lead_lr_1.0.0", "champion_1.0.0"):
        assert page.find(id=f"{key}-calibration").name == "h3"
        assert page.find(id=f"{key}-calibration").find_next("table")["class"] == ["calibration"]
        table = page.find(id=f"{key}-deciles").find_next("table")
        ranges = [[float(x) for x in row.find_all("td")[-1].text.split(" – ")] for row in table.find_all("tr")[1:]]
        counts = [int(row.find_all("td")[1].text) for row in table.find_all("tr")[1:]]
        assert sum(counts) == COUNT
        assert all(low >= high for (low, _), (_, high) in pairwise(ranges)), (key, ranges)  # shown to 3 places
        if key == "lead_rules_1.0.0":  # points / 100: many ties, each value exact to 3 places
            assert all(low > high for (low, _), (_, high) in pairwise(ranges)), ranges  # a score in one row only
            assert len(set(counts)) > 1  # so deciles of unequal sizes


@pytest.mark.parametrize("rows, message", [
    ([{"id": "lead-11-0000001", "converted": "maybe"}],
     "line 1, id 'lead-11-0000001': label converted is 'maybe'; labels must be 0/1 or true/false"),
    ([{"id": "lead-11-0000001", "converted": 2}], "label converted is 2; labels must be 0/1 or true/false"),
    ([{"id": "lead-11-0000001", "converted": None}], "label converted is empty; labels must be 0/1 or true/false"),
    ([{"id": "lead-11-0000001", "converted": 1}, {"id": "lead-11-0000001", "converted": 0}],
     "line 2, id 'lead-11-0000001': duplicate outcome (line 1 has the same id)"),
    ([{"id": "lead-11-0000001", "won": 1}], "no label column 'converted' (columns: id, won)"),
    ([{"id": "lead-11-0000001", "converted": 1}, {"id": "ghost-1", "converted": 0}, {"id": "ghost-2", "converted": 1}],
     "2 id(s) were never scored in run r: 'ghost-1', 'ghost-2'; nothing attached"),
    ([{"id": "lead-11-0000001", "converted": 1, "observed_at": "last tuesday"}],
     "observed_at 'last tuesday' is not an ISO date or time"),
])
def test_bad_outcomes_are_one_line_and_store_nothing(scored, tmp_path, rows, message):
    run_dir, _ = scored
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("outcomes", path, "--label", "converted", "--run", run_dir)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (run_dir / "outcomes.jsonl").exists()


@pytest.mark.parametrize("name, text, shown", [
    ("bad.jsonl", '{"id": "lead-11-0000001", "converted": 1.0}\n', "1.0"),
    ("bad.jsonl", '{"id": "lead-11-0000001", "converted": 1e0}\n', "1.0"),
    ("bad.jsonl", '{"id": "lead-11-0000001", "converted": "1e0"}\n', "'1e0'"),
    ("bad.csv", "id,converted\nlead-11-0000001,1.0\n", "'1.0'"),
])
def test_a_label_that_only_equals_1_is_refused(scored, tmp_path, name, text, shown):
    run_dir, _ = scored
    path = tmp_path / name
    path.write_text(text)
    result = cli("outcomes", path, "--label", "converted", "--run", run_dir)
    assert result.exit_code == 1
    assert result.output == (f"error: {path}: line {2 if name.endswith('.csv') else 1}, id 'lead-11-0000001': "
                             f"label converted is {shown}; labels must be 0/1 or true/false\n")
    assert not (run_dir / "outcomes.jsonl").exists()


def test_labels_are_0_1_true_false_in_every_format(scored, tmp_path):
    from mlsm_nb.core.labels import label_value

    run_dir, records = scored
    ids = [r["id"] for r in records[:6]]
    path = tmp_path / "good.jsonl"
    path.write_text("".join(json.dumps({"id": i, "converted": v}) + "\n"
                            for i, v in zip(ids, [1, 0, True, False, " TRUE ", "0"], strict=True)))
    result = cli("outcomes", path, "--label", "converted", "--run", run_dir)
    assert result.exit_code == 0, result.output
    assert [o["value"] for o in read_jsonl(run_dir / "outcomes.jsonl")] == [1, 0, 1, 0, 1, 0]
    assert [label_value(v) for v in (np.int64(1), np.bool_(False), 2, 1.0, "1.0", "yes", None)] == [
        1, 0, None, None, None, None, None]


def test_outcomes_need_one_place(scored, tmp_path):
    result = cli("outcomes", tmp_path / "o.csv", "--label", "converted")
    assert result.exit_code == 2 and "--run RUN_DIR or --mongo-uri URI (one of them)" in result.output


def test_duplicate_outcomes_across_files_are_refused(scored, tmp_path):
    run_dir, records = scored
    attach_outcomes(write_outcomes_csv(tmp_path / "a.csv", records[:10]), "converted", run=run_dir)
    before = (run_dir / "outcomes.jsonl").read_bytes()
    with pytest.raises(OutcomeError, match=r"1 id\(s\) already have a converted outcome in run r: 'lead-11-0000009'"):
        attach_outcomes(write_outcomes_csv(tmp_path / "b.csv", records[9:20]), "converted", run=run_dir)
    assert (run_dir / "outcomes.jsonl").read_bytes() == before
    attach_outcomes(write_outcomes_csv(tmp_path / "c.parquet", records[10:20], value="1"), "converted", run=run_dir)
    stored = list(read_jsonl(run_dir / "outcomes.jsonl"))
    assert len(stored) == 20 and stored[-1]["value"] == 1 and stored[-1]["source"] == "c.parquet"


@pytest.mark.slow
def test_outcomes_in_mongodb_and_drift_across_runs(mongo_uri, tmp_path):
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("outcomes_test")
    store = MongoStore.from_database(client["outcomes_test"])
    records = leads(200)
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    for run_id in ("m1", "m2"):
        run_notebooks([NOTEBOOKS], path, out=tmp_path / "runs", run_id=run_id, batch_size=100, engine="inprocess",
                      sinks=[store])
    uri = f"{mongo_uri}/outcomes_test"
    csv = write_outcomes_csv(tmp_path / "o.csv", records)
    result = cli("outcomes", csv, "--label", "converted", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    database = AuditDatabase(store)
    assert client["outcomes_test"].outcomes.count_documents({}) == 200
    assert client["outcomes_test"].results.count_documents({"_current": 0}) == 200  # scores untouched
    again = cli("outcomes", csv, "--label", "converted", "--mongo-uri", uri)
    assert again.exit_code == 1 and "200 id(s) already have a converted outcome in MongoDB" in again.output
    ghost = tmp_path / "ghost.csv"
    pd.DataFrame([{"id": "ghost", "won": 1}]).to_csv(ghost, index=False)
    result = cli("outcomes", ghost, "--label", "won", "--mongo-uri", uri)
    assert "1 id(s) were never scored in MongoDB (outcomes_test.results): 'ghost'" in result.output
    assert client["outcomes_test"].outcomes.count_documents({}) == 200
    models = outcome_models(tmp_path / "runs" / "m2", database)
    y = [o["value"] for o in sorted(database.all_outcomes(), key=lambda o: o["id"])]
    live = sorted(client["outcomes_test"].results.find({"_current": 0}), key=lambda d: d["id"])
    s = [d["results"]["lead_lr"]["1.0.0"]["score"] for d in live]
    assert models["lead_lr@1.0.0"].metrics()["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)

    # a third run whose lead_rules 1.0.0 scores all shift up: drift is flagged for it alone
    shifted = [{**d, "run_id": "m3", "results": {**d["results"], "lead_rules": {
        "1.0.0": {**d["results"]["lead_rules"]["1.0.0"],
                  "score": d["results"]["lead_rules"]["1.0.0"]["score"] * 0.3 + 0.7}}}}
        for d in live]
    m3 = {"run_id": "m3", "started_at": "2099-01-01T00:00:00+00:00", "status": "succeeded"}
    store.open_run(m3)
    store.write_batch("m3", 0, [{k: v for k, v in d.items() if k not in ("_id", "_current",
                                                                         "run_id")} for d in shifted])
    store.finish_run(m3)
    runs = database.recent_runs(10)
    assert [r["_id"] for r in runs] == ["m1", "m2", "m3"]
    rows = {row["model"]: row for row in drift(runs, database.scores_of_runs(["m1", "m2", "m3"]))}
    first = [d["results"]["lead_rules"]["1.0.0"]["score"]
             for d in client["outcomes_test"].results.find({"run_id": "m1"})]
    third = [d["results"]["lead_rules"]["1.0.0"]["score"] for d in shifted]
    assert rows["lead_rules@1.0.0"]["latest_psi"] == pytest.approx(psi(first, third))
    assert rows["lead_rules@1.0.0"]["drift"] and not rows["lead_lr@1.0.0"]["drift"]
    result = cli("report", tmp_path / "runs" / "m2", "--out", tmp_path / "site", "--mongo-uri", uri)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "site" / "outcomes.html").read_text()
    assert "Drift over the last 10 runs (MongoDB)" in page and "<b>drift</b>" in page
    assert (tmp_path / "site" / "img" / "drift.png").stat().st_size > 1000
    client.drop_database("outcomes_test")


@pytest.mark.slow
def test_an_insert_that_fails_midway_leaves_nothing(mongo_db):
    from mlsm_nb.store.base import StoreError

    database = AuditDatabase(MongoStore.from_database(mongo_db))
    outcome = {"id": "b", "label": "won", "value": 1, "observed_at": "2026-12-01T00:00:00+00:00", "source": "x"}
    database.insert_outcomes([outcome], import_id="first")
    batch = [{**outcome, "id": "a"}, outcome, {**outcome, "id": "c"}]  # "b" collides (a concurrent import)
    with pytest.raises(StoreError, match="MongoDB refused the outcomes \\(none stored\\)"):
        database.insert_outcomes(batch, import_id="second")
    assert sorted(d["id"] for d in mongo_db.outcomes.find()) == ["b"]
