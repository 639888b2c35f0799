"""`mlsm-nb monitor` on real runs of the example notebooks, with outcomes attached as `mlsm-nb outcomes` does."""

import json

import pandas as pd
import pymongo
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from labelled_runs import outcomes_file, score_run
from mlsm_nb.audit.database import AuditDatabase
from mlsm_nb.audit.monitor import DEFAULTS, MONITOR_FILE, ThresholdsError, load_thresholds
from mlsm_nb.audit.outcomes import attach_outcomes
from mlsm_nb.cli import main
from mlsm_nb.core.stats import psi
from mlsm_nb.files import read_jsonl
from mlsm_nb.store.mongo import MongoStore

COUNT = 1000
ACTIVE = ["lead_lr@1.0.0", "lead_rules@1.0.0", "champion@1.0.0"]  # lead_rules 2.0.0 is a draft


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture
def two_runs(tmp_path):
    """A reference run and the run after it, both with outcomes."""
    first, first_records = score_run(tmp_path, "r1", seed=1)
    attach_outcomes(outcomes_file(tmp_path, "o1", first_records), "converted", run=first)
    second, second_records = score_run(tmp_path, "r2", seed=2)
    return first, second, second_records


def checks(found):
    return {f"{m['model']}@{m['version']}": {c["check"]: c for c in m["checks"]} for m in found["models"]}


def scores_of(run_dir, name, version):
    return [d["results"][name][version]["score"] for d in read_jsonl_dir(run_dir)]


def read_jsonl_dir(run_dir):
    return [d for p in sorted((run_dir / "results").iterdir()) for d in read_jsonl(p)]


def test_a_healthy_run_passes_every_check_and_the_figures_are_the_known_ones(two_runs, tmp_path):
    first, second, records = two_runs
    attach_outcomes(outcomes_file(tmp_path, "o2", records), "converted", run=second)
    result = cli("monitor", second)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["monitored 3 active model version(s) of run r2 against run r1: "
                                          "12 check(s), 0 breach(es), 0 not checked"]
    found = json.loads((second / MONITOR_FILE).read_text())
    assert found["run_id"] == "r2" and found["reference"] == "r1" and found["window"] == 1000
    assert list(checks(found)) == ACTIVE
    lr = checks(found)["lead_lr@1.0.0"]
    assert {c["status"] for c in lr.values()} == {"ok"}
    assert lr["psi"]["value"] == pytest.approx(psi(scores_of(first, "lead_lr", "1.0.0"),
                                                   scores_of(second, "lead_lr", "1.0.0")))
    labels = {o["id"]: o["value"] for o in read_jsonl(first / "outcomes.jsonl")}
    reference_auc = roc_auc_score([labels[d["id"]] for d in read_jsonl_dir(first)],
                                  scores_of(first, "lead_lr", "1.0.0"))
    assert lr["auc"]["reference"] == pytest.approx(reference_auc)
    assert lr["auc"]["threshold"] == pytest.approx(reference_auc - DEFAULTS["max_auc_drop"])
    assert lr["auc"]["records"] == COUNT and lr["error_rate"]["value"] == 0


def test_a_decayed_model_breaches_and_exits_1(two_runs, tmp_path):
    first, second, records = two_runs
    attach_outcomes(outcomes_file(tmp_path, "o2", records, flip=True), "converted", run=second)
    result = cli("monitor", second)
    assert result.exit_code == 1, result.output
    breaches = [line for line in result.output.splitlines() if line.startswith("breach: ")]
    assert len(breaches) == 6  # auc and conversion of each active model version
    assert any(line.startswith("breach: lead_lr@1.0.0 auc ") and "under the minimum" in line
               and "(reference " in line and "in run r1)" in line for line in breaches)
    found = checks(json.loads((second / MONITOR_FILE).read_text()))
    lr = found["lead_lr@1.0.0"]
    assert lr["auc"]["status"] == "breach" and lr["auc"]["value"] < 0.5 < lr["auc"]["reference"]
    assert lr["conversion"]["status"] == "breach" and lr["psi"]["status"] == "ok"  # same population, other world


