"""Whether a process runs: a killed process its parent has not collected yet does not."""

import os
import signal
import subprocess
import sys
import time

from mlsm_nb.processes import pid_alive


def test_a_running_process_a_zombie_and_no_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:  # not waited for: a zombie, once it died
            time.sleep(0.02)
        assert not pid_alive(child.pid)
        assert os.waitpid(child.pid, os.WNOHANG)[0] == child.pid  # it was a zombie until now
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(2 ** 70)
    assert pid_alive(os.getpid())
