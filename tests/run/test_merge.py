"""Merging a batch's model outputs into result documents, and the per-model tallies (no kernels: fast)."""

import threading

import pytest

from conftest import write_records
from mlsm_nb.cli import _print_run_summary
from mlsm_nb.exceptions import DataFileError
from mlsm_nb.files import read_jsonl, write_jsonl
from mlsm_nb.report import write_report
from mlsm_nb.run import engines
from mlsm_nb.run.merge import Merger, Tally
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.rundir import RunDirectory

MODELS = {"a@1": ("a", "1"), "a@2": ("a", "2"), "s@1": ("s", "1")}


def batch_run(tmp_path):
    """A run directory holding batch 0 (ids 1, "1", 3) and the three models' outputs for it."""
    run = RunDirectory(tmp_path / "r")
    run.prepare(MODELS)
    write_jsonl(run.batch_path(0), [{"id": i, "data": {}} for i in (1, "1", 3)])
    write_jsonl(run.output_path("a@1", 0), [{"score": 0.5}, {"score": 2}, {"_error_kind": "score", "_error": "boom"}])
    write_jsonl(run.output_path("a@2", 0), [{"score": True}, {"score": float("nan")}, {"label": "x"}])
    write_jsonl(run.output_path("s@1", 0), [{"score": 1.5, "champion": "a@1"}] * 3)
    return run, Merger(run_root=str(run.root), run_id="r", id_field="id", models=MODELS)


def test_documents_group_versions_by_name_and_keep_id_types(tmp_path):
    run, merger = batch_run(tmp_path)
    merged = merger.merge(0, keep=True)
    docs = list(read_jsonl(run.results_path(0)))
    assert [d["id"] for d in docs] == [1, "1", 3]
    assert docs[0]["results"] == {"a": {"1": {"score": 0.5}, "2": {"score": True}},
                                  "s": {"1": {"score": 1.5, "champion": "a@1"}}}
    assert {d["run_id"] for d in docs} == {"r"} and {d["_current"] for d in docs} == {0}
    assert [{k: v for k, v in d.items() if k != "_timestamp"} for d in merged["documents"]] == \
           [{k: v for k, v in d.items() if k != "_timestamp"} for d in docs]


def test_a_merge_given_the_ids_does_not_read_the_batch_again(tmp_path):
    run, merger = batch_run(tmp_path)
    read_from_file = merger.merge(0)
    expected = [{**d, "_timestamp": 0} for d in read_jsonl(run.results_path(0))]
    run.batch_path(0).unlink()
    assert merger.merge(0, ids=[1, "1", 3]) == read_from_file
    assert [{**d, "_timestamp": 0} for d in read_jsonl(run.results_path(0))] == expected


def test_tallies_count_records_errors_and_numeric_scores_only(tmp_path):
    counts = batch_run(tmp_path)[1].merge(0)["models"]
    assert counts["a@1"] == {"records": 3, "errors": {"score": 1}, "error_rate": 0.333333,
                             "examples": [{"id": 3, "kind": "score", "error": "boom"}],
                             "scored": 2, "score_sum": 2.5, "score_min": 0.5, "score_max": 2, "score_mean": 1.25}
    # a boolean, NaN and a missing score are not scores
    assert counts["a@2"] == {"records": 3, "errors": {}, "error_rate": 0.0, "examples": [], "scored": 0,
                             "score_sum": 0.0, "score_min": None, "score_max": None}
    assert counts["s@1"]["scored"] == 3 and counts["s@1"]["score_mean"] == 1.5


def test_tallies_add_up_across_batches_and_keep_the_first_examples():
    first = Tally.of([None] * 4, [(i, {"_error_kind": "score", "_error": f"e{i}"}) for i in range(4)])
    second = Tally.of([3.0, -1], [])
    assert first.examples == [{"id": i, "kind": "score", "error": f"e{i}"} for i in range(3)]
    first.merge(second)
    assert (first.records, first.error_count, first.scored, first.score_sum, first.score_min, first.score_max) == \
           (6, 4, 2, 2.0, -1, 3.0)


