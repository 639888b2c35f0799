"""The kernels the papermill engine runs notebooks in: how they start and stop, and which are kept warm.

By default every execution gets a new kernel, so an executed notebook is the
whole story of its batch. Starting a kernel and importing a notebook's
libraries cost about a second of CPU, often more than scoring a batch, so with
`--warm-kernels` a thread of the run's pool keeps the kernels of the notebooks
it ran (`ThreadKernels`, at most its share of the notebooks) and runs a
notebook's next batch in its kernel, after a reset: the namespace is emptied
(IPython's `reset`, which also restarts the execution count at 1), pyplot
figures are closed and the working directory is restored. What lives outside
the namespace (imported modules' state, environment variables, options)
carries over, as in the in-process engine's workers. A kernel whose execution
failed is never reused; the manifest's `kernel_runs` says how many executions a
kept kernel ran before each one.

A thread of the run's pool does not wait for the kernel of a finished execution
to exit: it asks the kernel to shut down and goes on to its next execution,
while the shutdown finishes on the thread's event loop (jupyter_core runs one
per thread), during that execution or when the pool stops. A kernel takes 0.1
to 0.2 s to exit; now and then a launched kernel's control thread hangs as it
exits (posit-dev/positron#7142; forked kernels avoid it, see `run.template`),
and jupyter_client ends such a kernel with SIGTERM after 2.5 s. A kernel of a
failed execution is killed at once, and waited for.
On a Dask worker, nbclient starts and stops each kernel itself.

Two causes of noise on every successful run are fixed here, where kernels are
started and stopped, rather than filtered out of the logs:

- ipykernel warns "Kernel is running over TCP without encryption" for every
  kernel on the TCP transport. Our kernels talk to this process only, so they
  use IPC sockets (files in Jupyter's runtime folder, removed at shutdown).
- jupyter_client interrupts a kernel (SIGINT) before asking it to shut down;
  when the signal lands while the idle kernel handles a message, ipykernel logs
  "KeyboardInterrupt caught in kernel" as an ERROR. nbclient shuts a kernel down
  only after its cells finished (a timeout interrupts the kernel itself, before
  shutdown), so the interrupt at shutdown is skipped.

A kernel process's own output goes to a log file next to the executed
notebook of the execution that started it, not to the runner's terminal:
ipykernel's log (e.g. a traceback it prints when a message races its shutdown
on a loaded machine, or why the kernel crashed) and a copy of what cells write
straight to file descriptors 1 and 2 (subprocesses, native libraries; the
notebook gets it too). A log is redacted after each execution and when its
kernel stops, and removed then if it is empty; a failed execution's error and
manifest entry name a log that is not empty.

Credential parameters reach the kernel through its environment, for that one
kernel only (never this process's `os.environ`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path

import zmq.asyncio
from jupyter_client import AsyncKernelClient, AsyncKernelManager
from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_core.paths import jupyter_runtime_dir
from jupyter_core.utils import run_sync
from traitlets import Type

from ..processes import remove_files_of_gone
from ..redact import redact_text
from .fork import FORKER, PROVISIONER, ForkProvisioner, ipykernel_command, unavailable

RESET_TIMEOUT = 10.0  # seconds a kept kernel may take to reset between executions
# Kernels keep no IPython history database: nbclient already keeps it in memory (a file shared by parallel
# kernels fails), nothing reads it (the executed notebook is the record), and setting it up was a twentieth of a
# forked kernel's CPU. In and Out still work within the kernel.
KERNEL_ARGUMENTS = ["--HistoryManager.enabled=False"]
RECONNECT_MS = 10  # how soon a client's socket tries again to reach a kernel that has not bound it yet (zmq: 100)
_RESET = """\
def _mlsm_reset(cwd):
    import os, sys
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    get_ipython().reset(new_session=True)
    os.chdir(cwd)
