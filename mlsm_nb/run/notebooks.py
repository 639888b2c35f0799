"""The production notebook the papermill engine runs: production cells, secret loading, the runner's cells."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import nbformat

from ..core.cells import leading_blank_lines, source_digest
from ..notebook.contract import RUNNER_TAG, NotebookSpec, declarations, read_notebook

_RUNNER_SOURCE = """\
# mlsm-nb runner: score this batch with the model defined above and save its outputs
from mlsm_nb.run.runtime import run_in_notebook

mlsm_declared = {declared!r}  # the notebook's declarations, as lint read them (a later cell cannot change them)
mlsm_cells = {cells!r}  # the cells above by source digest, to name the cell a score error is raised in
mlsm_overview = run_in_notebook(globals(), mlsm_batch_path, mlsm_output_path, mlsm_dependencies, mlsm_status,
                               mlsm_declared, mlsm_cells, mlsm_limit)"""
_SHOW_SOURCE = "mlsm_overview.show()"


class _UpstreamNoise(logging.Filter):
    """Drop log records whose cause is upstream and whose news the run reports itself.

    - papermill: warnings about the runner's own parameters (expected, not the author's), and
      nbclient's "Timeout waiting for execute reply" and "Kernel died while waiting for execute reply"
      (the run prints the failed execution in one line, naming the cell and the kernel's log);
    - asyncio: "Task was destroyed but it is pending" for nbclient's output-polling task, which
      nbclient 0.11 leaves pending when a cell times out.
    """

    _PREFIXES = ("Passed unknown parameter: mlsm_", "Input notebook does not contain a cell with tag 'parameters'",
                 "Timeout waiting for execute reply", "Kernel died while waiting for execute reply")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == "asyncio":
            return not (message.startswith("Task was destroyed but it is pending")
                        and "_async_poll_output_msg" in message)
        return not message.startswith(self._PREFIXES)


for _name in ("papermill", "asyncio"):
    logging.getLogger(_name).addFilter(_UpstreamNoise())


def secret_env(name: str) -> str:
    """The environment variable that carries the credential parameter `name` to a kernel."""
    return f"MLSM_PARAM_{name.upper()}"


def production_notebook(spec: NotebookSpec, secret_names: Sequence[str]) -> nbformat.NotebookNode:
    """The notebook papermill runs: production cells, secret loading, the runner's cells."""
    source = read_notebook(spec.path)
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    for cell in spec.cells:
        code = nbformat.v4.new_code_cell(cell.source)
        code.metadata["tags"] = [cell.tag]
        code.metadata["mlsm"] = {"source_cell": cell.index, "tag": cell.tag}
        nb.cells.append(code)
        if cell.tag == "parameters" and secret_names:
            nb.cells.append(_secrets_cell(secret_names))
    if secret_names and spec.cell("parameters") is None:
        nb.cells.insert(0, _secrets_cell(secret_names))
    declared = {k: v for k, v in declarations(spec).items() if k in ("name", "version", "status", "kind", "fields",
                                                                        "models")}
    cells = {source_digest(c.source): (c.index, c.tag, leading_blank_lines(c.source)) for c in spec.cells}
    for text in (_RUNNER_SOURCE.format(declared=declared, cells=cells), _SHOW_SOURCE):
        runner = nbformat.v4.new_code_cell(text)
        runner.metadata["tags"] = [RUNNER_TAG]
        nb.cells.append(runner)
    return nb


def _secrets_cell(names: Sequence[str]) -> nbformat.NotebookNode:
    lines = ["# credentials come from this kernel's environment, never written into this notebook",
             "import json as _mlsm_json, os as _mlsm_os"]
    lines += [f"{name} = _mlsm_json.loads(_mlsm_os.environ[{secret_env(name)!r}])" for name in names]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [RUNNER_TAG]
    return cell