def test_the_report_shows_what_monitor_found(two_runs, tmp_path):
    from bs4 import BeautifulSoup

    from mlsm_nb.report.site import write_report

    _, second, records = two_runs
    index = write_report(second, tmp_path / "before")
    assert 'id="monitor"' not in index.read_text()  # never monitored: no section
    attach_outcomes(outcomes_file(tmp_path, "o2", records, flip=True), "converted", run=second)
    assert cli("monitor", second).exit_code == 1
    soup = BeautifulSoup(write_report(second, tmp_path / "site").read_text(), "html.parser")
    assert soup.select_one("#monitor-verdict").text.split()[:2] == ["6", "breach(es),"]
    rows = [[td.text.strip() for td in tr.find_all("td")] for tr in soup.select("#monitor-checks tr.drift")]
    found = checks(json.loads((second / MONITOR_FILE).read_text()))["lead_lr@1.0.0"]["auc"]
    assert ["lead_lr@1.0.0", "auc", f"{found['value']:.4f}", f"≥ {found['threshold']:.4f}",
            f"{found['reference']:.4f}", "1000", "breach"] in rows
    assert len(rows) == 6


def test_the_window_takes_the_latest_labelled_scores(two_runs, tmp_path):
    """Outcomes of the first half flipped, observed first: a window of the latest 500 sees only good ones."""
    first, second, records = two_runs
    early = outcomes_file(tmp_path, "early", records[:500], flip=True)
    late = outcomes_file(tmp_path, "late", records[500:])
    frame = pd.read_csv(late)
    frame["observed_at"] = "2026-12-02T00:00:00+00:00"
    frame.to_csv(late, index=False)
    attach_outcomes(early, "converted", run=second)
    attach_outcomes(late, "converted", run=second)
    assert cli("monitor", second).exit_code == 1  # the whole thousand: half flipped
    result = cli("monitor", second, "--window", 500)
    assert result.exit_code == 0, result.output
    lr = checks(json.loads((second / MONITOR_FILE).read_text()))["lead_lr@1.0.0"]
    labels = {o["id"]: o["value"] for o in read_jsonl(second / "outcomes.jsonl")}
    documents = read_jsonl_dir(second)[500:]
    assert lr["auc"]["records"] == 500
    assert lr["auc"]["value"] == pytest.approx(roc_auc_score([labels[d["id"]] for d in documents],
                                                             [d["results"]["lead_lr"]["1.0.0"]["score"]
                                                              for d in documents]))


def test_too_few_labelled_scores_are_said_and_neither_pass_nor_breach(two_runs, tmp_path):
    first, second, records = two_runs
    attach_outcomes(outcomes_file(tmp_path, "o2", records[:150], flip=True), "converted", run=second)
    result = cli("monitor", second)
    assert result.exit_code == 0, result.output
    assert "warning: not checked: lead_lr@1.0.0 auc: 150 labelled score(s), fewer than min_labelled 200" \
        in result.output
    lr = checks(json.loads((second / MONITOR_FILE).read_text()))["lead_lr@1.0.0"]
    assert lr["auc"]["status"] == lr["conversion"]["status"] == "not checked" and lr["auc"]["value"] is None
    assert lr["psi"]["status"] == "ok"
    # a thresholds file that asks for fewer makes them count: the flipped labels breach
    limits = tmp_path / "t.toml"
    limits.write_text('["lead_lr@1.0.0"]\nmin_labelled = 100\n')
    result = cli("monitor", second, "--thresholds", limits)
    assert result.exit_code == 1 and "breach: lead_lr@1.0.0 auc " in result.output
    assert "breach: lead_rules@1.0.0" not in result.output  # its own table: the defaults


