"""Run a notebook's production cells in a real Jupyter kernel and score inputs there.

This is the notebook's own execution, independent of extraction, used to show
that an extracted Model scores exactly as its notebook does (parity).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..exceptions import NotebookError
from .contract import NotebookSpec

_SCORE_CELL = '''
import json as _mlsm_json
with open({path!r}) as _mlsm_f:
    _mlsm_cases = _mlsm_json.load(_mlsm_f)
_mlsm_out = []
for _mlsm_case in _mlsm_cases:
    try:
        _mlsm_value = score(_mlsm_case["data"], _mlsm_case["results"])
    except Exception as _mlsm_exc:
        _mlsm_value = {{"raised": type(_mlsm_exc).__name__}}
    _mlsm_out.append(_mlsm_value)
with open({out!r}, "w") as _mlsm_f:
    _mlsm_json.dump(_mlsm_out, _mlsm_f)
'''


def score_in_kernel(spec: NotebookSpec, cases: list[dict], timeout: float = 120) -> list:
    """`score(data, results)` of each case, computed by the notebook's production
    cells in a fresh python3 kernel (cwd: the notebook's folder).

    A raised exception becomes ``{"raised": "<ExceptionName>"}``.
    """
    with tempfile.TemporaryDirectory(prefix="mlsm-kernel-") as tmp:
        cases_path, out_path = Path(tmp, "cases.json"), Path(tmp, "out.json")
        cases_path.write_text(json.dumps(cases))
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c.source) for c in spec.cells]
        nb.cells.append(nbformat.v4.new_code_cell(_SCORE_CELL.format(path=str(cases_path), out=str(out_path))))
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(spec.path.parent.resolve())}})
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            raise NotebookError(spec.path, f"kernel execution failed: {str(exc).strip().splitlines()[-1]}") from None
        return json.loads(out_path.read_text())
