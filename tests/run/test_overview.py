"""The overview an executed notebook shows of its batch: pandas' statistics without pandas, escaped tables,
and nothing heavy imported for it."""

import gc
import random
import subprocess
import sys

import pandas as pd
import pytest

from mlsm_nb.core.batch import BatchOutcome
from mlsm_nb.run.overview import FACTS, SAMPLE_SIZE, BatchOverview, describe, table


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_describe_gives_what_pandas_describe_gives(size):
    rng = random.Random(size)
    scores = [rng.betavariate(2, 5) for _ in range(size)]
    expected = pd.Series(scores).describe().round(4).to_dict()
    got = describe(scores)
    assert got["count"] == size and isinstance(got["count"], int)
    if size == 1:
        assert got.pop("std") is None and pd.isna(expected.pop("std"))
    assert {k: v for k, v in got.items() if k != "count"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "count"}, abs=1e-12)


def test_a_table_escapes_every_value_and_lines_up_as_text():
    bundle = table(["kind", "<b>n</b>"], [["<script>alert(1)</script>", 12], ["a & b", None]])
    html = bundle["text/html"]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<th>&lt;b&gt;n&lt;/b&gt;</th>" in html and "<td>a &amp; b</td><td></td>" in html
    assert bundle["text/plain"].splitlines() == [
        " " * 24 + "kind  <b>n</b>",
        "0  <script>alert(1)</script>        12",
        "1" + " " * 22 + "a & b"]


def test_show_displays_heading_errors_slowest_statistics_histogram_and_sample(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False, metadata=None: shown.append(obj))
    entries = [{"score": i / 10, "band": f"b{i}"} for i in range(8)] + [{"_error": "x", "_error_kind": "bad_type"}]
    BatchOverview(BatchOutcome("m", "1", entries), [["lead-3", 1.25], [7, 0.002]]).show()
    heading, errors, slowest, stats, histogram, sample = shown
    assert heading.data == "### m 1: 9 records, 1 errors (scored with `score`)"
    assert errors["text/plain"].splitlines()[1].split() == ["0", "bad_type", "1"]
    assert [line.split() for line in slowest["text/plain"].splitlines()[1:]] == [["slowest", "lead-3", "1.25"],
                                                                                 ["7", "0.002"]]
    # what the engine reads back
    assert slowest[FACTS] == {"errors": 1, "slowest": [["lead-3", 1.25], [7, 0.002]], "stuck": []}
    assert stats["text/plain"].splitlines()[1].split() == ["score", "8", "0.35", "0.2449", "0", "0.175", "0.35",
                                                          "0.525", "0.7"]
    assert histogram["image/svg+xml"].startswith("<svg ")
    assert sample["text/plain"].splitlines()[0].split() == ["score", "band"] and "b4" in sample["text/html"]


def test_an_overview_keeps_a_sample_of_the_entries_not_the_batch():
    """The runner cell keeps its overview in the kernel's namespace until the kernel exits: holding the batch's
    entries there would have IPython's full collection at exit go over each of them (about 6 % of a
    summary kernel's CPU on 50,000 leads)."""
    entries = [{"score": i / 50, "_reasons": [["x", i]]} for i in range(50)]
    overview = BatchOverview(BatchOutcome("m", "1", entries), ids=[f"lead-{i}" for i in range(50)])
    reached, todo = {id(overview)}, [overview]
    while todo:  # everything the overview holds, however deep
        for held in gc.get_referents(todo.pop()):
            if id(held) not in reached:
                reached.add(id(held))
                todo.append(held)
    assert {id(e) for e in entries[:SAMPLE_SIZE]} <= reached
    assert not {id(e) for e in entries[SAMPLE_SIZE:]} & reached


def test_the_overview_imports_neither_pandas_nor_matplotlib():
    code = ("import sys\n"
            "import IPython.display\n"
            "from mlsm_nb.core.batch import BatchOutcome\n"
            "from mlsm_nb.run.runtime import BatchOverview\n"
            "IPython.display.display = lambda obj, raw=False, metadata=None: None\n"
            "BatchOverview(BatchOutcome('m', '1', [{'score': i / 7} for i in range(50)])).show()\n"
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_scores_at_the_edges_of_the_float_range_are_summarised_not_a_failed_batch(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False, metadata=None: shown.append(obj))
    entries = [{"score": s} for s in (1e308, -1e308, 1e17, 1e17)]
    BatchOverview(BatchOutcome("m", "1", entries)).show()
    stats, histogram = shown[2]["text/plain"], shown[3]["image/svg+xml"]
    assert stats.splitlines()[1].split()[:3] == ["score", "4", "5e+16"] and "inf" in stats  # the std, as pandas
    assert "nan" not in histogram and "inf" not in histogram
