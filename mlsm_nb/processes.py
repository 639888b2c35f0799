"""Whether a process still runs: what a run's lock, a kernel's runtime files and a kernel's board were left
by."""

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


def remove_files_of_gone(folder: str | Path, prefix: str) -> int:
    """Remove the files in `folder` named `<prefix><pid>-...` whose process `pid` (on this host) is gone: a
    killed run left them behind. Returns how many."""
    removed = 0
    for path in Path(folder).glob(f"{prefix}*"):
        runner = path.name[len(prefix):].split("-", 1)[0]
        if runner.isdigit() and not pid_alive(int(runner)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
