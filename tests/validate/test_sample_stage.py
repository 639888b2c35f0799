"""Sample records from a folder's own notebooks, and the Jenkins sample stage that scores them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, write_notebook

CHURN = [
    ("version", 'name = "churn"\nversion = "1.0.0"\nstatus = "active"'),
    ("fields", 'fields = {"tenure_months": {"type": "int", "min": 0, "max": 120},\n'
               '          "plan": {"type": "str", "allowed": ["basic", "pro"]},\n'
               '          "region": "str", "monthly_fee": {"type": "float", "min": 0}}'),
    ("setup", 'REGIONS = {"EMEA": 0.1, "APAC": 0.2}'),
    ("score", "def score(data, results):\n"
              "    base = 0.5 if data['plan'] == 'basic' else 0.2\n"
              "    return {'score': round(base + REGIONS[data['region']] - data['tenure_months'] / 1000, 6)}"),
    ("examples", 'examples = [{"data": {"tenure_months": 12, "plan": "pro", "region": "EMEA", "monthly_fee": 30.0},'
                 ' "expected": {"score": 0.288}},\n'
                 '            {"data": {"tenure_months": 0, "plan": "basic", "region": "APAC", "monthly_fee": 9.5},'
                 ' "expected": {"score": 0.7}}]'),
]
UPSELL = [
    ("version", 'name = "upsell"\nversion = "0.2.0"\nstatus = "active"'),
    ("fields", 'fields = {"seats": {"type": "int", "min": 1}, "plan": {"type": "str", "allowed": ["basic", "pro"]}}'),
    ("score", "def score(data, results):\n    return {'score': min(1.0, data['seats'] / 50)}"),
]


def test_records_made_from_the_notebooks_fields(tmp_path):
    from mlsm_nb import load_notebook

    folder = tmp_path / "notebooks"
    models = [load_notebook(write_notebook(folder / f"{name}.ipynb", cells))
              for name, cells in (("churn", CHURN), ("upsell", UPSELL))]
    out = tmp_path / "sample.jsonl"
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.validate.samples", "40", str(folder), "--seed", "3",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 40
    assert {r["data"]["region"] for r in records} == {"EMEA", "APAC"}  # the examples' own values
    for record in records:
        for model in models:
            assert "score" in model.score(record["data"]), record


def test_a_folder_without_fields_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.validate.samples", "5", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == (f"error: no notebook under {tmp_path} declares `fields` that lint accepts: nothing to "
                           "make sample records from\n")


@pytest.mark.slow
def test_the_sample_stage_passes_for_models_that_read_no_lead_fields(tmp_path):
    """ci/sample-run.sh without SAMPLE_RECORDS: both runs (papermill and the bundle) score every record."""
    workspace = tmp_path / "ws"
    folder = workspace / "models" / "notebooks"
    for name, cells in (("churn", CHURN), ("upsell", UPSELL)):
        write_notebook(folder / f"{name}.ipynb", cells)
    (workspace / "build").mkdir(parents=True)
    (workspace / "build" / "models.env").write_text(f"MODELS_DIR={folder}\nMODELS_BRANCH=main\n")
    env = {**os.environ, "WORKSPACE": str(workspace), "BUILD_NUMBER": "7", "SAMPLE_SIZE": "30",
           "MLSM_VENV": str(Path(sys.executable).parent.parent)}
    env.pop("SAMPLE_RECORDS", None)
    subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "extract", str(folder), "--out",
                    str(workspace / "build" / "bundle")], check=True, capture_output=True, env=env)
    done = subprocess.run(["bash", str(ROOT / "ci" / "sample-run.sh")], cwd=workspace, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for run in ("notebooks-7", "bundle-7"):
        lines = [json.loads(line) for path in (workspace / "build" / "runs" / run / "results").glob("*.jsonl")
                 for line in path.read_text().splitlines()]
        assert len(lines) == 30
        entries = [e for line in lines for versions in line["results"].values() for e in versions.values()]
        assert len(entries) == 60 and not [e for e in entries if "_error" in e], run
