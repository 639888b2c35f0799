"""Rejected lines are streamed to rejected.jsonl as they are read, never all held in memory."""

import json
import tracemalloc

import pytest

from mlsm_nb.run.orchestrate import run_notebooks

pytestmark = pytest.mark.slow


def peak_of_run(tmp_path, make_notebook, bad_lines: int, run_id: str) -> int:
    records = tmp_path / f"{run_id}.jsonl"
    with open(records, "w") as f:
        f.write('{"id": "ok", "data": {"x": 1, "label": "a"}}\n')
        f.writelines(f"not json, line {i}\n" for i in range(bad_lines))
    tracemalloc.start()
    try:
        run_notebooks([make_notebook()], records, out=tmp_path / "runs", run_id=run_id, engine="inprocess")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_rejected_lines(tmp_path, make_notebook):
    peak_of_run(tmp_path, make_notebook, 10, "warm")  # imports and model loading, once
    few = peak_of_run(tmp_path, make_notebook, 10, "few")
    # the smaller of two runs: the peak counts whatever else this process allocates meanwhile (threads
    # left by earlier tests)
    many = min(peak_of_run(tmp_path, make_notebook, 20_000, run_id) for run_id in ("many", "again"))
    lines = (tmp_path / "runs" / "many" / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == 20_000 and json.loads(lines[-1])["line"] == 20_001
    assert many - few < 1_500_000, f"{(many - few) / 1e6:.1f} MB more for 20,000 rejected lines"
