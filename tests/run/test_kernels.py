"""The papermill engine starts a kernel per execution (and does not wait for it to exit); with --warm-kernels it
keeps a notebook's kernel between batches: the next batch runs in it after a reset (nothing of the last
batch's namespace, execution count from 1, working directory restored), a kernel whose execution failed is
never reused, a thread keeps at most its share of the kernels, and no kernel outlives the run."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records
from mlsm_nb.processes import pid_alive as alive
from mlsm_nb.run import merge
from mlsm_nb.run.kernels import QuietKernelManager, ThreadKernels, remove_stale_kernel_files
from mlsm_nb.run.orchestrate import run_notebooks

pytestmark = pytest.mark.slow

# A setup cell that shows which kernel ran it, what it saw of a name the last batch left, and its directory;
# then litters the kernel: a global, a changed working directory, an open pyplot figure.
PROBE = ("import os\n"
         "import matplotlib\n"
         "matplotlib.use('Agg')\n"
         "import matplotlib.pyplot as plt\n"
         "print(json_dumps := __import__('json').dumps({'pid': os.getpid(), 'left': globals().get('LEFT'),\n"
         "      'cwd': os.getcwd(), 'figures': len(plt.get_fignums())}))\n"
         "LEFT = mlsm_batch_path\n"
         "plt.figure()\n"
         "os.chdir('/')\n"
         "FACTOR = 2")


@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path / "in.jsonl", 30)


def kill(km):
    """SIGKILL a kernel (launched or forked), and wait until its manager knows it exited (a forked kernel's
    exit comes from its template)."""
    from jupyter_core.utils import run_sync

    os.kill(km.provisioner.pid, signal.SIGKILL)
    while run_sync(km.provisioner.poll)() is None:
        time.sleep(0.05)


def probes(run_dir, key="tiny@1.0"):
    """What the probe cell printed in each batch's executed notebook, and the notebook's execution counts."""
    seen = []
    for path in sorted((run_dir / "executed" / key).glob("batch-*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        probe = next(c for c in cells if "json_dumps" in c.source)
        seen.append({**json.loads(probe.outputs[0]["text"]),
                     "counts": [c.execution_count for c in cells if c.cell_type == "code"]})
    return seen


def test_a_notebooks_batches_run_in_one_kernel_reset_between_them(tmp_path, records):
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", PROBE))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="w", batch_size=10, workers=1,
                             warm_kernels=True)
    assert manifest.status == "succeeded" and manifest.setting("warm_kernels") is True
    assert [manifest.executions["tiny@1.0"][b].kernel_runs for b in (0, 1, 2)] == [0, 1, 2]
    seen = probes(tmp_path / "runs" / "w")
    assert len(seen) == 3 and len({s["pid"] for s in seen}) == 1  # one kernel for the three batches
    for s in seen:  # as if fresh: no name, figure or directory change of the last batch
        assert s["left"] is None and s["figures"] == 0 and s["cwd"] == str(tmp_path / "nb")
        assert s["counts"] == list(range(1, len(s["counts"]) + 1))
    assert not alive(seen[0]["pid"])  # shut down with the run


def test_by_default_every_execution_has_a_kernel_of_its_own(tmp_path, records):
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", PROBE))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="f", batch_size=10, workers=1)
    assert manifest.status == "succeeded" and manifest.setting("warm_kernels") is False
    assert all(e.kernel_runs is None for e in manifest.executions["tiny@1.0"].values())
    seen = probes(tmp_path / "runs" / "f")
    assert len({s["pid"] for s in seen}) == 3 and not any(alive(s["pid"]) for s in seen)


def test_a_kernel_whose_execution_failed_is_not_reused(tmp_path, records):
    setup = PROBE + "\nif mlsm_batch_path.endswith('batch-00001.jsonl'):\n    raise ValueError('bad batch')"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="b", batch_size=10, workers=1,
                             warm_kernels=True)
    assert manifest.status == "failed" and manifest.failed_executions == 1
    error = manifest.executions["tiny@1.0"][1].error
    assert "tiny.ipynb:cell 3 [setup]: batch 1: ValueError: bad batch" in error
    first, failed, after = probes(tmp_path / "runs" / "b")
    assert first["pid"] == failed["pid"] != after["pid"] and after["left"] is None
    assert not alive(first["pid"]) and not alive(after["pid"])


def test_the_merge_takes_each_kernels_counts_and_reads_only_what_no_kernel_counted(tmp_path, records, monkeypatch):
    """A kernel counts the entries it wrote (its runner cell's facts), so the merge copies them unread; a failed
    execution's entries, written by the runner, are read and counted by the merge."""
    read = []
    entries = merge._entries
    monkeypatch.setattr(merge, "_entries", lambda path, lines: read.append(path.name) or entries(path, lines))
    setup = "FACTOR = 2\nif mlsm_batch_path.endswith('batch-00001.jsonl'):\n    raise ValueError('bad batch')"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", setup))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="t", batch_size=10, workers=1)
    assert manifest.status == "failed" and read == ["batch-00001.jsonl"]
    stats = {batch: (counts["tiny@1.0"]["records"], counts["tiny@1.0"]["errors"], counts["tiny@1.0"]["scored"])
             for batch, counts in manifest.batch_stats.items()}
    assert stats == {0: (10, {}, 10), 1: (10, {"notebook_failed": 10}, 0), 2: (10, {}, 10)}
    saved = json.loads((tmp_path / "runs" / "t" / "manifest.json").read_text())
    assert "tally" not in saved["executions"]["tiny@1.0"]["0"]  # the merge's, not the manifest's


def test_a_kept_kernel_that_died_is_replaced(tmp_path):
    from jupyter_core.utils import run_sync

    kernels = ThreadKernels(limit=2)
    km = kernels.new(QuietKernelManager)
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    run_sync(kernels.keep)("nb", km, str(tmp_path))
    assert run_sync(kernels.take)("nb") is km  # alive and reset: handed back
    run_sync(kernels.keep)("nb", km, str(tmp_path))
    kill(km)
    assert run_sync(kernels.take)("nb") is None  # dead: the caller starts a new one
    assert not os.path.exists(km.connection_file)
    run_sync(kernels.close)()


def test_a_thread_keeps_at_most_its_limit_the_least_recently_used_stopped_first(tmp_path):
    from jupyter_core.utils import run_sync

    kernels = ThreadKernels(limit=1)
    first, second = kernels.new(QuietKernelManager), kernels.new(QuietKernelManager)
    for km in (first, second):
        run_sync(km.start_kernel)(cwd=str(tmp_path))
    run_sync(kernels.keep)("a", first, str(tmp_path))
    pid = first.provisioner.pid
    run_sync(kernels.keep)("b", second, str(tmp_path))
    assert first.shutting_down  # over the limit: asked to stop; the thread goes on while it exits
    assert run_sync(kernels.take)("a") is None and run_sync(kernels.take)("b") is second
    run_sync(asyncio.sleep)(1)  # the thread's loop runs again: the kernel has exited and is cleaned up
    assert not first.has_kernel and not os.path.exists(first.connection_file) and not alive(pid)
    run_sync(kernels.keep)("b", second, str(tmp_path))
    run_sync(kernels.close)()
    assert not second.has_kernel


def test_by_default_a_thread_stops_a_finished_executions_kernel_while_it_goes_on(tmp_path):
    from jupyter_core.utils import run_sync

    kernels = ThreadKernels(limit=0)
    km = kernels.new(QuietKernelManager)
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    pid = km.provisioner.pid
    run_sync(kernels.keep)("nb", km, str(tmp_path))
    assert km.shutting_down and km.has_kernel  # asked to stop, not waited for
    assert run_sync(kernels.take)("nb") is None  # never kept
    run_sync(kernels.close)()  # as the pool stops: what is stopping has stopped
    assert not km.has_kernel and not os.path.exists(km.connection_file) and not alive(pid)


def test_a_background_shutdown_that_fails_leaves_no_unredacted_log_and_no_traceback(tmp_path, monkeypatch, caplog):
    import gc

    from jupyter_core.utils import run_sync

    from mlsm_nb.run import kernels as module
    from mlsm_nb.run.kernels import kernel_manager_class

    def disk_full(path, secrets):
        raise OSError(28, "No space left on device")

    kernels = ThreadKernels(limit=0)
    km = kernels.new(kernel_manager_class(log=tmp_path / "k.log", secrets={"db": "hunter2-PLANTED"}))
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    monkeypatch.setattr(module, "kernel_log_written", disk_full)  # the log cannot be redacted when it stops
    run_sync(kernels.keep)("nb", km, str(tmp_path))
    run_sync(asyncio.sleep)(1.5)  # the shutdown finishes, and fails, on the thread's loop
    gc.collect()
    assert not (tmp_path / "k.log").exists() and not kernels._stopping
    assert "never retrieved" not in caplog.text
    run_sync(kernels.close)()


def test_files_of_a_killed_runs_kernels_are_removed_by_the_next_run(tmp_path, monkeypatch):
    import subprocess
    import sys

    runtime = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: IPC socket paths are limited
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    code = ("import os, signal\n"
            "from jupyter_core.utils import run_sync\n"
            "from mlsm_nb.run.kernels import QuietKernelManager\n"
            "km = QuietKernelManager(kernel_name='python3')\n"
            "run_sync(km.start_kernel)()\n"
            "km.client().start_channels()\n"
            "run_sync(km.client().wait_for_ready)(timeout=60)  # its sockets are bound\n"
            "os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code], stderr=subprocess.DEVNULL).returncode == -9
    left = sorted(p.name for p in runtime.iterdir())
    assert any(name.endswith(".json") for name in left) and any("-ipc-" in name for name in left)
    live = QuietKernelManager(kernel_name="python3")  # this process's: alive, so kept
    open(live.connection_file, "w").close()
    assert remove_stale_kernel_files() == len(left)
    assert sorted(os.listdir(runtime)) == [os.path.basename(live.connection_file)]
    shutil.rmtree(runtime)


# A setup cell that writes to its kernel's own log (ipykernel's, the process's stderr), as ipykernel does
# when a message races its shutdown; then, at exit, once more.
KERNEL_LOG = ("import atexit, logging, os\n"
              "logging.getLogger('IPKernelApp').error('kernel log line from ' + mlsm_batch_path[-17:])\n"
              "atexit.register(os.write, 2, b'at exit\\n')\n"
              "FACTOR = 2")


@pytest.mark.parametrize("warm", [False, True])
def test_a_kernels_own_output_goes_to_a_log_next_to_the_executed_notebook(tmp_path, records, warm):
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", KERNEL_LOG))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="k", batch_size=10, workers=1,
                             warm_kernels=warm)
    assert manifest.status == "succeeded"
    run_dir, executions = tmp_path / "runs" / "k", manifest.executions["tiny@1.0"]
    logs = {b: executions[b].kernel_log for b in (0, 1, 2)}
    if warm:  # one kernel ran the three batches: its log is the first execution's
        assert set(logs.values()) == {"executed/tiny@1.0/batch-00000.kernel.log"}
        text = (run_dir / logs[0]).read_text()
        assert text.count("kernel log line from ") == 3 and text.endswith("at exit\n")  # stopped with the run
    else:
        for batch, log in logs.items():
            assert log == f"executed/tiny@1.0/batch-0000{batch}.kernel.log"
            text = (run_dir / log).read_text()
            assert f"ERROR | kernel log line from batch-0000{batch}.jsonl\n" in text and text.endswith("at exit\n")


def test_a_kernel_log_written_only_as_the_kernel_stops_is_named_too(tmp_path, records):
    # e.g. libzmq's "Assertion failed: pfd.revents & POLLIN" as a kernel exits on a loaded machine: the
    # execution's entry is recorded by then
    at_exit = "import atexit, os\natexit.register(os.write, 2, b'at exit only\\n')\nFACTOR = 2"
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "setup", at_exit))
    manifest = run_notebooks([notebook], records, out=tmp_path / "runs", run_id="x", batch_size=10, workers=1)
    assert manifest.status == "succeeded"
    for batch, entry in manifest.executions["tiny@1.0"].items():
        assert entry.kernel_log == f"executed/tiny@1.0/batch-0000{batch}.kernel.log"
        assert (tmp_path / "runs" / "x" / entry.kernel_log).read_text() == "at exit only\n"


