"""serve's /metrics shows what `mlsm-nb monitor` found, as gauges for Prometheus alert rules."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from conftest import NOTEBOOKS
from labelled_runs import outcomes_file, score_run
from mlsm_nb.audit.monitor import MONITOR_FILE
from mlsm_nb.audit.outcomes import attach_outcomes
from mlsm_nb.cli import main
from mlsm_nb.notebook.extract import extract_bundle
from mlsm_nb.serve.monitoring import MonitorGauges, monitor_reader
from servers import ServeServer


def samples(text: str) -> dict:
    """{(metric name, model@version, check): value} of the monitor gauges in a Prometheus text."""
    return {(s.name, f"{s.labels.get('model')}@{s.labels.get('version')}", s.labels.get("check")): s.value
            for family in text_string_to_metric_families(text) if family.name.startswith("mlsm_monitor")
            for s in family.samples}


@pytest.fixture
def decayed(tmp_path):
    """A run whose outcomes went the other way, monitored against the run before it (exit 1)."""
    first, first_records = score_run(tmp_path, "r1", seed=1)
    attach_outcomes(outcomes_file(tmp_path, "o1", first_records), "converted", run=first)
    second, second_records = score_run(tmp_path, "r2", seed=2)
    attach_outcomes(outcomes_file(tmp_path, "o2", second_records, flip=True), "converted", run=second)
    assert CliRunner().invoke(main, ["monitor", str(second)]).exit_code == 1
    return second


def test_gauges_show_each_check_and_keep_the_last_finding_when_a_read_fails(decayed):
    found = json.loads((decayed / MONITOR_FILE).read_text())
    gauges = MonitorGauges(monitor_reader(str(decayed / MONITOR_FILE), None, None), every=0)
    gauges.refresh()
    got = samples(gauges.render().decode())
    auc = next(c for m in found["models"] if m["model"] == "lead_lr" for c in m["checks"] if c["check"] == "auc")
    assert got["mlsm_monitor_value", "lead_lr@1.0.0", "auc"] == pytest.approx(auc["value"])
    assert got["mlsm_monitor_threshold", "lead_lr@1.0.0", "auc"] == pytest.approx(auc["threshold"])
    assert got["mlsm_monitor_breach", "lead_lr@1.0.0", "auc"] == 1
    assert got["mlsm_monitor_breach", "lead_lr@1.0.0", "psi"] == 0
    assert sum(v for (name, _, _), v in got.items() if name == "mlsm_monitor_breach") == 6
    assert got["mlsm_monitor_checked", "champion@1.0.0", "conversion"] == 1
    (decayed / MONITOR_FILE).write_text("{not json")  # a torn file: the last finding stays
    gauges.refresh()
    assert samples(gauges.render().decode()) == got


@pytest.mark.slow
def test_serve_metrics_carry_the_monitor_gauges_across_workers(decayed, tmp_path):
    bundle = tmp_path / "bundle"
    extract_bundle([NOTEBOOKS], bundle)
    server = ServeServer(bundle, "--monitor", str(decayed), "--workers", "2").start()
    try:
        for _ in range(4):  # whichever worker answers
            text = httpx.get(server.url + "/metrics", timeout=30).text
            got = samples(text)
            assert got["mlsm_monitor_breach", "lead_rules@1.0.0", "auc"] == 1
            assert got["mlsm_monitor_breach", "lead_rules@1.0.0", "error_rate"] == 0
            assert got["mlsm_monitor_value", "lead_rules@1.0.0", "error_rate"] == 0
            assert got["mlsm_monitor_timestamp_seconds", "None@None", None] > 1.7e9
            assert "mlsm_serve_requests_total" in text  # the service's own metrics still there
    finally:
        server.stop()
