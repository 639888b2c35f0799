"""Kernels forked from a template: a papermill execution's new kernel, started in about a tenth of the CPU.

A launched kernel is a new Python that imports ipykernel, IPython and the notebook's libraries: about
0.4 s of CPU before its first cell, more than scoring a batch often costs. Instead, the run keeps one
*template* process (`run.template`) that has imported them once, and each kernel is a fork of it: a new
process with a fresh namespace, nothing of any other execution in it (the template never runs a cell).

`ForkProvisioner` is a jupyter_client kernel provisioner (entry point ``mlsm-fork`` of the group
``jupyter_client.kernel_provisioners``), so nbclient and papermill drive a forked kernel as a launched
one: connection file, signals (to its process group), interrupt, shutdown, kill, exit status (the
template reports it, with the kernel's whole-life CPU). The kernel managers of `run.kernels` choose it;
it launches the kernel as `LocalProvisioner` does, and says why, when forking is off
(``MLSM_NB_FORK_KERNELS=0``), not Linux, the kernelspec does not run ipykernel in this Python, the
manager asks for a launched kernel (``--warm-kernels``, Dask), or the template cannot start or keeps
dying.

`FORKER` keeps the template: started as the run starts (`start`, after `prepare`: with the installed
modules the run's setup and score cells import, read with `ast`) or else at the first fork, restarted if
it dies (at most `MAX_RESTARTS` times a run, then kernels are launched, said once in the log), and closed
when the last pool thread that forked kernels releases them (`run.kernels.release_thread_kernels`), or
when the run ends.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from jupyter_client.provisioning import LocalProvisioner

from ..processes import pid_alive

if TYPE_CHECKING:
    from ..notebook.contract import NotebookSpec

SWITCH = "MLSM_NB_FORK_KERNELS"  # "0": launch every kernel, as before forking existed
PROVISIONER = "mlsm-fork"  # the provisioner's entry-point name
MAX_RESTARTS = 3  # a template that died is started again this often in a run; then kernels are launched
CLOSE_TIMEOUT = 10.0  # seconds a closed template may take to exit (its last kernels are stopping) before it is killed
UNKNOWN_EXIT = 1  # the exit status of a kernel whose template died before it (no one left to report it)
_IMPORTING_TAGS = ("setup", "score")
# what the runner's cell of every production notebook imports (run.notebooks), its overview's histogram included
RUNNER_MODULES = ("mlsm_nb.run.runtime", "mlsm_nb.histogram")
# What a package imports only as it is first used, not as it is imported: every kernel that uses it would import
# them again (a kernel of the lead_lr example imported these, 12 ms of its CPU: pandas' strings are pyarrow's,
# and pandas reads pyarrow's version, with `pyarrow.vendored.version`, as it makes its first string column).
FIRST_USE_MODULES = {"pandas": ("pyarrow.pandas_compat", "pandas.core.methods.to_dict", "pyarrow.vendored.version")}

log = logging.getLogger(__name__)


class TemplateGone(Exception):
    """The template cannot fork (it exited, was closed, or could not start): the message says why."""


def unavailable() -> str | None:
    """Why kernels cannot be forked in this process at all, or None."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{SWITCH}={os.environ[SWITCH]}"
    if sys.platform != "linux":
        return f"kernels are forked on Linux only, not on {sys.platform}"
    return None


def preload_modules(specs: Sequence[NotebookSpec]) -> list[str]:
    """The modules the notebooks' setup and score cells import (read with `ast`, never run), and the runner
    cell's; whether each is installed (not beside a notebook) is for the template to find out."""
    names: set[str] = set(RUNNER_MODULES)
    for spec in specs:
        for cell in spec.cells:
            if cell.tag not in _IMPORTING_TAGS:
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:  # lint reports it; the kernel fails on it in its cell
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
    for package in {name.split(".")[0] for name in names} & FIRST_USE_MODULES.keys():
        names.update(FIRST_USE_MODULES[package])
    return sorted(names)