def test_an_empty_kernel_log_is_removed_and_a_dead_kernels_is_named_in_the_error(tmp_path, records):
    dies = "import logging, os\nlogging.getLogger('IPKernelApp').error('out of memory, say')\nos._exit(3)"
    good = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    manifest = run_notebooks([good], records, out=tmp_path / "runs", run_id="e", batch_size=10, workers=1)
    assert manifest.status == "succeeded"
    # Nothing written: nothing kept. (A loaded machine can make a healthy kernel log a race as it stops;
    # such a log is kept, named in the manifest and not empty.)
    run_dir = tmp_path / "runs" / "e"
    kept = {str(log.relative_to(run_dir)): log.read_text() for log in run_dir.rglob("*.log")}
    named = {e.kernel_log for e in manifest.executions["tiny@1.0"].values() if e.kernel_log}
    assert set(kept) == named and all(kept.values()), kept
    write_notebook(good, replace_cell(GOOD_CELLS, "setup", dies))
    manifest = run_notebooks([good], records, out=tmp_path / "runs", run_id="d", batch_size=30, workers=1)
    error = manifest.executions["tiny@1.0"][0].error
    assert manifest.status == "failed" and "DeadKernelError" in error
    assert manifest.executions["tiny@1.0"][0].kernel_log == "executed/tiny@1.0/batch-00000.kernel.log"
    assert error.endswith(" (kernel log: executed/tiny@1.0/batch-00000.kernel.log)"), error
    assert "out of memory, say" in (tmp_path / "runs" / "d" / "executed/tiny@1.0/batch-00000.kernel.log").read_text()


