"""Merging a batch's model outputs into result documents, and the per-model tallies (no kernels: fast)."""

import re
import threading

import numpy as np
import orjson
import pytest

from conftest import write_records
from mlsm_nb.cli import _print_run_totals
from mlsm_nb.exceptions import DataFileError
from mlsm_nb.files import dumps, read_jsonl, write_jsonl
from mlsm_nb.report import write_report
from mlsm_nb.run import engines, merge
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


def test_a_merge_given_the_kernels_tallies_copies_the_entries_without_reading_them(tmp_path, monkeypatch):
    """The documents are made of the entries' JSON as the output files hold it: byte for byte what reading
    and writing them again gives; a model whose kernel counted its entries is not read at all."""
    run, merger = batch_run(tmp_path)
    read = merger.merge(0)
    written = run.results_path(0).read_bytes()
    assert written == b"".join(dumps(d) + b"\n" for d in read_jsonl(run.results_path(0)))

    def not_read(path, lines):
        raise AssertionError(f"{path} was read")

    monkeypatch.setattr(merge, "_entries", not_read)
    given = merger.merge(0, tallies=read["models"])
    assert given == read and run.results_path(0).read_bytes() == written
    run.output_path("a@2", 0).write_text('{"score": 1}\n[1]\n{"score": 1}\n')
    with pytest.raises(DataFileError, match="entry 2 is not a JSON object$"):
        merger.merge(0, tallies=read["models"])


def test_a_kernels_tally_counts_its_entries_as_the_merge_reads_them():
    """numpy scores count as the numbers their JSON holds (a float32 is not a Python float)."""
    entries = [{"score": np.float32(0.5)}, {"score": np.int64(2)}, {"_error_kind": "score", "_error": "boom"}]
    assert Tally.of(entries, [1, "1", 3]).as_dict() == \
        Tally.of([orjson.loads(dumps(e)) for e in entries], [1, "1", 3]).as_dict()
    assert Tally.of(entries, [1, "1", 3]).scored == 2


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
    first, second = Tally(), Tally()
    for i in range(4):
        first.add_error({"_error_kind": "score", "_error": f"e{i}"}, i)
    first.add_scores([None] * 4)
    second.add_scores([3.0, -1])
    assert first.examples == [{"id": i, "kind": "score", "error": f"e{i}"} for i in range(3)]
    first.merge(second)
    assert (first.records, first.error_count, first.scored, first.score_sum, first.score_min, first.score_max) == \
           (6, 4, 2, 2.0, -1, 3.0)


@pytest.mark.parametrize("lines, problem", [
    ('{"score": 1}\n{"score": 1}\n', "2 entries for the batch's 3 records"),
    ('{"score": 1}\n' * 4, "more entries than the batch's 3 records"),
    ('{"score": 1}\n[1]\n{"score": 1}\n', "entry 2 is not a JSON object"),
    ('{"score": 1}\n{"score": \n{"score": 1}\n', "line 2 is not JSON (unexpected end of data, column 11)"),
])
def test_an_output_that_is_not_one_object_per_record_is_named(tmp_path, lines, problem):
    run, merger = batch_run(tmp_path)
    output = run.output_path("a@2", 0)
    output.write_text(lines)
    with pytest.raises(DataFileError, match=f"^{re.escape(f'{output}: {problem}')}$") as caught:
        merger.merge(0)
    assert caught.value.path == str(output)


class Constant(engines.FileEngine):
    """A kernel-free engine: every record scores 1, except that a `broken` batch's output is cut short
    in its last line; `on_execute(batch)` is called as each execution starts."""

    def __init__(self):
        self.broken, self.on_execute = set(), None

    def prepare(self, executor, specs):
        pass

    def kept(self, executor, key, batch):
        return {}

    def execute(self, executor, key, batch):
        if self.on_execute:
            self.on_execute(batch)
        lines = executor.run.batch_path(batch).read_text().count("\n")
        last = '{"score": \n' if batch in self.broken else '{"score": 1}\n'
        executor.run.output_path(key, batch).write_text('{"score": 1}\n' * (lines - 1) + last)


@pytest.fixture
def constant():
    engines.register("constant", Constant())
    yield engines.get_engine("constant")
    engines.unregister("constant")


def run_constant(tmp_path, notebook, **settings):
    records = write_records(tmp_path / "records.jsonl", 6)
    return run_notebooks([notebook], records, out=tmp_path, run_id="m", engine="constant", batch_size=2, **settings)


