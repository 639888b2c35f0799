"""`mlsm-nb run` as a person runs it: in a terminal (a pseudo-terminal via `script`) and in a log."""

import shutil
import subprocess
import sys

import pytest

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell
from mlsm_nb.leads import save_leads

pytestmark = pytest.mark.slow

NOISE = ("Traceback", "without encryption", "KeyboardInterrupt", "zmq", "WARNING", "ERROR")


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "leads.jsonl"
    save_leads(path, 200, seed=3)
    return path


@pytest.fixture
def records(tmp_path):
    """One record for GOOD_CELLS' model."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "data": {"x": 1, "label": "a"}}\n')
    return path


def in_terminal(*args):
    """Run `mlsm-nb run ARGS` in a pseudo-terminal; (exit code, everything the terminal showed)."""
    command = " ".join([sys.executable, "-m", "mlsm_nb.cli", "run", *map(str, args)])
    done = subprocess.run([shutil.which("script"), "-qec", command, "/dev/null"], capture_output=True, text=True,
                          timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("engine", ["papermill", "inprocess"])
def test_run_in_a_terminal_shows_a_bar_and_no_noise(tmp_path, leads, engine):
    code, shown = in_terminal(NOTEBOOKS, "--records", leads, "--out", tmp_path, "--run-id", "t",
                              "--batch-size", 100, "--engine", engine)
    assert code == 0, shown
    assert "executions: 100%" in shown and "8/8" in shown and "200 records, 0 errors" in shown
    assert f"run t: succeeded ({engine} engine)" in shown
    assert not [word for word in NOISE if word in shown], shown


def test_log_gets_one_line_per_execution_and_no_noise(tmp_path, leads):
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", str(NOTEBOOKS), "--records", str(leads),
                           "--out", str(tmp_path), "--run-id", "l", "--batch-size", "100"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 8 and all(" records, 0 errors, " in line for line in lines), lines
    assert lines[-1].startswith("[8/8] ") and sum("champion@1.0.0 batch " in line for line in lines) == 2


def test_what_a_kernel_prints_itself_goes_to_its_log_not_to_the_terminal(tmp_path, make_notebook, records):
    # ipykernel logs to its process's stderr, e.g. a traceback when a message races its shutdown on a busy machine
    noisy = make_notebook("noisy.ipynb", replace_cell(GOOD_CELLS, "setup", (
        "import atexit, os\n"
        "atexit.register(os.write, 2, b'Traceback (most recent call last): zmq at exit\\n')\n"
        "FACTOR = 2")))
    code, shown = in_terminal(noisy, "--records", records, "--out", tmp_path, "--run-id", "n")
    assert code == 0 and "run n: succeeded (papermill engine)" in shown, shown
    assert not [word for word in NOISE if word in shown], shown
    log = tmp_path / "n" / "executed" / "tiny@1.0" / "batch-00000.kernel.log"
    assert log.read_text() == "Traceback (most recent call last): zmq at exit\n"


def test_a_kernel_that_dies_is_one_line_naming_its_log(tmp_path, make_notebook, records):
    dies = make_notebook("dies.ipynb", replace_cell(GOOD_CELLS, "setup", (
        "import logging, os\n"
        "logging.getLogger('IPKernelApp').critical('Fatal Python error: Segmentation fault')\n"
        "os._exit(139)")))
    code, shown = in_terminal(dies, "--records", records, "--out", tmp_path, "--run-id", "d")
    assert code == 1 and "run d: failed (papermill engine)" in shown, shown
    log = "executed/tiny@1.0/batch-00000.kernel.log"
    assert (f"error: {dies}:cell 3 [setup]: batch 0: DeadKernelError: Kernel died (kernel log: {log})\n"
            in shown), shown
    assert not [word for word in NOISE if word in shown] and "Fatal" not in shown, shown
    assert (tmp_path / "d" / log).read_text() == "[IPKernelApp] CRITICAL | Fatal Python error: Segmentation fault\n"


def test_timeout_is_one_line_without_a_traceback(tmp_path, make_notebook, records):
    hang = make_notebook("hang.ipynb", replace_cell(GOOD_CELLS, "setup", "import time\ntime.sleep(60)"))
    done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "run", str(hang), "--records", str(records),
                           "--out", str(tmp_path), "--run-id", "h", "--timeout", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(f"error: {hang}:cell 3 [setup]: batch 0: ")
    assert "Timeout" in errors[0] or "timed out" in errors[0]
    assert not [word for word in NOISE if word in done.stderr + done.stdout], done.stderr


def test_a_kernel_error_still_reaches_the_user(tmp_path, make_notebook, records):
    broken = make_notebook("broken.ipynb", replace_cell(GOOD_CELLS, "setup", "raise RuntimeError('weights missing')"))
    code, shown = in_terminal(broken, "--records", records, "--out", tmp_path, "--run-id", "b")
    assert code == 1
    assert f"error: {broken}:cell 3 [setup]: batch 0: RuntimeError: weights missing" in shown
    assert "run b: failed (papermill engine)" in shown and "Traceback" not in shown