def test_a_run_without_outcomes_and_a_first_run_are_not_checked(two_runs):
    first, second, _ = two_runs
    result = cli("monitor", second)
    assert result.exit_code == 0, result.output
    assert "not checked: champion@1.0.0 auc: no outcomes for this run's scores" in result.output
    result = cli("monitor", first)  # nothing started before it
    assert result.exit_code == 0, result.output
    assert "without a reference run" in result.output
    assert "warning: not checked: PSI, AUC and conversion of every model: no reference run (none started before " \
           "run r1 where it is; name one with --reference)" in result.output
    assert "lead_lr@1.0.0 psi: no reference run" not in result.output  # said once, not per check
    assert checks(json.loads((first / MONITOR_FILE).read_text()))["lead_lr@1.0.0"]["error_rate"]["status"] == "ok"


def test_a_reference_can_be_named_and_psi_breaches_over_its_threshold(two_runs, tmp_path):
    first, second, _ = two_runs
    limits = tmp_path / "t.toml"
    limits.write_text("[defaults]\nmax_psi = 0.000001\n\n['lead_lr@1.0.0']\nmax_psi = 5\n")
    result = cli("monitor", first, "--reference", "r2", "--thresholds", limits)
    assert result.exit_code == 1, result.output
    assert "breach: lead_rules@1.0.0 psi " in result.output and "lead_lr@1.0.0 psi" not in result.output
    found = json.loads((first / MONITOR_FILE).read_text())
    assert found["reference"] == "r2" and checks(found)["lead_lr@1.0.0"]["psi"]["threshold"] == 5
    result = cli("monitor", first, "--reference", "nope")
    assert result.exit_code == 2 and "--reference nope: no run directory of that run id" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ("[defaults\n", "not a TOML file"),
    ('["lead_lr@1.0.0"]\nmax_auc = 0.1\n', "[lead_lr@1.0.0]: unknown threshold 'max_auc'"),
    ("[lead_lr]\nmax_psi = 0.1\n", "table [lead_lr] must be named name@version"),
    ("max_psi = 0.1\n", "max_psi = 0.1 is outside any table: put it under [defaults]"),
    ('["lead_lr@1.0.0"]\nmax_psi = -0.1\n', "[lead_lr@1.0.0]: max_psi = -0.1 can never be met"),
    ("[defaults]\nmax_error_rate = 2\n", "[defaults]: max_error_rate = 2 can never be met; it must be between 0"),
    ("[defaults]\nmin_labelled = 5000\n", "min_labelled = 5000 is over --window 1000"),
    ('[defaults]\nmax_psi = "high"\n', "max_psi = 'high' must be a number"),
    ("[defaults]\nmin_labelled = 2.5\n", "min_labelled = 2.5 must be a whole number"),
])
def test_a_bad_thresholds_file_is_a_usage_error_naming_file_and_key(two_runs, tmp_path, text, message):
    _, second, _ = two_runs
    limits = tmp_path / "bad.toml"
    limits.write_text(text)
    result = cli("monitor", second, "--thresholds", limits)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {limits}") and message in result.output
    assert not (second / MONITOR_FILE).exists()


def test_thresholds_load_with_defaults_beneath_each_table(tmp_path):
    limits = tmp_path / "t.toml"
    limits.write_text("[defaults]\nmax_psi = 0.3\n['a@1']\nmax_auc_drop = 0.1\n")
    found = load_thresholds(limits)
    assert found["a@1"] == {**DEFAULTS, "max_psi": 0.3, "max_auc_drop": 0.1}
    assert load_thresholds(None) == {"defaults": DEFAULTS}
    with pytest.raises(ThresholdsError, match="no such thresholds file"):
        load_thresholds(tmp_path / "missing.toml")


def test_a_window_narrower_than_min_labelled_is_a_usage_error(two_runs):
    _, second, _ = two_runs
    result = cli("monitor", second, "--window", 50)
    assert result.exit_code == 2
    assert result.output == ("error: the default thresholds: min_labelled = 200 is over --window 50: AUC and "
                             "conversion could never be checked (widen the window, or lower min_labelled in a "
                             "thresholds file)\n")


def test_monitor_needs_something_to_monitor():
    result = cli("monitor")
    assert result.exit_code == 2 and "RUN_DIR or --mongo-uri URI" in result.output


