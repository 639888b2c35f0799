"""Whether a process still runs: what a run's lock and a kernel's runtime files were left by."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one killed and not yet collected by its parent does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # not a process id
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: os.kill is all there is to know
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]  # a zombie holds no files, no locks
