"""The ResultSink contract's hooks without a database: approvals asked of every sink; the run directory is no sink."""

import pytest

from conftest import GOOD_CELLS, replace_cell, write_records
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.base import ResultSink, check_approvals
from mlsm_nb.store.rundir import RunDirectory


class Gatekeeper(ResultSink):
    """A sink with an approval policy of its own: only the versions in `approved` may run as active."""

    name = "gatekeeper"

    def __init__(self, approved=()):
        self.approved = set(approved)
        self.asked = []

    def check_approvals(self, active):
        self.asked.append([(spec.name, spec.version) for spec in active])
        for spec in active:
            if (spec.name, spec.version) not in self.approved:
                raise ConfigError(f"{spec.path}: {spec.name} {spec.version} is not approved by the gatekeeper")


@pytest.fixture
def specs(make_notebook):
    draft = replace_cell(GOOD_CELLS, "version", 'name = "sketch"\nversion = "0.1"\nstatus = "draft"')
    return [lint_notebook(make_notebook()), lint_notebook(make_notebook("sketch.ipynb", draft))]


def test_every_sink_is_asked_about_the_active_notebooks_only(specs):
    quiet, strict = ResultSink(), Gatekeeper({("tiny", "1.0")})
    check_approvals([quiet, strict], specs)  # the default hook allows every notebook
    assert strict.asked == [[("tiny", "1.0")]]  # the draft one is not asked about
    with pytest.raises(ConfigError, match=r"tiny.ipynb: tiny 1.0 is not approved by the gatekeeper"):
        check_approvals([Gatekeeper()], specs)
    forced = Gatekeeper()
    check_approvals([forced], specs, "draft")  # a development branch runs every model as draft
    assert forced.asked == []


def test_a_run_refused_by_a_sink_that_is_not_mongodb_writes_nothing(tmp_path, make_notebook):
    records = write_records(tmp_path / "in.jsonl", 5)
    with pytest.raises(ConfigError, match="not approved by the gatekeeper"):
        run_notebooks([make_notebook()], records, out=tmp_path / "runs", run_id="r", engine="inprocess",
                      sinks=[Gatekeeper()])
    assert not (tmp_path / "runs" / "r").exists()


def test_the_run_directory_is_the_runs_own_state_not_a_sink(tmp_path):
    run = RunDirectory(tmp_path / "r")
    assert not isinstance(run, ResultSink)
    assert not any(hasattr(run, method) for method in ("open_run", "stored_batches", "finish_run"))
    with pytest.raises(NotImplementedError):
        ResultSink().write_batch("r", 0, [])