def test_a_batch_merging_does_not_hold_back_the_next_execution(tmp_path, make_notebook, monkeypatch):
    """With one worker, batch 1's execution runs while batch 0 merges: merges have a thread of their own."""
    merging, next_started, overlapped = threading.Event(), threading.Event(), []
    merge = Merger.merge

    def slow_merge(self, batch, *args):
        if batch == 0:
            merging.set()
            overlapped.append(next_started.wait(10))  # times out if the merge holds the only worker
            merging.clear()
        return merge(self, batch, *args)

    class Constant:
        """A kernel-free engine: every record scores 1; notes when batch 1 starts during batch 0's merge."""

        def prepare(self, executor, specs):
            pass

        def kept(self, executor, key, batch):
            return {}

        def execute(self, executor, key, batch):
            if batch == 1 and merging.is_set():
                next_started.set()
            lines = executor.run.batch_path(batch).read_text().count("\n")
            executor.run.output_path(key, batch).write_text('{"score": 1}\n' * lines)

    monkeypatch.setattr(Merger, "merge", slow_merge)
    engines.register("constant", Constant())
    try:
        records = tmp_path / "records.jsonl"
        write_records(records, 4)
        manifest = run_notebooks([make_notebook()], records, out=tmp_path, run_id="m", engine="constant",
                                 batch_size=2, workers=1)
    finally:
        del engines._ENGINES["constant"]
    assert overlapped == [True]
    assert manifest["status"] == "succeeded" and set(manifest["batch_stats"]) == {"0", "1"}


class Constant:
    """A kernel-free engine: every record scores 1, except that `broken` batches get a cut last line."""

    def __init__(self, broken=()):
        self.broken = set(broken)

    def prepare(self, executor, specs):
        pass

    def kept(self, executor, key, batch):
        return {}

    def execute(self, executor, key, batch):
        lines = executor.run.batch_path(batch).read_text().count("\n")
        last = '{"score": \n' if batch in self.broken else '{"score": 1}\n'
        executor.run.output_path(key, batch).write_text('{"score": 1}\n' * (lines - 1) + last)


@pytest.fixture
def constant():
    engines.register("constant", Constant(broken={1}))
    yield engines.get_engine("constant")
    del engines._ENGINES["constant"]


def test_a_line_that_is_not_json_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"score": 1}\n\n{"score": \n')
    with pytest.raises(DataFileError, match=f"^{path}: line 3 is not JSON \\(unexpected end of data, column 12\\)$"):
        list(read_jsonl(path))


def test_a_batch_that_cannot_be_merged_fails_the_run_not_the_other_batches(tmp_path, make_notebook, constant, capsys):
    records = write_records(tmp_path / "records.jsonl", 6)
    notebook = make_notebook()
    manifest = run_notebooks([notebook], records, out=tmp_path, run_id="m", engine="constant", batch_size=2)
    run_dir = tmp_path / "m"
    output = run_dir / "outputs" / "tiny@1.0" / "batch-00001.jsonl"
    error = f"batch 1: its results could not be merged: {output}: line 2 is not JSON"
    assert manifest["status"] == "failed" and manifest["verdict"]["failed_merges"] == 1
    assert list(manifest["merge_errors"]) == ["1"] and manifest["merge_errors"]["1"].startswith(error)
    assert sorted(p.name for p in (run_dir / "results").iterdir()) == ["batch-00000.jsonl", "batch-00002.jsonl"]
    assert manifest["models"]["tiny@1.0"]["records"] == 4  # the two merged batches

    _print_run_summary(manifest, str(tmp_path))  # what `mlsm-nb run` prints
    assert f"error: {error} (unexpected end of data, column 12); finish with --resume" in capsys.readouterr().err
    write_report(run_dir)  # a reviewer sees why
    assert ("Failed: batch 1: its results could not be merged: outputs/tiny@1.0/batch-00001.jsonl: line 2 is not JSON"
            in (run_dir / "report" / "index.html").read_text())  # paths in the run directory are shown relative

    constant.broken.clear()
    output.unlink()  # its execution runs again, then the merge
    manifest = run_notebooks([notebook], records, out=tmp_path, run_id="m", engine="constant", batch_size=2,
                             resume=True)
    assert manifest["status"] == "succeeded" and "merge_errors" not in manifest
    assert [d["id"] for d in read_jsonl(run_dir / "results" / "batch-00001.jsonl")] == [2, 3]
