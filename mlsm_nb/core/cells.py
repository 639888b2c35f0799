"""Where in its notebook a model's code raised: the cell (number and tag) and the line in that cell.

A score that raises becomes an error entry whose ``_error_at`` says where, e.g.
``cell 5 [score], line 13`` (the cell as JupyterLab counts it, `exceptions.cell_ref`; results stored
before mlsm-nb counted from 1 keep the cell's index, ``cell 4 [score]``): the innermost frame of the
traceback that is a production cell's code, so that a helper in `setup` called from `score` is named
too. The code of a cell reaches the interpreter three ways:

- in-process (`load_notebook`): each cell is compiled under its location as messages
  name it, ``<path>:cell N [tag]`` (`exceptions.format_location`), which says it all;
- an extracted bundle's module: the cells follow one another under `cell_marker` lines;
- an IPython kernel (papermill engine): each cell under a file name of IPython's.

For the last two, the namespace the code runs in holds its layout (`set_layout`), so
that the layout goes with the code: a bundle swapped in at the same path, or a kernel
reset for its next batch, brings its own.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, MutableMapping

from ..exceptions import CELLS_COUNTED_FROM, cell_ref

CELL_MARKER = re.compile(r"^# --- cell (\d+) \[(\w+)\] ---$", re.MULTILINE)  # the cell's index, as kept
_CELL_FILE = re.compile(r":cell (\d+) \[(\w+)\]\Z")  # the cell as people read it (`format_location`)
LAYOUT = "__mlsm_cells__"  # in a namespace: file name -> ((line of a cell's first line, index, tag), ...)


def cell_marker(index: int, tag: str) -> str:
    """The line above a cell's source in an extracted module (`CELL_MARKER` reads it): the cell's index."""
    return f"# --- cell {index} [{tag}] ---"


def module_layout(text: str) -> tuple[tuple[int, int, str], ...]:
    """Where each cell of an extracted module starts: (line of its first line, index, tag), in line order."""
    return tuple((text.count("\n", 0, match.start()) + 2, int(match.group(1)), match.group(2))
                 for match in CELL_MARKER.finditer(text))


def set_layout(namespace: MutableMapping, filename: str, starts: Iterable[tuple[int, int, str]]) -> None:
    """Record in `namespace` where the cells of the code compiled as `filename` start."""
    namespace.setdefault(LAYOUT, {})[filename] = tuple(starts)


def source_digest(source: str) -> str:
    """A short digest of a cell's source, blank lines at either end ignored (IPython drops them)."""
    return hashlib.sha256(source.strip().encode()).hexdigest()[:16]


def leading_blank_lines(source: str) -> int:
    """How many lines IPython drops from the top of a cell before compiling it (empty or only spaces)."""
    lines = source.splitlines()
    return next((i for i, line in enumerate(lines) if line.strip()), len(lines))


@functools.lru_cache(maxsize=4096)
def _named_cell(filename: str) -> tuple[tuple[int, int, str], ...]:
    match = _CELL_FILE.search(filename)
    return ((1, int(match.group(1)) - CELLS_COUNTED_FROM, match.group(2)),) if match else ()


def _cell_at(frame, line: int) -> str | None:
    filename = frame.f_code.co_filename
    starts = frame.f_globals.get(LAYOUT, {}).get(filename)
    if starts is None:
        starts = _named_cell(filename)
    found = None
    for first, index, tag in starts:
        if line >= first:
            found = f"{cell_ref(index, tag)}, line {line - first + 1}"
    return found


def raised_at(exc: BaseException) -> str | None:
    """`cell N [tag], line L` of the innermost production cell in `exc`'s traceback, or None."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = _cell_at(tb.tb_frame, tb.tb_lineno) or found
        tb = tb.tb_next
    return found
