"""The kernel template: a process that has imported ipykernel, IPython and the run's installed imports, and
forks one new kernel per request (run as ``python -m mlsm_nb.run.template``; `run.fork` drives it).

Before it forks, this process runs no Python thread, event loop or ZMQ context (ipykernel's, started in
each child, would not survive a fork); native threads of fork-safe libraries may run (OpenBLAS starts
its pool on ``import numpy``: a forked child has one thread of it until it calls BLAS, which OpenBLAS
handles with its own fork handlers). It talks to the runner over two pipes: requests on stdin, one JSON
object a line ({"id", "argv", "cwd", "env", "log"}); replies on ``--reply-fd``: {"ready", ...} once,
then {"id", "pid"} per fork and {"exited", "code", "cpu"} per child it reaped (``wait4``: the child's
whole-life CPU, which the runner cannot see, as the child is not its own). At the end of its input it
forks no more, waits for its children and exits.

A child is a new session (signals to its process group reach it and what it starts, as for a launched
kernel), with the request's working directory, environment and log (its standard output and error), the
notebook's folder first on ``sys.path`` (as ``python -m ipykernel_launcher`` puts it there), then starts
ipykernel's `IPKernelApp` on the request's connection file. It watches the runner, not its parent: a
child outlives the template (the runner restarts a template that died) but not the runner.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import sys
import threading
import time

from .._gc import freeze_survivors

# What every kernel imports as it starts (IPKernelApp, its shell, its debugger: debugpy, a third of a
# kernel's start; what they import as the app initialises) and stops (psutil, to find the kernel's
# children), before any of the notebooks' modules.
BASE_MODULES = ("IPython", "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.debugger",
                "IPython.core.completerlib", "IPython.extensions.storemagic", "sqlite3", "faulthandler",
                "tornado.platform.asyncio", "psutil",
                # what a kernel imports at its first execution
                "IPython.core.oinspect", "IPython.core.logger", "importlib.resources.readers", "importlib.readers")
CHANNEL_THREAD_WAIT = 2.0  # seconds a kernel's control thread gets to finish its last message as it exits
RUNNER_POLL = 1.0  # seconds between a child's checks that the runner still runs (as ipykernel's parent poller)


def main(argv: list[str]) -> None:
    reply_fd, runner, notebook_dirs, modules = int(argv[0]), int(argv[1]), json.loads(argv[2]), argv[3:]
    replies = os.fdopen(reply_fd, "w", buffering=1)
    request = _serve(replies, runner, notebook_dirs, modules)
    if request is not None:  # in a child: the kernel runs, then this interpreter exits as a launched kernel's does
        replies.close()
        _kernel(request, runner)


def _preload(notebook_dirs: list[str], modules: list[str]) -> dict:
    """Import ipykernel, IPython and the installed `modules` (not those inside `notebook_dirs`); what
    happened, for the ready reply. A module that fails to import is left to the kernel, which reports it
    in the cell that imports it; one that starts a thread ends the template (the runner leaves it out)."""
    import importlib.util

    started, cpu = time.perf_counter(), time.process_time()
    # What ipykernel sets as it starts, before matplotlib (if preloaded) reads it at import.
    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    skipped = []
    for name in (*BASE_MODULES, *modules):
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        origin, top = getattr(found, "origin", None) or "", name.split(".")[0]
        # A module beside a notebook is the notebook's (a launched kernel imports it from there), whatever is installed.
        if found is None or any(origin.startswith(d + os.sep) or os.path.exists(os.path.join(d, top + ".py"))
                                or os.path.isdir(os.path.join(d, top)) for d in notebook_dirs):
            skipped.append(name)
            continue
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - the kernel imports it again, and reports the error in its cell
            skipped.append(name)
        if threading.active_count() > 1:
            return {"threaded": name}
    _first_use()
    return {"ready": os.getpid(), "skipped": skipped, "seconds": round(time.perf_counter() - started, 3),
            "cpu": round(time.process_time() - cpu, 3), "threads": threading.active_count(),
            "native_threads": len(os.listdir("/proc/self/task"))}  # e.g. OpenBLAS's pool, started by numpy


def _first_use() -> None:
    """Build what a preloaded package builds only as it is first used, so that kernels share it: pyarrow's
    conversion of Python strings and its Unicode case tables (pandas' strings are pyarrow's: a kernel whose
    score lowercased a column spent 4.5 ms of its CPU building them). Library code only, on a literal, in
    this thread: it starts no thread, and leaves what a launched kernel would build the same way."""
    if "pyarrow.compute" in sys.modules:
        import pyarrow
        import pyarrow.compute

        with contextlib.suppress(Exception):  # a kernel that needs them builds them, and reports what fails
            pyarrow.compute.utf8_lower(pyarrow.array(["A"]))


def _serve(replies, runner: int, notebook_dirs: list[str], modules: list[str]) -> dict | None:
    """Fork a child per request until the input ends; returns the request in a child, None in the template."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle (the template has its own session)
    del sys.path[0]  # the runner's folder (python -m puts it first): installed packages only
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)  # what imports print is not the runner's output
    try:
        ready = _preload(notebook_dirs, modules)
    finally:
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
    _say(replies, ready)
    if "ready" not in ready:
        return None
    # What the template holds is never collected in a child: the collector leaves it alone, so a child does not
    # copy the template's memory page by page as it walks it (a kernel's whole-life CPU: 0.31 s without, 0.19 s with).
    freeze_survivors()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes select
    children: set[int] = set()
    pending, reading = b"", True
    while reading or children:
        readable = select.select([0, wake_r] if reading else [wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(replies, children)
        if 0 in readable:
            chunk = os.read(0, 1 << 16)
            reading = bool(chunk)  # the runner closed the template (or died): no more forks
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    return request
                children.add(pid)
                _say(replies, {"id": request["id"], "pid": pid})
    return None


def _reap(replies, children: set[int]) -> None:
    """Report each child that exited: its exit code (negative: the signal that ended it) and whole-life CPU."""
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _say(replies, {"exited": pid, "code": os.waitstatus_to_exitcode(status),
                       "cpu": usage.ru_utime + usage.ru_stime})


def _say(replies, message: dict) -> None:
    try:
        replies.write(json.dumps(message) + "\n")
    except BrokenPipeError:  # the runner is gone; its kernels end themselves (see `_watch`)
        pass


def _kernel(request: dict, runner: int) -> None:
    """In a new child: the request's session, files, directory and environment, then ipykernel."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if request["log"]:
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log, 1), os.dup2(log, 2)
        os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "numpy" in sys.modules:  # numpy seeds its global generator at import: each kernel gets its own, as if launched
        sys.modules["numpy"].random.seed()
    threading.Thread(target=_watch, args=(runner,), daemon=True, name="mlsm-runner-watch").start()
    import importlib.util

    from ipykernel import kernelapp

    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *request["argv"]]
    # The runner is watched above; ipykernel's parent poller would watch this template (1: no poller, and
    # no banner for a terminal, as for a kernel that has a parent).
    kernelapp.IPKernelApp.launch_instance([*request["argv"], "--IPKernelApp.parent_handle=1"])
    _let_channel_threads_finish(kernelapp.IPKernelApp.instance())
    # What a launched kernel does as it exits: the exit functions (IPython's empties the namespace, which closes
    # what the cells left open), flushed output; not the interpreter's teardown of every module, the template's
    # included, which would copy the template's memory page by page (a fifth of a kernel's CPU).
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _let_channel_threads_finish(app) -> None:
    """Stop the kernel's control (and shell channel) thread and wait for it, before ipykernel's exit function
    `IPKernelApp.close` stops IOPub. The control thread answers the shutdown request, then flushes the
    kernel's output through IOPub; when `close` had stopped IOPub first, that flush waited out its timeout
    while `close` waited for the thread, and the kernel was ended with SIGTERM 2.5 s later
    (posit-dev/positron#7142): one kernel in six on this machine, seconds at the end of a run."""
    for thread in (app.control_thread, app.shell_channel_thread):
        if thread is not None and thread.is_alive():
            thread.stop()
            thread.join(timeout=CHANNEL_THREAD_WAIT)


def _watch(runner: int) -> None:
    from mlsm_nb.processes import pid_alive

    while pid_alive(runner):
        time.sleep(RUNNER_POLL)
    os._exit(1)  # as ipykernel's parent poller ends a kernel whose runner is gone


if __name__ == "__main__":
    main(sys.argv[1:])
