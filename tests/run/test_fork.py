"""Kernels forked from the template (run.fork, run.template): fresh state for every execution, and the faults a
launched kernel meets (a kernel that aborts, a failing import, the template killed, Ctrl-C) handled as for
launched kernels, with the same results and no process left behind."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import GOOD_CELLS, ROOT, replace_cell, write_notebook, write_records
from mlsm_nb.leads import save_leads
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.processes import pid_alive
from mlsm_nb.run import fork
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.store.manifest import Manifest, load_manifest
from mlsm_nb.store.rundir import read_results

KEY = "tiny@1.0"


def leftover(runner: int) -> list[int]:
    """The live processes runner `runner` started and left: its template (whose arguments name the runner), the
    kernels forked from it (a fork keeps the template's command line) and launched kernels (whose connection
    file names the runner)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        template = "mlsm_nb.run.template" in argv and argv[argv.index("mlsm_nb.run.template") + 2] == str(runner)
        launched = any(a.startswith(fork_prefix(runner)) for a in map(os.path.basename, argv))
        if (template or launched) and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def fork_prefix(runner: int) -> str:
    from mlsm_nb.run.kernels import _file_prefix

    return _file_prefix(runner)


def none_left(runner: int, within: float = 10.0) -> list[int]:
    """What `leftover` finds once `within` seconds passed, or at once when nothing is left."""
    deadline = time.monotonic() + within
    while (left := leftover(runner)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def results(run_dir: Path) -> list:
    return [d["results"] for d in read_results(run_dir)]


def kernels(manifest: Manifest) -> set:
    return {(e.extra.get("kernel"), e.extra.get("kernel_launched_because")) for e in manifest.executions[KEY].values()}


def launched_run(notebook, records, out, monkeypatch, **options) -> dict:
    with monkeypatch.context() as patch:
        patch.setenv(fork.SWITCH, "0")
        manifest = run_notebooks([notebook], records, out=out, run_id="launched", **options)
    assert kernels(manifest) == {("launched", f"{fork.SWITCH}=0")}
    return manifest


def test_the_template_preloads_what_setup_and_score_cells_import_read_not_run(tmp_path):
    cells = replace_cell(replace_cell(GOOD_CELLS, "setup", "import numpy.linalg as la\nfrom pandas import api\n"
                                                           "from . import beside\nFACTOR = 2"),
                         "score", "def score(data, results):\n    import json\n    return {}")
    cells = [*cells, (None, "import tomllib")]  # an authoring cell's import is not the model's
    spec = lint_notebook(write_notebook(tmp_path / "nb.ipynb", cells))
    assert fork.preload_modules([spec]) == sorted(["json", "numpy.linalg", "pandas", *fork.RUNNER_MODULES,
                                                   *fork.FIRST_USE_MODULES["pandas"]])  # what pandas imports as used


_FIRST_USE = """
import importlib, json, os, sys
from pathlib import Path
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.run import fork
from mlsm_nb.run.runtime import run_in_notebook
from mlsm_nb.run.template import BASE_MODULES

notebook, batch, out = map(Path, sys.argv[1:])
spec = lint_notebook(notebook)
for name in [*BASE_MODULES, *fork.preload_modules([spec])]:  # as the template imports them
    importlib.import_module(name)
os.chdir(notebook.parent)
namespace = {}
for cell in spec.cells:  # as the kernel runs them, before the runner's cell
    exec(cell.source, namespace)
before = set(sys.modules)
run_in_notebook(namespace, str(batch), str(out)).show()
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_template_preloads_what_a_kernel_of_the_example_imports_as_it_scores(tmp_path):
    """Every module an installed package imports only as it is first used (`fork.FIRST_USE_MODULES`) is the
    template's: a forked kernel of the lead_lr example (pandas and numpy, scored as a frame) imports nothing more
    after its cells ran; were it to, each kernel would pay for the import (a pandas or pyarrow upgrade can add one)."""
    batch = save_leads(tmp_path / "batch.jsonl", 3)
    done = subprocess.run([sys.executable, "-c", _FIRST_USE, str(ROOT / "notebooks" / "lead_lr.ipynb"), str(batch),
                           str(tmp_path / "out.jsonl")], capture_output=True, text=True, check=True)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3  # scored, as a frame
    assert json.loads(done.stdout.splitlines()[-1]) == []


_CASE_TABLES = """
import gc, json, os, resource, sys
from mlsm_nb.run import template

def faults_of_a_first_case_kernel_in_a_child():
    read, write = os.pipe()
    if os.fork() == 0:
        import pyarrow, pyarrow.compute
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        pyarrow.compute.utf8_upper(pyarrow.array(["Ab"]))
        os.write(write, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
        os._exit(0)
    os.close(write)
    return int(os.read(read, 64))

import pandas, pyarrow.compute
gc.freeze()  # as the template does: no collection in a child touches what the template holds
cold = faults_of_a_first_case_kernel_in_a_child()
ready = template._preload([], ["pandas", "pyarrow.compute"])
gc.freeze()
print(json.dumps([cold, faults_of_a_first_case_kernel_in_a_child(), ready]))
"""


def test_the_template_builds_what_pyarrow_builds_at_first_use_so_its_kernels_share_it():
    """pandas' strings are pyarrow's, whose case kernels (lower, upper, ...) build Unicode tables at their first
    use: in a child of a template that built them, that first use copies no more of the template's memory (page
    faults: about 190 against 1,300 on this machine, and 0.6 ms of CPU against 7), and builds no thread."""
    done = subprocess.run([sys.executable, "-c", _CASE_TABLES], capture_output=True, text=True, check=True)
    cold, warm, ready = json.loads(done.stdout.splitlines()[-1])
    assert warm * 3 < cold, (cold, warm)
    assert ready["threads"] == 1


def test_forking_is_off_where_the_switch_says_so(monkeypatch):
    monkeypatch.setenv(fork.SWITCH, "0")
    assert fork.unavailable() == f"{fork.SWITCH}=0"
    monkeypatch.setenv(fork.SWITCH, "1")
    assert fork.unavailable() is None  # on Linux, where tests run


def forked_then_launched(tmp_path, monkeypatch, setup: str, score: str, count: int, **options) -> tuple:
    """A notebook with this `setup` and `score` run over `count` records with forked kernels (run "forked"),
    then launched ones ("launched"): (notebook, records, runs folder)."""
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb",
                              replace_cell(replace_cell(GOOD_CELLS, "setup", setup), "score", score))
    records = write_records(tmp_path / "in.jsonl", count)
    out = tmp_path / "runs"
    forked = run_notebooks([notebook], records, out=out, run_id="forked", **options)
    assert forked.status == "succeeded" and kernels(forked) == {("forked", None)}
    assert none_left(os.getpid()) == []
    launched_run(notebook, records, out, monkeypatch, **options)
    return notebook, records, out


@pytest.mark.slow
def test_module_state_a_setup_changes_is_seen_within_its_own_execution_only(tmp_path, monkeypatch):
    setup = "import json\njson.mlsm_seen = getattr(json, 'mlsm_seen', 0) + 1\nFACTOR = 2"
    score = ("def score(data, results):\n    import json\n"
             "    return {'score': data['x'] * FACTOR, 'seen': json.mlsm_seen}")
    notebook, records, out = forked_then_launched(tmp_path, monkeypatch, setup, score, 30, batch_size=10, workers=2)
    warm = run_notebooks([notebook], records, out=out, run_id="warm", batch_size=10, workers=1, warm_kernels=True)
    assert kernels(warm) == {("launched", "--warm-kernels: kept kernels are launched")}
    assert results(out / "forked") == results(out / "launched")
    assert {r["tiny"]["1.0"]["seen"] for r in results(out / "forked")} == {1}
    assert {r["tiny"]["1.0"]["seen"] for r in results(out / "warm")} == {1, 2, 3}  # what a kept kernel carries over
    assert leftover(os.getpid()) == []


@pytest.mark.slow
def test_kernels_forked_or_launched_start_without_ipython_history(tmp_path, monkeypatch):
    setup = "import sys\nARGV = sys.argv[1:]\nFACTOR = 2"  # the kernel's arguments, as IPKernelApp read them
    score = "def score(data, results):\n    return {'score': data['x'] * FACTOR, 'argv': ARGV}"
    _, _, out = forked_then_launched(tmp_path, monkeypatch, setup, score, 4, batch_size=2, workers=1)
    for run in ("forked", "launched"):
        assert all("--HistoryManager.enabled=False" in r["tiny"]["1.0"]["argv"] for r in results(out / run))


@pytest.mark.slow
def test_the_template_starts_as_the_run_reads_its_records_and_ends_with_the_run(tmp_path, monkeypatch):
    from mlsm_nb.run import schedule

    seen = []
    read = schedule.read_batches

    def reading(*args, **kwargs):
        seen.append(fork.FORKER.template is not None and not fork.FORKER.template.ended.is_set())
        return read(*args, **kwargs)

    monkeypatch.setattr(schedule, "read_batches", reading)
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    records = write_records(tmp_path / "in.jsonl", 4)
    out = tmp_path / "runs"
    assert run_notebooks([notebook], records, out=out, run_id="r", batch_size=2).status == "succeeded"
    assert seen == [True]  # importing while the first batch is read
    assert none_left(os.getpid()) == []
    again = run_notebooks([notebook], records, out=out, run_id="r", batch_size=2, resume=True)
    assert again.status == "succeeded" and fork.FORKER.template is None  # nothing forked: closed as the run ended
    assert none_left(os.getpid()) == []


@pytest.mark.slow
def test_forked_kernels_exit_by_themselves_when_asked_to_shut_down(tmp_path, monkeypatch):
    templates = []
    start = fork.Template.__init__

    def started(self, *args, **kwargs):
        start(self, *args, **kwargs)
        templates.append(self)

    monkeypatch.setattr(fork.Template, "__init__", started)
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    records = write_records(tmp_path / "in.jsonl", 24)
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="r", batch_size=1, workers=2)
    assert manifest.status == "succeeded" and kernels(manifest) == {("forked", None)}
    codes = [code for template in templates for code, _ in template.exits.values()]
    # A kernel whose control thread hung as it exited (posit-dev/positron#7142) was ended with SIGTERM (-15).
    assert len(codes) == 24 and set(codes) == {0}


@pytest.mark.slow
def test_a_kernel_that_aborts_fails_its_execution_only_as_a_launched_one(tmp_path, monkeypatch):
    setup = "import os\nif mlsm_batch_path.endswith('batch-00001.jsonl'):\n    os.abort()\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    records = write_records(tmp_path / "in.jsonl", 30)
    out = tmp_path / "runs"
    forked = run_notebooks([notebook], records, out=out, run_id="forked", batch_size=10, workers=1)
    launched = launched_run(notebook, records, out, monkeypatch, batch_size=10, workers=1)
    assert kernels(forked) == {("forked", None)}
    statuses = {run: {b: e.status for b, e in m.executions[KEY].items()}
                for run, m in (("forked", forked), ("launched", launched))}
    assert statuses["forked"] == statuses["launched"] == {0: "ok", 1: "failed", 2: "ok"}
    assert "Kernel died" in forked.executions[KEY][1].error
    assert results(out / "forked") == results(out / "launched")
    assert leftover(os.getpid()) == []


@pytest.mark.slow
def test_a_setup_import_that_fails_fails_the_execution_in_its_cell_not_the_template(tmp_path, monkeypatch):
    installed = tmp_path / "site"
    installed.mkdir()
    (installed / "mlsm_broken_module.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.setenv("PYTHONPATH", str(installed))  # found by the template and by launched kernels alike
    setup = "import mlsm_broken_module\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    records = write_records(tmp_path / "in.jsonl", 20)
    out = tmp_path / "runs"
    forked = run_notebooks([notebook], records, out=out, run_id="forked", batch_size=10, workers=1)
    launched = launched_run(notebook, records, out, monkeypatch, batch_size=10, workers=1)
    assert kernels(forked) == {("forked", None)} and fork.FORKER.off is None  # the template did not fail
    for batch in (0, 1):
        error = forked.executions[KEY][batch].error
        assert error == launched.executions[KEY][batch].error
        assert error.startswith(f"{notebook}:cell 3 [setup]: batch {batch}: RuntimeError: broken at import")
    assert results(out / "forked") == results(out / "launched")
    assert leftover(os.getpid()) == []


@pytest.mark.slow
def test_a_template_killed_mid_run_is_started_again_and_its_kernel_finishes(tmp_path, monkeypatch):
    setup = "import time\ntime.sleep(1)\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    records = write_records(tmp_path / "in.jsonl", 40)
    out = tmp_path / "runs"
    killed = []

    def kill_the_template_once_a_kernel_runs():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            template = fork.FORKER.template
            if (template is not None and template.ready.done()
                    and (out / "forked" / "executed" / KEY / "batch-00000.ipynb").is_file()):
                time.sleep(0.3)  # its kernel sleeps in its setup cell
                template.process.kill()
                killed.append(template.process.pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_template_once_a_kernel_runs)
    killer.start()
    forked = run_notebooks([notebook], records, out=out, run_id="forked", batch_size=10, workers=1)
    killer.join()
    assert killed and forked.status == "succeeded" and fork.FORKER.off is None
    assert kernels(forked) == {("forked", None)}  # the kernel of the killed template finished; later ones forked again
    launched_run(notebook, records, out, monkeypatch, batch_size=10, workers=1)
    assert results(out / "forked") == results(out / "launched")
    assert none_left(os.getpid()) == []


@pytest.mark.slow
def test_ctrl_c_stops_the_run_its_kernels_and_template_and_resume_finishes_it(tmp_path, monkeypatch):
    setup = "import time\ntime.sleep(1)\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    records = write_records(tmp_path / "in.jsonl", 50)
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "mlsm_nb.cli", "run", str(notebook), "--records", str(records), "--out", str(out),
            "--run-id", "forked", "--batch-size", "10", "--workers", "1"]
    process = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    manifest = out / "forked" / "manifest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (manifest.is_file() and json.loads(manifest.read_text())
                                               .get("executions", {}).get(KEY)):
        time.sleep(0.1)
    assert leftover(process.pid)  # its template, and a kernel
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the runner's process group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert none_left(process.pid) == []
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    finished = load_manifest(manifest)
    assert kernels(finished) == {("forked", None)} and len(finished.executions[KEY]) == 5
    launched_run(notebook, records, out, monkeypatch, batch_size=10, workers=1)
    assert results(out / "forked") == results(out / "launched")


@pytest.mark.slow
def test_a_template_that_cannot_start_leaves_the_run_to_launched_kernels_said_once(tmp_path, monkeypatch, caplog):
    installed = tmp_path / "site"
    installed.mkdir()  # a module that ends the process importing it, when that is the template
    (installed / "mlsm_template_killer.py").write_text(
        "import os, sys\nif sys.argv[0].endswith(os.path.join('run', 'template.py')):\n    os._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(installed))
    setup = "import mlsm_template_killer\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    records = write_records(tmp_path / "in.jsonl", 30)
    out = tmp_path / "runs"
    manifest = run_notebooks([notebook], records, out=out, run_id="forked", batch_size=10, workers=1)
    assert manifest.status == "succeeded"
    [(kernel, why)] = kernels(manifest)
    assert kernel == "launched" and why.startswith(f"the kernel template died {fork.MAX_RESTARTS + 1} times")
    said = [r for r in caplog.records if r.name == fork.__name__ and r.levelname == "WARNING"]
    assert len(said) == 1 and "launched from now on" in said[0].getMessage()
    launched_run(notebook, records, out, monkeypatch, batch_size=10, workers=1)
    assert results(out / "forked") == results(out / "launched")
    assert leftover(os.getpid()) == []


@pytest.mark.slow
def test_the_template_runs_no_python_thread_and_leaves_modules_beside_a_notebook_to_the_kernel(tmp_path):
    (tmp_path / "json.py").write_text("")  # beside the notebook: the notebook's json, not the installed one
    template = fork.Template([], ["numpy", "json", "mlsm_no_such_module"], [str(tmp_path)])
    try:
        ready = template.ready.result(timeout=60)
    finally:
        template.close()
    assert ready["threads"] == 1  # OpenBLAS's native threads may run (numpy starts them): ready["native_threads"]
    assert "numpy" not in ready["skipped"] and {"json", "mlsm_no_such_module"} <= set(ready["skipped"])
    assert template.process.returncode == 0 and not pid_alive(template.process.pid)
