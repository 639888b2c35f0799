"""Engines: base classes, register and unregister, and third-party engines found through entry points."""

import sys

import pytest

from conftest import write_records
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.run import engines
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.rundir import read_results

PLUGIN = '''
from mlsm_nb.run.engines import FileEngine


class Halves(FileEngine):
    """Every record scores 0.5."""

    def kept(self, executor, key, batch):
        return {"engine": "halves"}

    def execute(self, executor, key, batch):
        lines = executor.run.batch_path(batch).read_text().count("\\n")
        executor.run.output_path(key, batch).write_text('{"score": 0.5}\\n' * lines)
'''


def install(folder, name, target, module_text=PLUGIN):
    """A distribution in `folder` (a sys.path entry) declaring engine `name` = `target` in group mlsm_nb.engines."""
    (folder / "halves_engine.py").write_text(module_text)
    info = folder / f"halves_engine_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: halves-engine-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mlsm_nb.engines]\n{name} = {target}\n")


def test_an_engine_a_distribution_declares_plugs_in_without_editing_run(tmp_path, make_notebook, monkeypatch):
    install(tmp_path, "halves", "halves_engine:Halves")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "halves_engine", raising=False)
    assert "halves" in engines.engine_names()
    records = write_records(tmp_path / "records.jsonl", 5)
    try:
        manifest = run_notebooks([make_notebook()], records, out=tmp_path / "out", run_id="p", engine="halves",
                                 batch_size=2)
        assert type(engines.get_engine("halves")).__name__ == "Halves"
    finally:
        engines.unregister("halves")
    assert manifest.status == "succeeded" and manifest.executions["tiny@1.0"][0].extra["engine"] == "halves"
    assert [d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "out" / "p")] == [{"score": 0.5}] * 5
    assert "halves" not in engines.engine_names()  # unregistered stays so, though its entry point is there
    with pytest.raises(ConfigError, match="unknown engine 'halves'; known engines: .*inprocess"):
        engines.get_engine("halves")


def test_an_entry_point_that_cannot_load_is_one_error_naming_it(tmp_path, monkeypatch):
    install(tmp_path, "broken", "halves_engine:Missing")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "halves_engine", raising=False)
    with pytest.raises(ConfigError, match=r"^engine 'broken' \(entry point halves_engine:Missing of group "
                                          r"mlsm_nb.engines\) cannot be loaded: AttributeError"):
        engines.get_engine("broken")


def test_unregister_removes_an_engine_and_refuses_an_unknown_one():
    class Ones(engines.InMemoryEngine):
        def score(self, executor, key, records, dependencies, *, board, stuck):
            raise AssertionError("not called")

    engines.register("ones", Ones())
    assert "ones" in engines.engine_names()
    engines.unregister("ones")
    assert "ones" not in engines.engine_names()
    with pytest.raises(ConfigError, match="unknown engine 'ones'"):
        engines.unregister("ones")


def test_an_engine_must_be_one_of_the_two_kinds():
    class Duck:
        def prepare(self, executor, specs):
            pass

        def kept(self, executor, key, batch):
            return {}

        def execute(self, executor, key, batch):
            pass

    with pytest.raises(ConfigError, match="engine 'duck' is Duck, not a FileEngine or InMemoryEngine"):
        engines.register("duck", Duck())
    with pytest.raises(ConfigError, match="engine 'half' has no score method"):
        engines.register("half", type("Half", (engines.InMemoryEngine,), {})())
    assert "duck" not in engines.engine_names() and "half" not in engines.engine_names()