def test_a_kernels_log_is_new_redacted_when_it_stops_and_removed_if_empty_even_when_it_was_killed(tmp_path):
    from jupyter_core.utils import run_sync

    from mlsm_nb.run.kernels import kernel_log_written, kernel_manager_class

    log = tmp_path / "k.log"
    log.write_text("a failed attempt's line\n")  # e.g. the batch's failed execution, before --resume
    km = kernel_manager_class(log=log, secrets={"db": "hunter2-PLANTED"})(kernel_name="python3")
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    client = km.client()
    client.start_channels()
    run_sync(client.wait_for_ready)(timeout=60)
    reply = run_sync(client.execute_interactive)(
        "import atexit, os\nos.write(2, b'token hunter2-PLANTED\\n')\n"
        "atexit.register(os.write, 2, b'connecting with hunter2-PLANTED\\n')", timeout=60)
    assert reply["content"]["status"] == "ok"
    assert kernel_log_written(log, {"db": "hunter2-PLANTED"})  # after an execution: redacted, so shorter
    km.stop_client()
    run_sync(km.shutdown_kernel)()
    assert log.read_text() == "token ***\nconnecting with ***\n"  # what came after follows it, no gap

    km = kernel_manager_class(log=log)(kernel_name="python3")
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    kill(km)  # as the OOM killer would: nothing written
    run_sync(km.cleanup_resources)()  # what nbclient calls for a kernel that died
    assert not log.exists()


def test_a_new_kernel_is_ready_on_the_first_kernel_info_its_welcome_on_iopub(tmp_path):
    # The client connects before a new kernel binds its sockets; it tries again within RECONNECT_MS, and the
    # kernel's welcome on IOPub says the subscription is live: no kernel_info is asked twice.
    from jupyter_core.utils import run_sync

    kernels = ThreadKernels(limit=0)
    for _ in range(3):
        km = kernels.new(QuietKernelManager)
        run_sync(km.start_kernel)(cwd=str(tmp_path))
        client = km.client()
        asked = []
        ask = client.kernel_info
        client.kernel_info = lambda asked=asked, ask=ask: asked.append(ask()) or asked[-1]
        client.start_channels()
        run_sync(client.wait_for_ready)(timeout=60)
        assert len(asked) == 1
        run_sync(kernels.discard)(km)
    run_sync(kernels.close)()
