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
    # The smaller of two runs each: the peak counts whatever else this process allocates meanwhile (threads
    # left by earlier tests). Lines are read and checked ID_CHUNK at a time, so both sizes hold one chunk's
    # worth; what 40,000 more rejected lines would add if they were kept (about 3 MB) must not show.
    some = min(peak_of_run(tmp_path, make_notebook, 10_000, run_id) for run_id in ("some", "some again"))
    many = min(peak_of_run(tmp_path, make_notebook, 50_000, run_id) for run_id in ("many", "many again"))
    lines = (tmp_path / "runs" / "many" / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == 50_000 and json.loads(lines[-1])["line"] == 50_001
    assert many - some < 500_000, f"{(many - some) / 1e6:.1f} MB more for 40,000 more rejected lines"
