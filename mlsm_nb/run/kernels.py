"""The kernel manager the papermill engine starts its kernels with.

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

Credential parameters reach the kernel through its environment, for that one
kernel only (never this process's `os.environ`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from jupyter_client import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir


class QuietKernelManager(AsyncKernelManager):
    """A local kernel on IPC sockets, shut down without a needless interrupt."""

    extra_env: Mapping[str, str] = {}

    def __init__(self, **kwargs):
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        stem = os.path.join(runtime, f"mlsm-kernel-{uuid.uuid4().hex}")
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("connection_file", f"{stem}.json")
        kwargs.setdefault("ip", f"{stem}-ipc")
        super().__init__(**kwargs)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.extra_env:
            kw["env"] = {**kw.get("env", os.environ), **self.extra_env}
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def kernel_manager_class(env: Mapping[str, str] | None = None) -> type[QuietKernelManager]:
    """The manager class for one execution; `env` is added to that kernel's environment only."""
    if not env:
        return QuietKernelManager
    return type("QuietKernelManagerWithEnv", (QuietKernelManager,), {"extra_env": dict(env)})