def test_a_batch_merging_does_not_hold_back_the_next_execution(tmp_path, make_notebook, constant, monkeypatch):
    """With one worker, batch 1's execution runs while batch 0 merges: merges have a thread of their own;
    the runner hands each merge the ids it read, so the batch file is not read again."""
    next_started, overlapped, given_ids = threading.Event(), [], {}
    merge = Merger.merge

    def slow_merge(self, batch, keep=False, ids=None, tallies=None):
        given_ids[batch] = ids
        if batch == 0:  # times out if the merge holds the only worker
            overlapped.append(next_started.wait(10))
        return merge(self, batch, keep, ids, tallies)

    constant.on_execute = lambda batch: batch == 1 and next_started.set()
    monkeypatch.setattr(Merger, "merge", slow_merge)
    manifest = run_constant(tmp_path, make_notebook(), workers=1)
    assert overlapped == [True]
    assert manifest.status == "succeeded" and set(manifest.batch_stats) == {0, 1, 2}
    assert given_ids == {0: [0, 1], 1: [2, 3], 2: [4, 5]}


def test_an_output_that_cannot_be_merged_fails_its_execution_not_the_other_batches(tmp_path, make_notebook,
                                                                                    constant, capsys):
    constant.broken.add(1)
    notebook = make_notebook()
    manifest = run_constant(tmp_path, notebook)
    run_dir = tmp_path / "m"
    output = run_dir / "outputs" / "tiny@1.0" / "batch-00001.jsonl"
    error = f"{notebook}: batch 1: its output cannot be merged: {output}: line 2 is not JSON"
    entry = manifest.executions["tiny@1.0"][1]
    assert manifest.status == "failed" and manifest.failed_executions == 1 and not manifest.merge_errors
    assert entry.status == "failed" and entry.error.startswith(error)
    assert sorted(p.name for p in (run_dir / "results").iterdir()) == ["batch-00000.jsonl", "batch-00002.jsonl"]
    assert manifest.models["tiny@1.0"]["records"] == 4  # the two merged batches
    _print_run_totals(manifest, str(tmp_path))  # what `mlsm-nb run` prints
    assert f"error: {error} (unexpected end of data, column 11)\n" in capsys.readouterr().err

    constant.broken.clear()  # the cause is fixed: resume runs the execution again, then merges
    manifest = run_constant(tmp_path, notebook, resume=True)
    assert manifest.status == "succeeded" and manifest.executions["tiny@1.0"][1].status == "ok"
    assert [d["id"] for d in read_jsonl(run_dir / "results" / "batch-00001.jsonl")] == [2, 3]


def test_a_batch_that_cannot_be_merged_fails_the_run_not_the_other_batches(tmp_path, make_notebook, constant,
                                                                            capsys, monkeypatch):
    write_batch = RunDirectory.write_batch_lines

    def no_space_for_batch_1(self, batch, lines):
        if batch == 1:
            raise OSError(28, "No space left on device")
        return write_batch(self, batch, lines)

    monkeypatch.setattr(RunDirectory, "write_batch_lines", no_space_for_batch_1)
    notebook = make_notebook()
    manifest = run_constant(tmp_path, notebook)
    error = "batch 1: its results could not be merged: OSError: [Errno 28] No space left on device"
    assert manifest.status == "failed" and manifest.verdict.failed_merges == 1
    assert manifest.merge_errors == {1: error} and manifest.failed_executions == 0
    assert sorted(p.name for p in (tmp_path / "m" / "results").iterdir()) == ["batch-00000.jsonl", "batch-00002.jsonl"]
    _print_run_totals(manifest, str(tmp_path))
    assert f"error: {error}; finish with --resume once the cause is fixed\n" in capsys.readouterr().err
    write_report(tmp_path / "m")  # a reviewer sees why
    assert f"Failed: {error}" in (tmp_path / "m" / "report" / "index.html").read_text()

    monkeypatch.setattr(RunDirectory, "write_batch_lines", write_batch)  # space again: resume merges batch 1
    manifest = run_constant(tmp_path, notebook, resume=True)
    assert manifest.status == "succeeded" and not manifest.merge_errors
    assert [d["id"] for d in read_jsonl(tmp_path / "m" / "results" / "batch-00001.jsonl")] == [2, 3]


def test_a_batch_file_is_the_input_lines_its_records_were_read_from(tmp_path, make_notebook, constant):
    manifest = run_constant(tmp_path, make_notebook())
    lines = (tmp_path / "records.jsonl").read_text().splitlines(keepends=True)
    assert manifest.status == "succeeded" and ", " in lines[0]  # not as orjson writes JSON
    assert [(tmp_path / "m" / "batches" / f"batch-0000{b}.jsonl").read_text() for b in range(3)] == \
           ["".join(lines[2 * b:2 * b + 2]) for b in range(3)]
