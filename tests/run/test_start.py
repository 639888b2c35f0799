"""A run that cannot start leaves nothing behind: its run id stays free."""

from click.testing import CliRunner

from conftest import write_records
from mlsm_nb.cli import main
from mlsm_nb.notebook.extract import extract_bundle
from mlsm_nb.store.rundir import read_results


def test_a_bad_bundle_leaves_no_run_directory_and_the_same_run_id_then_works(tmp_path, make_notebook):
    notebook = make_notebook()
    records = write_records(tmp_path / "records.jsonl", 5)
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    extract_bundle([notebook], good)
    out = tmp_path / "out"

    def run(bundle):
        return CliRunner().invoke(main, ["run", str(notebook), "--records", str(records), "--out", str(out),
                                         "--run-id", "X", "--engine", "inprocess", "--bundle", str(bundle)])

    failed = run(bad)
    assert failed.exit_code == 1 and str(bad) in failed.output
    assert not (out / "X").exists()
    succeeded = run(good)
    assert succeeded.exit_code == 0, succeeded.output
    assert [d["id"] for d in read_results(out / "X")] == [0, 1, 2, 3, 4]