@pytest.mark.slow
def test_monitor_over_mongodb_records_its_findings_there(mongo_uri, tmp_path):
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database("monitor_test")
    store = MongoStore.from_database(client["monitor_test"])
    database = AuditDatabase(store)
    uri = f"{mongo_uri}/monitor_test"
    _, first = score_run(tmp_path, "m1", seed=1, sinks=[store])
    assert cli("outcomes", outcomes_file(tmp_path, "o1", first), "--label", "converted", "--mongo-uri", uri) \
        .exit_code == 0
    second_dir, second = score_run(tmp_path, "m2", seed=2, sinks=[store])
    healthy = cli("monitor", "--mongo-uri", uri)
    assert healthy.exit_code == 0 and "not checked: lead_lr@1.0.0 auc: no outcomes" in healthy.output
    assert cli("outcomes", outcomes_file(tmp_path, "o2", second, flip=True), "--label", "converted",
               "--mongo-uri", uri).exit_code == 0
    result = cli("monitor", "--mongo-uri", uri)
    assert result.exit_code == 1, result.output
    assert "breach: lead_lr@1.0.0 auc " in result.output and "against run m1" in result.output
    stored = database.latest_monitor()
    assert stored["run_id"] == "m2" and stored["breaches"] == 6 and stored["source"] == "MongoDB"
    assert client["monitor_test"].monitor.count_documents({}) == 2
    assert not (second_dir / MONITOR_FILE).exists()  # MongoDB alone was named
    # RUN_DIR with MongoDB: that run, read from MongoDB, recorded in both
    result = cli("monitor", second_dir, "--mongo-uri", uri)
    assert result.exit_code == 1 and json.loads((second_dir / MONITOR_FILE).read_text())["breaches"] == 6
    # serve --mongo-uri shows the newest finding as gauges
    from mlsm_nb.serve.monitoring import MonitorGauges, monitor_reader

    gauges = MonitorGauges(monitor_reader(None, uri, None), every=0)
    gauges.refresh()
    text = gauges.render().decode()
    assert 'mlsm_monitor_breach{check="auc",model="lead_lr",version="1.0.0"} 1.0' in text
    assert 'mlsm_monitor_breach{check="psi",model="lead_lr",version="1.0.0"} 0.0' in text
    result = cli("monitor", "--mongo-uri", uri, "--reference", "m9")
    assert result.exit_code == 2 and "--reference m9: no such run in MongoDB" in result.output
    client.drop_database("monitor_test")


def test_the_operators_guide_shows_lines_as_monitor_prints_them(two_runs, tmp_path):
    """docs/operators.md's example lines of `monitor` have the shape monitor prints (figures and run ids aside)."""
    import re

    from conftest import ROOT

    first, second, records = two_runs
    printed = cli("monitor", second).output.splitlines() + cli("monitor", first).output.splitlines()
    attach_outcomes(outcomes_file(tmp_path, "o2", records, flip=True), "converted", run=second)
    printed += cli("monitor", second).output.splitlines()
    for name, text in (("typo", '["lead_lr@1.0.0"]\nmax_auc = 0.1\n'), ("never", "[defaults]\nmax_psi = -1\n")):
        (tmp_path / f"{name}.toml").write_text(text)
        printed += cli("monitor", second, "--thresholds", tmp_path / f"{name}.toml").output.splitlines()

    def shape(line: str) -> str:
        line = re.sub(r"\S*(typo|never)\.toml", r"\1.toml", line)
        line = re.sub(r"\b(2026\d{4}T\d{6}Z-[0-9a-f]{6}|r1|r2)\b", "RUN", line)
        return re.sub(r"-?\d+\.\d+(e[+-]\d+)?", "N", line)

    guide = (ROOT / "docs" / "operators.md").read_text()
    section = guide[guide.index("## Alerts: `mlsm-nb monitor`"):guide.index("## Scaling out with Dask")]
    shown = [line for line in section.splitlines()
             if line.startswith(("breach: ", "monitored ", "warning: not checked", "error: typo", "error: never"))]
    assert len(shown) >= 12
    assert {shape(line) for line in shown} <= {shape(line) for line in printed}