_mlsm_reset({cwd!r})
"""


class KernelClient(AsyncKernelClient):
    """A kernel's one client: its channels start, and it waits for the kernel, once; the kernel's
    next executions use it as it is (a new client would wait for the kernel again)."""

    _ready = False

    def start_channels(self, *args, **kwargs) -> None:
        if not self.channels_running:  # no heartbeat thread: a local kernel is alive while its process is
            super().start_channels(*args, **{**kwargs, "hb": False})

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Until the kernel answers a kernel_info request on the shell channel and IOPub is connected: it
        brings the kernel's welcome to this subscription (JEP 65, ipykernel 7) or its idle status after the
        request. (jupyter_client's own wait then waits for 0.2 s of silence on IOPub, for every kernel
        started; nbclient ignores messages that are not its cells'.)"""
        if self._ready:
            return
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        asked: set[str] = set()
        while True:
            asked.add(self.kernel_info())
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
                if reply["msg_type"] == "kernel_info_reply" and await self._idle_after(asked, deadline):
                    break
            except queue.Empty:  # no reply yet, or IOPub connected after the kernel said it was idle: ask again
                pass
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        self._handle_kernel_info_reply(reply)
        self._ready = True

    async def _idle_after(self, asked: set[str], deadline: float) -> bool:
        """True once IOPub brings the kernel's welcome, or its idle status after one of the `asked` requests
        (a kernel without welcomes whose status came before IOPub connected is asked again); queue.Empty
        when 0.2 s pass without a message, or at `deadline`."""
        while True:
            if time.monotonic() > deadline:
                raise queue.Empty
            msg = await self.iopub_channel.get_msg(timeout=0.2)
            if msg["msg_type"] == "iopub_welcome" or (
                    msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") in asked):
                return True


class QuietKernelManager(AsyncKernelManager):
    """A local kernel on IPC sockets, shut down without a needless interrupt, with one client; forked from the
    run's template (`run.fork`) unless `launched_because` says why it is launched."""

    launched_because: str | None = None
    extra_env: Mapping[str, str] = {}
    kernel_log: str | None = None  # the file the kernel process's stdout and stderr go to (None: inherited)
    secrets: Mapping[str, object] = {}  # credential values, redacted from the kernel's log
    client_factory = Type(KernelClient, klass=AsyncKernelClient)

    def __init__(self, **kwargs):
        self._client: KernelClient | None = None
        self.executions = 0  # executions this kernel finished (kept kernels run several)
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        # Short: an IPC socket's path must fit in about 107 bytes.
        stem = os.path.join(runtime, f"{_file_prefix(os.getpid())}{uuid.uuid4().hex[:12]}")
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("connection_file", f"{stem}.json")
        kwargs.setdefault("ip", f"{stem}-ipc")
        super().__init__(**kwargs)

    @property
    def kernel_spec(self):
        """The kernelspec (its name is what executed notebooks record), started by `run.fork`'s provisioner."""
        if self._kernel_spec is None and self.kernel_name:
            spec = self.kernel_spec_manager.get_kernel_spec(self.kernel_name)
            if _fork_provisioner_installed():
                spec.metadata = {**spec.metadata, "kernel_provisioner": {"provisioner_name": PROVISIONER}}
            self._kernel_spec = spec
        return self._kernel_spec

    def origin(self) -> dict[str, str]:
        """How this kernel started, for its execution's manifest entry: {"kernel": "forked"}, or "launched"
        and why."""
        if isinstance(self.provisioner, ForkProvisioner):
            return self.provisioner.origin()
        if self.provisioner is None:  # it never started (jupyter_client failed before choosing how)
            return {}
        return {"kernel": "launched", "kernel_launched_because": self.launched_because or
                f"the {PROVISIONER} kernel provisioner is not installed (install mlsm-nb again)"}

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.extra_env:
            kw["env"] = {**kw.get("env", os.environ), **self.extra_env}
        if self.kernel_log is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        # New for each kernel (a resumed run's retry does not add to the failed attempt's); the kernel
        # process keeps a descriptor of its own, appending, so that lines it writes after the log was
        # redacted (and shortened) follow the redacted text.
        open(self.kernel_log, "wb").close()
        with open(self.kernel_log, "ab") as log:
            return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        """After the kernel stopped (shut down, killed or dead): its log, redacted, or none if it is empty."""
        await super()._async_cleanup_resources(restart=restart)
        if self.kernel_log and not restart and not kernel_log_written(Path(self.kernel_log), self.secrets):
            Path(self.kernel_log).unlink(missing_ok=True)

    # jupyter_client's AsyncKernelManager binds `cleanup_resources` (what nbclient calls for a kernel that
    # died) to its base class's coroutine, not to the override.
    cleanup_resources = _async_cleanup_resources

    def client(self, **kwargs) -> KernelClient:
        """The kernel's client (nbclient asks for one per execution, and stops it only when it owns the kernel)."""
        if self._client is None:
            # On a context the manager was given (a thread's, see ThreadKernels); one it created itself
            # is destroyed with the kernel, before nbclient stops the client.
            shared = {} if self._created_context else {"context": self.context}
            self._client = super().client(**{**shared, **kwargs})
        return self._client

    def stop_client(self) -> None:
        if self._client is not None:
            self._client.stop_channels()
            self._client = None

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def _file_prefix(runner: int) -> str:
    """How the runtime files of the kernels a process starts are named: where its process id means
    something (a short digest of the host and its process namespace, as a home folder may be shared
    between hosts and containers) and the id."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"mlsm-kernel-{zlib.crc32(f'{socket.gethostname()}:{namespace}'.encode()):08x}-{runner}-"


def remove_stale_kernel_files() -> int:
    """Remove the connection and socket files of kernels whose runner (on this host) is gone — killed
    with its kernels, it left them in Jupyter's runtime folder; returns how many."""
    return remove_files_of_gone(jupyter_runtime_dir(), _file_prefix(0)[:-2])


def kernel_manager_class(env: Mapping[str, str] | None = None, log: Path | None = None,
                         secrets: Mapping[str, object] | None = None,
                         launched_because: str | None = None) -> type[QuietKernelManager]:
    """The manager class for one execution; `env` is added to that kernel's environment only, and the
    kernel process's output goes to `log`, with the values of `secrets` redacted. Its kernel is forked
    unless `launched_because` says why it is launched."""
    return type("ExecutionKernelManager", (QuietKernelManager,),
                {"extra_env": dict(env or {}), "kernel_log": None if log is None else str(log),
                 "secrets": dict(secrets or {}), "launched_because": launched_because})


@functools.cache
def _fork_provisioner_installed() -> bool:
    """Whether the package's entry point for `ForkProvisioner` is installed (an editable checkout whose
    pyproject.toml gained it must be installed again: ci/setup.sh does)."""
    return bool(entry_points(group=KernelProvisionerFactory.GROUP_NAME, name=PROVISIONER))


def kernel_log_written(path: Path, secrets: Mapping[str, object]) -> bool:
    """Whether a kernel wrote to its log `path`; if it did, the log's credentials (the run's secrets, URI
    passwords, secret-looking values) are now redacted, as everywhere else the run writes."""
    try:
        if not os.path.getsize(path):
            return False
    except OSError:  # none
        return False
    text = path.read_text(errors="replace")
    redacted = redact_text(text, secrets)
    if redacted != text:
        path.write_text(redacted)
    return True


class ThreadKernels:
    """The kernels one thread of the run's pool started (see the module's docstring): with `--warm-kernels`
    it keeps at most `limit`, the least recently used stopped first; it stops the others in the background.
    All run on one zmq context.

    Used from its thread only: a kernel manager belongs to the event loop it started on.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._idle: dict[str, QuietKernelManager] = {}  # notebook -> kernel, least recently used first
        self._stopping: set[asyncio.Future] = set()  # shutdowns still finishing on this thread's loop
        self._context: zmq.asyncio.Context | None = None

    def new(self, manager_class: type[QuietKernelManager]) -> QuietKernelManager:
        """A kernel manager (not started) on this thread's zmq context: a context per kernel and client
        costs an I/O thread and file descriptors each."""
        if self._context is None:
            self._context = zmq.asyncio.Context()
            # A kernel binds its sockets some 50 ms after it is forked; the client, connected at once, would
            # otherwise try again only after zmq's default 0.1 s.
            self._context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        return manager_class(kernel_name="python3", context=self._context)

    async def take(self, notebook: str) -> QuietKernelManager | None:
        """The kept kernel of `notebook`, if it is still alive."""
        km = self._idle.pop(notebook, None)
        if km is not None and not await km.is_alive():
            await self.discard(km)
            return None
        return km

    async def keep(self, notebook: str, km: QuietKernelManager, cwd: str) -> None:
        """After a successful execution: reset `km` and keep it for `notebook`'s next one (stopped if the
        reset fails); beyond `limit` (by default 0), stop the kernel kept longest, in the background."""
        km.executions += 1
        if not self.limit:
            return self._stop_later(km)
        try:
            client = km.client()
            client.start_channels()
            await client.wait_for_ready(timeout=RESET_TIMEOUT)
            reply = await client.execute_interactive(_RESET.format(cwd=cwd), silent=True, store_history=False,
                                                     timeout=RESET_TIMEOUT, output_hook=lambda msg: None)
            ok = reply["content"]["status"] == "ok"
        except Exception:  # noqa: BLE001 - a kernel that cannot reset is not kept, whatever the reason
            ok = False
        if not ok:
            return await self.discard(km)
        self._idle[notebook] = km
        while len(self._idle) > self.limit:
            self._stop_later(self._idle.pop(next(iter(self._idle))))

    def _stop_later(self, km: QuietKernelManager) -> None:
        """Ask `km`'s kernel to shut down (sent before this loop's current run ends); its exit is awaited
        and its files and log dealt with while this thread's loop runs next."""
        stopping = asyncio.ensure_future(_shut_down(km))
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)

    async def discard(self, km: QuietKernelManager) -> None:
        """Stop a kernel at once (e.g. its execution failed, so it may still be busy) and wait for it; or, for
        one that failed to start, remove its files."""
        km.stop_client()
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
        else:
            await km.cleanup_resources()

    async def close(self) -> None:
        """Shut every kept kernel down, all at once, wait for those stopping, and close the zmq context."""
        kept, self._idle = list(self._idle.values()), {}
        await asyncio.gather(*self._stopping, *(_shut_down(km) for km in kept))
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None


