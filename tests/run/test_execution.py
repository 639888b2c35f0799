"""run.execution: what an execution records about where it ran."""

import subprocess
import sys


def test_local_executions_do_not_import_dask():
    # Importing distributed costs a worker process about half a second of CPU; a local worker has no use for it.
    code = ("import sys; from mlsm_nb.run.execution import worker_name; "
            "print(worker_name(), 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["local", "False"], done.stderr
