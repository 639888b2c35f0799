"""The executed notebook, written once: papermill's nbclient engine without its saves after every cell.

papermill writes the executed notebook when an execution starts, before and after each cell, and at
the end: about twenty writes of the whole notebook per execution, most of the runner's own CPU for
a small batch. Reviewers read the notebook when the execution has ended, so it is written then: by
papermill's `execute_notebook` when the notebook ran to the end (or before it raises a cell's error),
and here when the execution itself failed (a timeout, a kernel that died, an interrupt), so a failed
execution's notebook is still kept, with the outputs and papermill's cell metadata it got to. A
runner killed outright leaves no executed notebook for the execution it was in; resume runs it again.
"""

from __future__ import annotations

from papermill.engines import NBClientEngine, papermill_engines
from papermill.iorw import write_ipynb

ENGINE = "mlsm-nb"


class SavedAtEnd(NBClientEngine):
    """papermill's nbclient engine, writing the executed notebook only once the execution has ended."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, **kwargs):
        try:
            return super().execute_notebook(nb, kernel_name, output_path=None, **kwargs)
        except BaseException:
            write_ipynb(nb, output_path)
            raise


papermill_engines.register(ENGINE, SavedAtEnd)