async def _shut_down(km: QuietKernelManager) -> None:
    """Stop a kernel that is done with (asked to shut down, then waited for): it raises nothing, as nothing may
    wait on it (asyncio would print the traceback of an exception no one retrieved). A log that cannot be
    redacted (e.g. on a full disk) is not left behind. Its client stops once the kernel has: a client that
    stopped first unsubscribed from IOPub while the kernel closed its sockets, which a loaded machine made the
    kernel log as an uncaught ZMQError."""
    try:
        await km.shutdown_kernel()
    except Exception:  # noqa: BLE001 - the kernel is gone or killed either way; the run reports disk errors itself
        if km.kernel_log:
            with contextlib.suppress(OSError):
                os.unlink(km.kernel_log)
    finally:
        km.stop_client()


_THREAD = threading.local()


def thread_kernels(limit: int) -> ThreadKernels:
    """The kernels this thread started (it keeps at most `limit`)."""
    if not hasattr(_THREAD, "kernels"):
        _THREAD.kernels = ThreadKernels(limit)
        FORKER.use()
    return _THREAD.kernels


def template_options() -> list[str] | None:
    """The interpreter options a kernel template runs with (the python3 kernelspec's), or None when its
    kernels cannot be forked."""
    if unavailable() is None and _fork_provisioner_installed():
        command = ipykernel_command(QuietKernelManager(kernel_name="python3").format_kernel_cmd())
        return None if command is None else command[0]
    return None


def start_template() -> None:
    """Start the run's kernel template now (`fork.Forker.start`), when its kernels can be forked."""
    options = template_options()
    if options is not None:
        FORKER.start(options)


def release_thread_kernels() -> None:
    """Shut down the kernels this thread kept or is stopping (on the event loop they run on: this thread's);
    the last thread to do so closes the kernel template."""
    kernels = getattr(_THREAD, "kernels", None)
    if kernels is not None:
        del _THREAD.kernels
        try:
            run_sync(kernels.close)()
        finally:
            FORKER.release()