class Template:
    """The runner's side of one template process: fork requests and the template's replies (read by a thread)."""

    def __init__(self, options: list[str], modules: Sequence[str], notebook_dirs: Sequence[str]):
        self.options = options  # the interpreter's, as the kernelspec gives them (e.g. -Xfrozen_modules=off)
        reply_r, reply_w = os.pipe()
        # Its own session: Ctrl-C in the terminal reaches the runner, which stops its kernels and then the template.
        self.process = subprocess.Popen(
            [sys.executable, *options, "-m", "mlsm_nb.run.template", str(reply_w), str(os.getpid()),
             json.dumps(list(notebook_dirs)), *modules], stdin=subprocess.PIPE, pass_fds=(reply_w,),
            start_new_session=True)
        os.close(reply_w)
        self._replies = os.fdopen(reply_r, "rb")
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, Future] = {}
        self.exits: dict[int, tuple[int, float]] = {}  # kernel pid -> (exit status, CPU seconds over its whole life)
        self.ready: Future = Future()  # the template's first reply: its imports (or the module that started a thread)
        self.closed = False
        self.ended = threading.Event()  # set once the template exited and every reply was read
        threading.Thread(target=self._read, name="mlsm-template-replies", daemon=True).start()

    def fork(self, argv: list[str], cwd: str, env: dict[str, str], log_path: str | None) -> Future:
        """Ask for a new kernel; the future's result is its process id (TemplateGone if the template is gone)."""
        future: Future = Future()
        with self._lock:
            if self.closed or self.ended.is_set():
                raise TemplateGone("the kernel template was closed" if self.closed else self._why_ended())
            ident = next(self._ids)
            self._pending[ident] = future
            request = {"id": ident, "argv": argv, "cwd": cwd, "env": env, "log": log_path}
            try:
                self.process.stdin.write(json.dumps(request).encode() + b"\n")
                self.process.stdin.flush()
            except OSError:
                self._pending.pop(ident)
                raise TemplateGone(self._why_ended()) from None
        return future

    def _read(self) -> None:
        for line in self._replies:
            reply = json.loads(line)
            if "exited" in reply:
                self.exits[reply["exited"]] = (reply["code"], reply["cpu"])
            elif "id" in reply:
                with self._lock:
                    future = self._pending.pop(reply["id"])
                future.set_result(reply["pid"])
            else:
                self.ready.set_result(reply)
        self.process.wait()
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            self.ended.set()
        if not self.ready.done():
            self.ready.set_exception(TemplateGone(f"the kernel template could not start ({self._why_ended()})"))
        for future in pending:
            future.set_exception(TemplateGone(self._why_ended()))

    def _why_ended(self) -> str:
        code = self.process.poll()
        return ("the kernel template exited" if code is None or code >= 0 else
                f"the kernel template was killed (signal {-code})")

    def close(self) -> None:
        """No more forks: the template exits once its kernels have; killed if that takes over CLOSE_TIMEOUT."""
        with self._lock:
            self.closed = True
            try:
                self.process.stdin.close()
            except OSError:  # it is gone already
                pass
        if not self.ended.wait(CLOSE_TIMEOUT):
            self.process.kill()
            self.ended.wait()


class Forker:
    """The run's template (one per process): started when first needed, restarted when it dies, closed when
    the last thread that forked kernels is done (see the module's docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._modules: list[str] = []
        self._dirs: list[str] = []
        self._excluded: set[str] = set()  # modules that started a thread as the template imported them
        self.template: Template | None = None
        self.off: str | None = None  # why this run launches its kernels, once forking failed
        self._deaths = 0
        self._last_death = ""
        self._users = 0

    def prepare(self, specs: Sequence[NotebookSpec]) -> None:
        """Once per run, before its executions: what the template imports. Closes a template of another run."""
        with self._lock:
            modules = preload_modules(specs)
            dirs = sorted({str(spec.path.resolve().parent) for spec in specs})
            if self.template is not None and (modules, dirs) != (self._modules, self._dirs):
                self._close_locked()
            self._modules, self._dirs, self.off, self._deaths = modules, dirs, None, 0

    def start(self, options: list[str]) -> None:
        """Start the template now, with the interpreter's `options`, rather than at the first fork: it imports
        while the run reads its first batch (a template that cannot start leaves that to the first fork)."""
        try:
            self._template(options)
        except TemplateGone:
            pass

    def use(self) -> None:
        """A pool thread will fork kernels (it calls `release` when it is done)."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A pool thread's kernels have all stopped; the last one closes the template."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if not self._users:
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.template is not None:
            self.template.close()
            self.template = None

    async def fork(self, options: list[str], argv: list[str], cwd: str, env: dict[str, str],
                   log_path: str | None) -> tuple[Template, int]:
        """A new kernel with ipykernel's arguments `argv`, from a template run with the interpreter's `options`
        (the kernelspec's): (its template, its process id); TemplateGone (saying why) when kernels are launched."""
        while True:
            template = self._template(options)
            try:
                return template, await asyncio.wrap_future(template.fork(argv, cwd, env, log_path))
            except TemplateGone as exc:
                self._lost(template, exc)

    def _template(self, options: list[str]) -> Template:
        with self._lock:
            if self.off:
                raise TemplateGone(self.off)
            if self.template is not None and self.template.ended.is_set() and not self.template.closed:
                self._deaths += 1
                self.template = None
                if self._deaths > MAX_RESTARTS:
                    self._give_up(f"the kernel template died {self._deaths} times (last: {self._last_death})")
                    raise TemplateGone(self.off)
            if self.template is not None and self.template.options != options:
                raise TemplateGone("the kernelspec's interpreter options differ from the kernel template's")
            if self.template is None or self.template.closed:
                modules = [m for m in self._modules if m not in self._excluded]
                self.template = Template(options, modules, self._dirs)
            return self.template

    def _lost(self, template: Template, exc: TemplateGone) -> None:
        """After a fork that failed: a template that was closed or died is started again (see `_template`);
        one that stopped because a module started a thread is started again without it."""
        if template.closed:  # by the last thread as this one began
            return
        if not template.ended.wait(CLOSE_TIMEOUT):  # it is exiting (its input is broken); then its first reply is known
            template.process.kill()
            template.ended.wait()
        self._last_death = str(template.ready.exception(timeout=0) or exc)
        ready = template.ready.result(timeout=0) if template.ready.exception(timeout=0) is None else {}
        if "threaded" in ready:
            with self._lock:
                self._excluded.add(ready["threaded"])
                log.info("kernel template: %s starts a thread as it is imported, so kernels import it themselves",
                         ready["threaded"])
                self.template = None

    def _give_up(self, reason: str) -> None:
        self.off = reason
        log.warning("kernels are launched from now on, not forked: %s", reason)


