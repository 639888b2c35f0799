"""Runs of the example notebooks over generated leads, with outcomes, for the tests of `mlsm-nb monitor`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from conftest import NOTEBOOKS
from mlsm_nb.leads import converted, generate_leads
from mlsm_nb.run.orchestrate import run_notebooks


def score_run(tmp_path: Path, run_id: str, seed: int, *, sinks=(), count: int = 1000) -> tuple[Path, list[dict]]:
    """Run the example notebooks (in-process) over `count` generated leads into `tmp_path/runs/run_id`;
    returns the run directory and the records."""
    records = list(generate_leads(count, seed=seed))
    path = tmp_path / f"{run_id}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_notebooks([NOTEBOOKS], path, out=tmp_path / "runs", run_id=run_id, batch_size=500, engine="inprocess",
                  sinks=list(sinks))
    return tmp_path / "runs" / run_id, records


def outcomes_file(tmp_path: Path, name: str, records: list[dict], flip: bool = False) -> Path:
    """A CSV of plausible outcomes of `records` (`leads.converted`), label column `converted`, observed a second
    apart in record order; `flip`: every label the other way, as if the world had turned against the models."""
    rng = random.Random(name)
    rows = [{"id": r["id"], "converted": int(converted(r["data"], rng) != flip),
             "observed_at": f"2026-12-01T09:{i // 60 % 60:02d}:{i % 60:02d}+00:00"} for i, r in enumerate(records)]
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
