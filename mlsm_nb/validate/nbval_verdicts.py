"""A pytest plugin, loaded beside nbval by `validate`, that records each failing cell's verdict as data.

nbval reports failures as coloured text for a terminal, numbered by code cell.
This plugin writes one JSON line per failing cell to the file named by
``MLSM_NBVAL_VERDICTS``: nbval's code-cell number, what went wrong ("raised",
"differs", "timeout" or "other"), and the plain facts (exception's last line
and the cell's line; expected and actual output text), so `validate` can say it
for people, by notebook cell index and tag.
"""

from __future__ import annotations

import json
import os
import re

import pytest

VERDICTS_ENV = "MLSM_NBVAL_VERDICTS"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")


def plain(text: str) -> str:
    """`text` without terminal colour codes."""
    return _ANSI.sub("", text or "")


def output_text(outputs) -> str:
    """What a cell's outputs show, as plain text (streams, text/plain results, errors)."""
    parts = []
    for out in outputs or []:
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
        elif kind in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain", f"<{', '.join(out.get('data', {}))}>")
            parts.append(("".join(text) if isinstance(text, list) else text) + "\n")
    return plain("".join(parts))


def _record_compared(cell_class) -> None:
    """Keep the outputs nbval compares on the cell item, to show both sides of a mismatch."""
    compare = cell_class.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        self.mlsm_compared = (ref, test)
        return compare(self, test, ref, skip_compare)

    cell_class.compare_outputs = compare_outputs


def _verdict(item, excinfo) -> dict:
    exc = excinfo.value
    message = plain(str(exc))
    if message.startswith("Timeout of"):
        seconds = re.search(r"Timeout of ([\d.]+) seconds", message)
        return {"kind": "timeout", "seconds": float(seconds.group(1)) if seconds else None}
    if message.startswith("Cell execution caused an exception"):
        trace = plain(getattr(exc, "inner_traceback", "") or "")
        lines = [line for line in trace.splitlines() if line.strip()]
        found = _CELL_LINE.search(trace)
        return {"kind": "raised", "error": lines[-1].strip() if lines else message,
                "line": int(found.group(1)) if found else None}
    if message.startswith("Cell outputs differ") and hasattr(item, "mlsm_compared"):
        expected, actual = item.mlsm_compared
        return {"kind": "differs", "expected": output_text(expected), "actual": output_text(actual)}
    return {"kind": "other", "message": message.strip().splitlines()[0] if message.strip() else type(exc).__name__}


def pytest_configure(config):
    from nbval.plugin import IPyNbCell

    if not getattr(IPyNbCell, "mlsm_recording", False):
        _record_compared(IPyNbCell)
        IPyNbCell.mlsm_recording = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    target = os.environ.get(VERDICTS_ENV)
    if not target or report.when != "call" or not report.failed or not hasattr(item, "cell_num"):
        return
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps({"cell_num": item.cell_num, **_verdict(item, call.excinfo)}) + "\n")