FORKER = Forker()
atexit.register(FORKER.close)


class ForkProvisioner(LocalProvisioner):
    """A kernel forked from the run's template (see the module's docstring), or launched as `LocalProvisioner`
    does, saying why (`origin`)."""

    template: Template | None = None
    forked: int | None = None  # the forked kernel's process id while it runs (until `wait` collected its exit)
    launched_because: str | None = None

    @property
    def has_process(self) -> bool:
        return self.forked is not None or super().has_process

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        self.template = self.forked = None
        command = ipykernel_command(cmd)
        reason = getattr(self.parent, "launched_because", None) or unavailable() or (
            None if command else "the kernelspec does not run ipykernel in the runner's Python")
        if reason is None:
            cwd = str(kwargs.get("cwd") or os.getcwd())
            # JPY_PARENT_PID: as jupyter_client's launcher sets it for a launched kernel
            env = {**kwargs.get("env", os.environ), "JPY_PARENT_PID": str(os.getpid())}
            log_path = getattr(self.parent, "kernel_log", None)
            try:
                self.template, self.forked = await FORKER.fork(*command, cwd, env, log_path)
            except TemplateGone as exc:
                reason = str(exc)
            else:
                self.pid = self.pgid = self.forked  # a session of its own: its process group is its id
                self.cwd = cwd
                self.launched_because = None
                return self.connection_info
        self.launched_because = reason
        return await super().launch_kernel(cmd, **kwargs)

    def origin(self) -> dict[str, str]:
        """For the execution's manifest entry: {"kernel": "forked"}, or "launched" and why."""
        if self.launched_because is None:
            return {"kernel": "forked"}
        return {"kernel": "launched", "kernel_launched_because": self.launched_because}

    async def poll(self) -> int | None:
        if self.forked is None:
            return await super().poll()
        if self.forked in self.template.exits:
            return self.template.exits[self.forked][0]
        if self.template.ended.is_set() and not pid_alive(self.forked):
            return self.template.exits.get(self.forked, (UNKNOWN_EXIT,))[0]
        return None

    async def wait(self) -> int | None:
        if self.forked is None:
            return await super().wait()
        while (status := await self.poll()) is None:
            await asyncio.sleep(0.05)
        self.forked = None  # has_process is now False, as LocalProvisioner's after its wait
        return status

    async def send_signal(self, signum: int) -> None:
        if self.forked is None:
            return await super().send_signal(signum)
        if await self.poll() is not None:  # collected: its id may be another process's now
            return
        try:
            os.killpg(self.forked, signum)
        except ProcessLookupError:
            pass

    async def kill(self, restart: bool = False) -> None:
        if self.forked is None:
            return await super().kill(restart)
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        if self.forked is None:
            return await super().terminate(restart)
        await self.send_signal(signal.SIGTERM)


def ipykernel_command(cmd: list[str]) -> tuple[list[str], list[str]] | None:
    """(the interpreter's options, ipykernel's arguments) of a kernelspec's command that runs ipykernel in this
    Python, which the template can fork; None for any other command."""
    try:
        start = next(i for i in range(1, len(cmd) - 1) if cmd[i:i + 2] == ["-m", "ipykernel_launcher"])
        if os.path.samefile(cmd[0], sys.executable):
            return cmd[1:start], cmd[start + 2:]
    except (StopIteration, OSError, IndexError):
        pass
    return None
