"""The executed notebook is written once per execution, when it ends (run.executed): whole when the notebook
ran to the end, and still kept, with the outputs it got to, when the execution failed (a timeout)."""

import nbformat
import papermill.execute
import pytest

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records
from mlsm_nb.run import executed
from mlsm_nb.run.orchestrate import run_notebooks

pytestmark = pytest.mark.slow


@pytest.fixture
def writes(monkeypatch):
    """The executed notebooks written, in order (every path papermill and run.executed write them through)."""
    written = []
    for module in (papermill.execute, papermill.engines, executed):
        real = module.write_ipynb
        monkeypatch.setattr(module, "write_ipynb", lambda nb, path, real=real: (written.append(path), real(nb, path)))
    return written


def test_a_notebook_that_ran_to_the_end_is_written_once(tmp_path, writes):
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    manifest = run_notebooks([notebook], write_records(tmp_path / "in.jsonl", 20), out=tmp_path, run_id="r",
                             batch_size=10, workers=1)
    assert manifest.status == "succeeded"
    paths = sorted(str(tmp_path / "r" / e.executed) for e in manifest.executions["tiny@1.0"].values())
    assert sorted(writes) == paths and len(paths) == 2  # once each, not per cell
    cells = nbformat.read(paths[0], as_version=4).cells
    assert all(c.metadata.papermill.status == "completed" for c in cells)
    assert all(c.execution_count for c in cells if c.cell_type == "code")


def test_a_timed_out_execution_keeps_its_notebook_as_far_as_it_got(tmp_path, writes):
    hang = replace_cell(GOOD_CELLS, "setup", "import time\nFACTOR = 2\nprint('set up')\ntime.sleep(60)")
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", hang)
    manifest = run_notebooks([notebook], write_records(tmp_path / "in.jsonl", 5), out=tmp_path, run_id="t",
                             workers=1, timeout=3)
    entry = manifest.executions["tiny@1.0"][0]
    assert manifest.status == "failed" and entry.status == "failed" and "cell 3 [setup]" in entry.error
    path = tmp_path / "t" / "executed" / "tiny@1.0" / "batch-00000.ipynb"
    assert writes == [str(path)]
    setup = next(c for c in nbformat.read(path, as_version=4).cells if "print('set up')" in c.source)
    assert setup.outputs[0]["text"] == "set up\n" and setup.metadata.papermill.start_time
